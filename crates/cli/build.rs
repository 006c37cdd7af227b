//! Bakes the folder of DuckDB's prebuilt library into the binary's run path, so that
//! `fintrail` finds `libduckdb.so` without LD_LIBRARY_PATH (see shared/design/STACK.md: we link
//! DuckDB's official prebuilt library rather than compiling it for 25 minutes).

fn main() {
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    if let Ok(dir) = std::env::var("DUCKDB_LIB_DIR") {
        println!("cargo:rustc-link-arg-bins=-Wl,-rpath,{dir}");
    }
}
