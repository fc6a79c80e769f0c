//! Generates `include/servicemap.h` from the `extern "C"` items in `src/ffi.rs`
//! (and the public constants and types cbindgen finds in the crate).
//! The header is committed; `tests/header.rs` fails when it is stale.

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
    // Keep the committed copy current when building from a work tree.
    if std::env::var_os("SERVICEMAP_NO_HEADER_UPDATE").is_none() {
        let committed = crate_dir.join("include/servicemap.h");
        let fresh = std::fs::read(&out).expect("read generated header");
        if std::fs::read(&committed).ok().as_deref() != Some(&fresh[..]) {
            std::fs::write(&committed, &fresh).expect("write include/servicemap.h");
        }
    }
}
