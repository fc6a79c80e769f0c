//! The layout the code promises (ARCHITECTURE.md): each stage of `src/` uses
//! only the stages below it, so there is no import cycle and a reader never
//! walks back into a module already left; and no file grows past what a
//! newcomer reads in one sitting.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The stages from the bottom up. A module may name only modules before it.
const LAYERS: [&str; 10] =
    ["error", "config", "wire", "series", "pairing", "exposition", "map", "prometheus", "engine", "ffi"];

/// Lines per source file, at most.
const MAX_LINES: usize = 600;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/map/graph/view.rs` → `map`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next().unwrap().as_os_str().to_str().unwrap();
    first.trim_end_matches(".rs").to_string()
}

/// The top-level modules a file names through `crate::`, comments left out.
fn uses(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

#[test]
fn stages_use_only_the_stages_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        let Some(level) = LAYERS.iter().position(|&l| l == module) else {
            assert!(["lib", "bin"].contains(&module.as_str()), "{} is in no layer: add it to LAYERS", file.display());
            continue;
        };
        for used in uses(&std::fs::read_to_string(file).unwrap()) {
            if used == module {
                continue;
            }
            match LAYERS.iter().position(|&l| l == used) {
                Some(l) if l < level => {}
                _ => wrong.push(format!("{} ({module}) uses crate::{used}", file.display())),
            }
        }
    }
    assert!(wrong.is_empty(), "uses against the layering:\n{}", wrong.join("\n"));
}

#[test]
fn no_source_file_is_longer_than_a_sitting() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > MAX_LINES).then(|| format!("{}: {n} lines", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "files over {MAX_LINES} lines:\n{}", long.join("\n"));
}

#[test]
fn the_use_scanner_reads_code_not_comments() {
    let text =
        "use crate::series::{ConnType};\n/// see [`crate::engine`]\nlet x = crate::map::impact(); // crate::ffi\n";
    assert_eq!(uses(text), BTreeSet::from(["map".to_string(), "series".to_string()]));
}
