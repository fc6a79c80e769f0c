//! Compiles `tests/c/smoke.c` against `include/servicemap.h` and the static
//! library, runs it on one batch, and checks what it printed.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn target_dir() -> PathBuf {
    // The CLI binary sits beside the libraries of the same build.
    Path::new(env!("CARGO_BIN_EXE_servicemap")).parent().unwrap().to_path_buf()
}

#[test]
fn c_program_runs_a_batch_end_to_end() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = target_dir().join("libservicemap.a");
    if !lib.exists() {
        // `cargo test` builds the library only as an rlib; build the archive too.
        let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        build.args(["build", "--lib"]).current_dir(root);
        if target_dir().ends_with("release") {
            build.arg("--release");
        }
        assert!(build.status().expect("run cargo build").success(), "building the static library failed");
    }
    assert!(lib.exists(), "static library not built at {}", lib.display());
    let tmp = std::env::temp_dir().join(format!("servicemap-c-abi-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let exe = tmp.join("smoke");
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg(root.join("tests/c/smoke.c"))
        .arg("-I")
        .arg(root.join("include"))
        .arg(&lib)
        .args(["-lpthread", "-ldl", "-lm"])
        .status()
        .expect("run the C compiler");
    assert!(status.success(), "C compilation failed");

    let b = batch(vec![
        resource(Some("a"), vec![], vec![span(CLIENT, trace(1), sid(1), None, T0, T0 + 2 * SEC)]),
        resource(Some("b"), vec![], vec![span(SERVER, trace(1), sid(2), Some(sid(1)), T0, T0 + SEC)]),
    ]);
    let input = tmp.join("batch.pb");
    std::fs::write(&input, &b).unwrap();
    let out = Command::new(&exe).arg(&input).output().unwrap();
    assert!(out.status.success(), "C program failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("traces_service_graph_request_total{client=\"a\",server=\"b\"} 1.0\n"), "{text}");
    assert!(
        text.contains("traces_service_graph_request_client_seconds_sum{client=\"a\",server=\"b\"} 2.0\n"),
        "{text}"
    );
    std::fs::remove_dir_all(&tmp).ok();
}
