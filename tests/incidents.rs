//! Generated incidents with known answers (`tests/fixtures/incidents/`):
//! the files are what the generator in `tests/testkit` writes, and the
//! engine's answers, through the library and through the C ABI, are those
//! of `expected.json`. The command line's are checked in `tests/cli.rs`,
//! the HTTP API's in `go-shim/internal/web/incidents_test.go`.

#[path = "incidents/table.rs"]
mod table;

use servicemap_testkit::incidents::incidents;

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
