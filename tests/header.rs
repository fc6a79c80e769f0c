//! The committed C header must be what cbindgen generates from the sources.

#[test]
fn committed_header_is_current() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/servicemap.h"));
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    // build.rs refreshes the work-tree copy, so compare with what git has committed.
    let committed = std::process::Command::new("git")
        .args(["show", "HEAD:include/servicemap.h"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8(o.stdout).unwrap())
        .unwrap_or_else(|| std::fs::read_to_string(root.join("include/servicemap.h")).unwrap());
    assert!(committed == generated, "include/servicemap.h is stale: build, then commit the regenerated header");
}
