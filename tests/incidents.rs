//! Generated incidents with known answers (`tests/fixtures/incidents/`):
//! the files are what the generator in `tests/testkit` writes, and the
//! engine's answers, through the library and through the C ABI, are those
//! of `expected.json`. The command line's are checked in `tests/cli.rs`,
//! the HTTP API's in `go-shim/internal/web/incidents_test.go`.

#[path = "incidents/table.rs"]
mod table;

use servicemap_testkit::incidents::incidents;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `SERVICEMAP_BLESS_INCIDENTS=1` rewrites the files from the generator.
#[test]
fn fixtures_are_what_the_generator_writes() {
    let bless = std::env::var_os("SERVICEMAP_BLESS_INCIDENTS").is_some();
    let cases = table::cases();
    let generated = incidents();
    let names: Vec<&str> = generated.iter().map(|i| i.name).collect();
    let listed: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, listed, "expected.json lists the generator's incidents, in its order");
    for i in &generated {
        let path = table::dir().join(format!("{}.jsonl", i.name));
        if bless {
            std::fs::write(&path, i.jsonl()).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == i.jsonl(),
            "{} differs from the generator: SERVICEMAP_BLESS_INCIDENTS=1 cargo test --release --locked --features cli --test incidents",
            path.display()
        );
    }
}

/// Feeds an incident to a new engine as every surface does, and asks.
fn engine_answer(file: &std::path::Path, service: &str) -> serde_json::Value {
    let e = servicemap::Engine::new(servicemap::Config::preset(servicemap::Compat::Tempo));
    let mut now = 0;
    for (at, batch) in table::batches(file) {
        now = at;
        e.consume(&batch, now).unwrap();
        e.expire(now);
    }
    e.expire_all(now);
    let q = serde_json::json!({"query": "impact", "service": service}).to_string();
    e.query(q.as_bytes(), now).unwrap()
}

#[test]
fn the_engine_gives_the_expected_answers() {
    let mut wrong = Vec::new();
    for case in table::cases() {
        for a in &case.answers {
            let got = engine_answer(&case.file, &a.service);
            if got != a.impact {
                wrong.push(format!("{} / {}:\n got {got}\nwant {}", case.name, a.service, a.impact));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The static library beside the CLI binary of the same build.
fn static_library() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_servicemap")).parent().unwrap().to_path_buf();
    let lib = dir.join("libservicemap.a");
    if !lib.exists() {
        // `cargo test` builds the library only as an rlib; build the archive too.
        let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        build.args(["build", "--lib"]).current_dir(env!("CARGO_MANIFEST_DIR"));
        if dir.ends_with("release") {
            build.arg("--release");
        }
        assert!(build.status().expect("run cargo build").success(), "building the static library failed");
    }
    lib
}

/// `tests/c/incidents.c`, compiled against the header and the static
/// library, feeds each incident through the C ABI and prints its answers.
#[test]
fn the_c_abi_gives_the_expected_answers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("incidents-c");
    std::fs::create_dir_all(&tmp).unwrap();
    let exe = tmp.join("incidents");
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg(root.join("tests/c/incidents.c"))
        .arg("-I")
        .arg(root.join("include"))
        .arg(static_library())
        .args(["-lpthread", "-ldl", "-lm"])
        .status()
        .expect("run the C compiler");
    assert!(status.success(), "C compilation failed");
    for case in table::cases() {
        let mut plan = String::new();
        let mut now = 0;
        for (n, (at, batch)) in table::batches(&case.file).into_iter().enumerate() {
            let file = tmp.join(format!("{}-{n}.pb", case.name));
            std::fs::write(&file, batch).unwrap();
            now = at;
            plan.push_str(&format!("batch {at} {}\n", file.display()));
        }
        for a in &case.answers {
            plan.push_str(&format!("ask {now} {}\n", a.service));
        }
        let plan_file = tmp.join(format!("{}.plan", case.name));
        std::fs::write(&plan_file, plan).unwrap();
        let out = Command::new(&exe).arg(&plan_file).output().unwrap();
        assert!(out.status.success(), "{}: {}", case.name, String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let got: Vec<serde_json::Value> =
            text.lines().filter(|l| !l.is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect();
        let want: Vec<&serde_json::Value> = case.answers.iter().map(|a| &a.impact).collect();
        assert_eq!(got.iter().collect::<Vec<_>>(), want, "{}", case.name);
    }
}
