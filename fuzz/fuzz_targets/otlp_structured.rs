//! The structured generator (`servicemap_fuzz::generate`): an engine configuration
//! and a sequence of batches written by hand as protobuf (deep nesting,
//! huge repeated fields, invalid UTF-8, matching pairs, unusual encodings,
//! damage), expiries, renders and queries. Beyond "no panic", a batch the
//! writer knows is valid must be accepted with exactly its spans counted,
//! and a rejected one must change nothing but `batches_rejected`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use servicemap::{Config, Engine};
use servicemap_fuzz::check;
use servicemap_fuzz::generate::{Keys, Scenario, Step, T0, write_batch};

fuzz_target!(|s: Scenario| {
    let json = s.config.to_json();
    let config = Config::from_json(json.as_bytes()).unwrap_or_else(|e| panic!("generated config {json} refused: {e}"));
    check::expect_label_clash(&config);
    let engine = Engine::new(config);
    let keys = Keys::from_wanted(&engine.wanted_keys());
    let mut now = T0;
    for step in s.steps.iter().take(16) {
        match step {
            Step::Consume { batch, advance_ms } => {
                now += *advance_ms as u64 * 1_000_000;
                let w = write_batch(batch, &keys, now);
                check::consume_checked(&engine, &w.bytes, now, w.valid.then_some(w.spans));
            }
            Step::Expire { advance_ms } => {
                now += *advance_ms as u64 * 1_000_000;
                engine.expire(now);
            }
            Step::ExpireAll => engine.expire_all(now),
            Step::Render(f) => {
                let f = check::FORMATS[*f as usize % check::FORMATS.len()];
                check::check_output(f, &engine.render(f, now));
            }
            Step::Query(q) => check::query(&engine, &q.to_json(now), now),
        }
    }
    check::finish(&engine, now);
});
