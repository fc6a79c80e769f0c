//! The engine's JSON configuration (`Config::from_json`, what `sm_engine_new`
//! and the CLI's --config read). A configuration it accepts must give an
//! engine that runs: one small batch of a client/server pair and a virtual
//! node, expiry, every format, the queries. Errors must name a key.
#![no_main]
use libfuzzer_sys::fuzz_target;
use servicemap::{Config, Engine};
use servicemap_fuzz::check;
use servicemap_fuzz::generate::{BatchSpec, Item, Keys, Name, Pair, T0, write_batch};

fuzz_target!(|data: &[u8]| {
    let config = match Config::from_json(data) {
        Ok(c) => c,
        Err(e) => {
            let text = e.to_string();
            assert!(text.starts_with("config key `"), "config error names no key: {text}");
            return;
        }
    };
    check::expect_label_clash(&config);
    let engine = Engine::new(config);
    let keys = Keys::from_wanted(&engine.wanted_keys());
    let pair = |server_first| {
        Item::Pair(Pair {
            trace: 1,
            client_span: 1,
            server_span: 2,
            client: Name::Pool(0),
            server: Name::Pool(1),
            style: 0,
            client_attrs: Vec::new(),
            server_attrs: Vec::new(),
            latency_ms: 20,
            error: server_first,
            server_first,
        })
    };
    let w = write_batch(&BatchSpec { items: vec![pair(false), pair(true)], damage: Vec::new() }, &keys, T0);
    // A batch over the configured max_batch_bytes is refused; anything else is read.
    let expect = (w.bytes.len() <= engine.config().max_batch_bytes).then_some(w.spans);
    check::consume_checked(&engine, &w.bytes, T0, expect);
    check::finish(&engine, T0 + 1_000_000_000);
});
