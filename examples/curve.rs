//! The cost curve: what a span costs as one dimension of the work grows.
//!
//!     cargo run --release --example curve -- [--edges E] [--services S]
//!         [--waiting W] [--dimensions D] [--batch B] [--pairs P]
//!         [--max-graph-edges N] [--max-graph-nodes N] [--no-graph] [--no-exemplars]
//!
//! Client/server pairs (each span its own resource, as they come from two
//! services) are spread round-robin over E distinct edges among S services
//! (defaults 100 and 100), with W client spans left waiting for a server
//! that never comes (default 1,000), D dimensions on every span (default 0)
//! and B spans per batch (default 1,000). A warm-up plays every edge once,
//! so the measured phase (P pairs, default 50,000) is the steady state; the
//! warm-up's time per new edge is reported apart, with the bytes each new
//! edge and each waiting span hold (counted by the allocator). All batches are encoded before anything is timed.
//!
//! For instruction counts, run under callgrind with collection only inside
//! the steady phase:
//!
//!     valgrind --tool=callgrind --toggle-collect='curve::steady' \
//!         target/release/examples/curve --edges 100000
//!
//! and divide the total by 2·P spans.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use prost::Message;
use servicemap::{Compat, Config, Engine};
use servicemap_testkit::Rng;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

const T0: u64 = 1_767_225_600_000_000_000;

struct Shape {
    edges: u64,
    services: u64,
    waiting: u64,
    dimensions: usize,
    batch: u64,
    pairs: u64,
}

fn kv(key: &str, v: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    }
}

/// Counts the bytes allocated and not yet freed, so that what the engine
/// holds is measured apart from the allocator's free lists (the encoded
/// batches' garbage would hide it from the resident set).
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Relaxed);
        // SAFETY: the caller's layout is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Relaxed);
        LIVE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: as for `alloc` and `dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> usize {
    LIVE.load(Relaxed)
}

/// Edge `e`'s client and server: the edges fill the services' pairs in
/// order of distance, `i → i+1`, then `i → i+2`, and so on, so that any
/// number of edges up to S·(S−1) are distinct.
fn endpoints(shape: &Shape, e: u64) -> (u64, u64) {
    let s = shape.services;
    let client = e % s;
    let distance = 1 + (e / s) % (s - 1);
    (client, (client + distance) % s)
}

fn one_span(
    service: u64,
    kind: span::SpanKind,
    trace: &[u8],
    id: u64,
    parent: Option<u64>,
    dims: usize,
    dur: u64,
) -> ResourceSpans {
    let mut attributes = vec![kv("http.request.method", "GET"), kv("http.response.status_code", "200")];
    for d in 0..dims {
        attributes.push(kv(&format!("dim{d}"), &format!("value-{}", service % 3)));
    }
    let span = Span {
        trace_id: trace.to_vec(),
        span_id: id.to_be_bytes().to_vec(),
        parent_span_id: parent.map(|p| p.to_be_bytes().to_vec()).unwrap_or_default(),
        name: "GET /items".into(),
        kind: kind as i32,
        start_time_unix_nano: T0,
        end_time_unix_nano: T0 + dur,
        attributes,
        ..Default::default()
    };
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("service.name", &format!("svc-{service}"))],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans { spans: vec![span], ..Default::default() }],
        ..Default::default()
    }
}

/// Spans `pairs` client/server pairs on `edges` round-robin,
/// then `waiting` lone client spans, in batches of `shape.batch` spans.
fn batches(shape: &Shape, rng: &mut Rng, edges: std::ops::Range<u64>, pairs: u64, waiting: u64) -> Vec<Vec<u8>> {
    let mut spans = Vec::new();
    for p in 0..pairs {
        let (client, server) = endpoints(shape, edges.start + p % (edges.end - edges.start));
        let trace = [rng.next_u64().to_le_bytes(), rng.next_u64().to_le_bytes()].concat();
        let id = rng.next_u64() | 1;
        let dur = 1_000_000 + rng.next_u64() % 50_000_000;
        spans.push(one_span(client, span::SpanKind::Client, &trace, id, None, shape.dimensions, dur + 500_000));
        spans.push(one_span(server, span::SpanKind::Server, &trace, id + 1, Some(id), shape.dimensions, dur));
    }
    for w in 0..waiting {
        let trace = [rng.next_u64().to_le_bytes(), rng.next_u64().to_le_bytes()].concat();
        spans.push(one_span(
            w % shape.services,
            span::SpanKind::Client,
            &trace,
            rng.next_u64() | 1,
            None,
            shape.dimensions,
            1_000_000,
        ));
    }
    spans
        .chunks(shape.batch as usize)
        .map(|c| ExportTraceServiceRequest { resource_spans: c.to_vec() }.encode_to_vec())
        .collect()
}

/// Plays batches: the warm-up's.
#[inline(never)]
fn warm(engine: &Engine, batches: &[Vec<u8>], now: u64) {
    for b in batches {
        engine.consume(b, now).expect("valid batch");
    }
}

/// The steady phase, apart so that callgrind can collect inside it alone.
#[inline(never)]
fn steady(engine: &Engine, batches: &[Vec<u8>], now: u64) {
    for b in batches {
        engine.consume(b, now).expect("valid batch");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |flag: &str, default: u64| -> u64 {
        args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(default)
    };
    let shape = Shape {
        edges: get("--edges", 100),
        services: get("--services", 100).max(2),
        waiting: get("--waiting", 1000),
        dimensions: get("--dimensions", 0) as usize,
        batch: get("--batch", 1000).max(1),
        pairs: get("--pairs", 50_000),
    };
    assert!(shape.edges <= shape.services * (shape.services - 1), "more edges than pairs of services");

    let mut config = Config::preset(Compat::Tempo);
    config.wait = Duration::from_secs(3600);
    config.max_items = (shape.waiting as usize + 2 * shape.batch as usize) * 5 / 4 + 10_000;
    config.max_series = usize::MAX / 4;
    config.graph = !args.iter().any(|a| a == "--no-graph");
    config.exemplars = !args.iter().any(|a| a == "--no-exemplars");
    config.max_graph_edges = get("--max-graph-edges", config.max_graph_edges as u64) as usize;
    config.max_graph_nodes = get("--max-graph-nodes", config.max_graph_nodes as u64) as usize;
    config.dimensions = (0..shape.dimensions).map(|d| format!("dim{d}")).collect();
    let mut rng = Rng::new(7);
    // Edge 0 alone first, so that the store's first chunks and the
    // engine's first tables are not counted as the other edges' cost.
    let first = batches(&shape, &mut rng, 0..1, 2 * shape.batch.max(1000), 0);
    let edges = batches(&shape, &mut rng, 1..shape.edges.max(2), shape.edges.max(2) - 1, 0);
    let lone = batches(&shape, &mut rng, 0..1, 0, shape.waiting);
    let work = batches(&shape, &mut rng, 0..shape.edges, shape.pairs, 0);

    let engine = Engine::new(config);
    warm(&engine, &first, T0);
    // Every other edge once: its series and its map entry are made here.
    let (before, start) = (live(), Instant::now());
    warm(&engine, &edges, T0);
    let new_edges = (shape.edges.max(2) - 1) as f64;
    let new_edge_ns = start.elapsed().as_nanos() as f64 / new_edges;
    let edge_bytes = live().saturating_sub(before) as f64 / new_edges;
    let before = live();
    warm(&engine, &lone, T0);
    let waiting_bytes = live().saturating_sub(before) as f64 / shape.waiting.max(1) as f64;
    assert_eq!(engine.stats().waiting, shape.waiting, "every lone span waits");

    let start = Instant::now();
    steady(&engine, &work, T0 + 1);
    let ns = start.elapsed().as_nanos() as f64 / (2 * shape.pairs) as f64;
    assert_eq!(engine.stats().waiting, shape.waiting, "every measured pair completed");

    println!(
        "edges {} services {} waiting {} dimensions {} batch {}: {ns:.1} ns/span; a new edge's pair {new_edge_ns:.0} ns and {edge_bytes:.0} B; {waiting_bytes:.1} B per waiting span",
        shape.edges, shape.services, shape.waiting, shape.dimensions, shape.batch,
    );
}
