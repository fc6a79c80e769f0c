//! The synthetic corpus the benchmarks and examples replay: repeatable, shaped
//! like real traffic, and paired by the engine.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{Span, status};
use prost::Message;
use servicemap::{Config, Engine, Format};
use servicemap_testkit::{Corpus, EPOCH_NS};
use std::collections::HashSet;

fn decode(b: &[u8]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest::decode(b).unwrap()
}

fn spans(r: &ExportTraceServiceRequest) -> impl Iterator<Item = &Span> {
    r.resource_spans.iter().flat_map(|rs| rs.scope_spans.iter().flat_map(|ss| ss.spans.iter()))
}

#[test]
fn same_seed_same_bytes() {
    let a = Corpus::new(42).batches(3, 500);
    let b = Corpus::new(42).batches(3, 500);
    assert_eq!(a, b);
    let c = Corpus::new(43).batches(3, 500);
    assert_ne!(a, c);
}

#[test]
fn batches_hold_exactly_the_asked_spans() {
    let mut c = Corpus::new(1);
    for (n, b) in c.batches(5, 1000).iter().enumerate() {
        assert_eq!(spans(&decode(b)).count(), 1000, "batch {n}");
    }
    assert_eq!(c.stats().spans, 5000);
    assert_eq!(c.stats().batches, 5);
    let small = Corpus::new(1).batches(4, 3);
    assert!(small.iter().all(|b| spans(&decode(b)).count() == 3));
}

#[test]
fn spans_are_about_400_bytes_with_about_10_attributes() {
    let mut c = Corpus::new(7);
    let batches = c.batches(10, 1000);
    let bps = c.stats().bytes_per_span();
    assert!((300.0..=500.0).contains(&bps), "{bps} bytes per span");
    let (mut n, mut attrs) = (0usize, 0usize);
    for b in &batches {
        for sp in spans(&decode(b)) {
            n += 1;
            attrs += sp.attributes.len();
        }
    }
    let per_span = attrs as f64 / n as f64;
    assert!((7.0..=11.0).contains(&per_span), "{per_span} attributes per span");
    let traces = c.stats().traces as f64;
    assert!((8.0..=12.0).contains(&(10_000.0 / traces)), "{} spans per trace", 10_000.0 / traces);
}

#[test]
fn every_edge_shape_is_present() {
    let batches = Corpus::new(3).batches(4, 1000);
    let mut kinds = HashSet::new();
    let (mut grpc, mut db, mut peer, mut links, mut errors, mut services) = (0, 0, 0, 0, 0, HashSet::new());
    let mut split = 0;
    let mut seen_traces: Vec<HashSet<Vec<u8>>> = Vec::new();
    for b in &batches {
        let r = decode(b);
        let mut traces = HashSet::new();
        for rs in &r.resource_spans {
            let attrs = &rs.resource.as_ref().unwrap().attributes;
            let name = attrs.iter().find(|kv| kv.key == "service.name").unwrap();
            services.insert(format!("{:?}", name.value));
        }
        for sp in spans(&r) {
            kinds.insert(sp.kind);
            let has = |k: &str| sp.attributes.iter().any(|kv| kv.key == k);
            grpc += has("rpc.system") as u32;
            db += has("db.system") as u32;
            peer += has("peer.service") as u32;
            links += sp.links.len() as u32;
            errors += sp.status.as_ref().is_some_and(|s| s.code == status::StatusCode::Error as i32) as u32;
            traces.insert(sp.trace_id.clone());
        }
        if let Some(prev) = seen_traces.last() {
            split += traces.intersection(prev).count();
        }
        seen_traces.push(traces);
    }
    assert_eq!(kinds.len(), 5, "{kinds:?}");
    assert_eq!(services.len(), 20);
    for (what, n) in [("grpc", grpc), ("db", db), ("peer", peer), ("links", links), ("errors", errors)] {
        assert!(n > 0, "{what}: {n}");
    }
    assert!(split > 20, "traces spread over two batches: {split}");
}

#[test]
fn the_engine_pairs_most_of_it() {
    let engine = Engine::new(Config::from_json(br#"{"initial_zero":false,"max_items":100000}"#).unwrap());
    let mut c = Corpus::new(9);
    let t0 = EPOCH_NS;
    for (k, b) in c.batches(20, 1000).iter().enumerate() {
        engine.consume(b, t0 + k as u64 * 10_000_000).unwrap();
    }
    engine.expire_all(t0 + 60_000_000_000);
    let st = engine.stats();
    assert_eq!(st.batches_accepted, 20);
    assert_eq!(st.spans_dropped, 0);
    assert!(st.edges_completed as f64 > 0.6 * st.edges_new as f64, "{st:?}");
    let text = String::from_utf8(engine.render(Format::Prometheus, t0 + 60_000_000_000)).unwrap();
    for needle in [
        "connection_type=\"database\"",
        "connection_type=\"messaging_system\"",
        "connection_type=\"virtual_node\"",
        "server=\"stripe-api\"",
        "client=\"user\"",
        "traces_service_graph_request_failed_total",
    ] {
        assert!(text.contains(needle), "missing {needle}");
    }
}
