// When RocksDB comes prebuilt (ROCKSDB_LIB_DIR, see scripts/rocksdb-lib.sh), librocksdb-sys
// links the archive but not the C++ runtime it needs; the bundled build links it itself.
fn main() {
    println!("cargo:rerun-if-env-changed=ROCKSDB_LIB_DIR");
    if std::env::var_os("ROCKSDB_LIB_DIR").is_some() {
        println!("cargo:rustc-link-lib=dylib=stdc++");
    }
}
