//! The committed C header must be what cbindgen generates from the sources.
//!
//! The build writes the header to `OUT_DIR` only, so the comparison holds in
//! any checkout, with or without git. `SERVICEMAP_BLESS_HEADER=1` (what
//! `make header` sets) copies the generated header over the committed one.

#[test]
fn committed_header_is_current() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/servicemap.h"));
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("include/servicemap.h");
    if std::env::var_os("SERVICEMAP_BLESS_HEADER").is_some() {
        std::fs::write(&path, generated).expect("write include/servicemap.h");
    }
    let committed = std::fs::read_to_string(&path).expect("read include/servicemap.h");
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| committed.lines().count().min(generated.lines().count()) + 1, |i| i + 1);
        panic!(
            "include/servicemap.h differs from the header the sources generate (first at line {line}); \
             run `make header` and commit the result"
        );
    }
}
