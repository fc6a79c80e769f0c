//! Generates the C header from the `extern "C"` items in `src/ffi/` (and the
//! public constants and types cbindgen finds in the crate) into `OUT_DIR`.
//!
//! The committed `include/servicemap.h` is a checked copy, never rewritten by
//! a build: `tests/header.rs` fails when the two differ, and `make header`
//! copies the generated one over it.

use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    // cbindgen reads the whole crate (a public constant anywhere lands in the
    // header), so any change under src/ reruns it.
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("servicemap.h");
    cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("generate the C header")
        .write_to_file(&out);
}
