//! The edge feed (`graph::parse_edge_lines`, `Engine::observe_edges`): JSON
//! lines of edges seen outside traces. What the parser accepts must be
//! applied whole by the engine and every line must hold its invariants;
//! then the map renders and answers queries about the services it named.
#![no_main]
use libfuzzer_sys::fuzz_target;
use servicemap::map::parse_edge_lines;
use servicemap_fuzz::{NOW, check, engine_for};

fuzz_target!(|data: &[u8]| {
    let parsed = parse_edge_lines(data);
    let engine = engine_for(0);
    let observed = engine.observe_edges(data, NOW);
    match (&parsed, &observed) {
        (Ok(lines), Ok(n)) => {
            assert_eq!(lines.len(), *n);
            for l in lines {
                assert!(!l.client.is_empty() && !l.server.is_empty());
                assert!(l.count.is_finite() && l.errors.is_finite() && l.latency_s.is_finite());
                assert!(l.count >= 0.0 && l.errors >= 0.0 && l.errors <= l.count && l.latency_s >= 0.0, "{l:?}");
            }
        }
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        _ => panic!("parse_edge_lines and observe_edges disagree: {parsed:?} vs {observed:?}"),
    }
    // The same lines again a minute later: the map's window moves.
    let _ = engine.observe_edges(data, NOW + 60_000_000_000);
    let names: Vec<String> = parsed.map(|l| l.into_iter().take(4).flat_map(|l| [l.client, l.server]).collect()).unwrap_or_default();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    for now in [NOW + 61_000_000_000, NOW + 3_600_000_000_000] {
        check::render_all(&engine, now);
        check::queries(&engine, now, &names);
    }
});
