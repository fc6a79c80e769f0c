//! The option schema in `src/config/options/` is the one source: the parser
//! reads every key through it, and the README's table and the Go shim's
//! `schema.json` are generated from it. `SERVICEMAP_BLESS_OPTIONS=1` (what
//! `make options` sets) rewrites both copies.

use servicemap::config::options::{OPTIONS, markdown_table, schema_json};
use servicemap::{Compat, Config, Error};
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn bless() -> bool {
    std::env::var_os("SERVICEMAP_BLESS_OPTIONS").is_some()
}

#[test]
fn every_option_reads_back_what_it_writes() {
    for compat in [Compat::Tempo, Compat::Contrib] {
        let preset = Config::preset(compat);
        let doc: serde_json::Map<String, serde_json::Value> =
            OPTIONS.iter().map(|s| (s.key.to_string(), s.get(&preset))).collect();
        let parsed = Config::from_json(serde_json::Value::Object(doc).to_string().as_bytes()).unwrap();
        assert_eq!(parsed, preset, "{compat:?}");
    }
}

#[test]
fn every_alias_sets_the_same_option() {
    let contrib = Config::preset(Compat::Contrib);
    for spec in OPTIONS {
        for alias in spec.aliases {
            let doc = serde_json::json!({ *alias: spec.get(&contrib) }).to_string();
            let by_alias = Config::from_json(doc.as_bytes()).unwrap();
            let doc = serde_json::json!({ spec.key: spec.get(&contrib) }).to_string();
            assert_eq!(by_alias, Config::from_json(doc.as_bytes()).unwrap(), "{alias}");
        }
    }
}

#[test]
fn keys_are_unique_and_unknown_keys_are_named() {
    let mut names: Vec<&str> =
        OPTIONS.iter().flat_map(|s| std::iter::once(s.key).chain(s.aliases.iter().copied())).collect();
    let n = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), n);
    match Config::from_json(br#"{"max_serie": 5}"#) {
        Err(Error::Config { key, .. }) => assert_eq!(key, "max_serie"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_readme_table_is_the_schema() {
    const BEGIN: &str =
        "<!-- options: generated from src/config/options/ by `make options`; tests/options.rs checks it -->\n";
    const END: &str = "<!-- options: end -->";
    let path = root().join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let a = readme.find(BEGIN).expect("README: the options table's begin marker") + BEGIN.len();
    let b = a + readme[a..].find(END).expect("README: the options table's end marker");
    let table = markdown_table();
    if bless() {
        std::fs::write(&path, format!("{}{table}{}", &readme[..a], &readme[b..])).unwrap();
    } else {
        assert!(readme[a..b] == table, "the README's options table differs from the schema: run `make options`");
    }
}

#[test]
fn the_go_schema_is_the_schema() {
    let path = root().join("go-shim/internal/options/schema.json");
    let fresh = serde_json::to_string_pretty(&schema_json()).unwrap() + "\n";
    if bless() {
        std::fs::write(&path, &fresh).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == fresh, "go-shim/internal/options/schema.json differs from the schema: run `make options`");
}
