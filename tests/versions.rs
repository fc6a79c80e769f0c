//! One version everywhere: the collector distribution OCB builds reports the
//! version of the library it links, so `otelcol-servicemap --version` and
//! `servicemap_version()` agree.

#[test]
fn the_collector_distribution_carries_the_crate_version() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("builder-config.yaml");
    let manifest = std::fs::read_to_string(&path).expect("read builder-config.yaml");
    let mut in_dist = false;
    let mut version = None;
    for line in manifest.lines() {
        if !line.starts_with(' ') && !line.starts_with('#') && !line.is_empty() {
            in_dist = line.trim_end() == "dist:";
        } else if let Some(v) = line.trim().strip_prefix("version:").filter(|_| in_dist) {
            version = Some(v.trim().trim_matches('"').to_string());
        }
    }
    assert_eq!(
        version.as_deref(),
        Some(env!("CARGO_PKG_VERSION")),
        "builder-config.yaml's dist.version must be Cargo.toml's version"
    );
}
