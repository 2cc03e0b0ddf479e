# CMake package config of the Omium C SDK:
#   find_package(omium REQUIRED)          # with CMAKE_PREFIX_PATH=<the SDK directory>
#   target_link_libraries(app PRIVATE omium::omium)          # libomium.so
#   target_link_libraries(app PRIVATE omium::omium_static)   # libomium.a
get_filename_component(_omium_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
if(NOT TARGET omium::omium)
  add_library(omium::omium SHARED IMPORTED)
  set_target_properties(omium::omium PROPERTIES
    IMPORTED_LOCATION "${_omium_prefix}/lib/libomium.so"
    INTERFACE_INCLUDE_DIRECTORIES "${_omium_prefix}/include")
endif()
if(NOT TARGET omium::omium_static)
  add_library(omium::omium_static STATIC IMPORTED)
  set_target_properties(omium::omium_static PROPERTIES
    IMPORTED_LOCATION "${_omium_prefix}/lib/libomium.a"
    INTERFACE_INCLUDE_DIRECTORIES "${_omium_prefix}/include"
    INTERFACE_LINK_LIBRARIES "stdc++;pthread;dl;m")
endif()
set(omium_VERSION "@VERSION@")
unset(_omium_prefix)
