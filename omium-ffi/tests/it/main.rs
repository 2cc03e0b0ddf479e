//! The C interface's integration tests, one test binary: the header is what the code
//! declares, and the C example as a C user meets it.

mod c_example;
mod conformance;
mod header;
