//! Memory per waiting span: feeds N client spans whose servers never arrive
//! (default 1 000 000) and reports the store's own accounting and the growth
//! of the process's resident set.
//!
//!     cargo run --release --example memory -- [N] [--dimensions D] [--messaging-latency]
//!
//! The spans carry ordinary HTTP client attributes and no peer attribute, so
//! each one waits in the store until it expires (the wait is set long enough
//! that none does during the run). With `--dimensions D`, D dimension labels
//! are configured and present on every span, which adds 8 bytes per label to
//! a waiting edge. With `--messaging-latency`, the messaging-system latency
//! histogram is on, so each waiting side also keeps its time (8 bytes).

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use prost::Message;
use servicemap::pairing::Store;
use servicemap::pairing::Waiting;
use servicemap::{Compat, Config, Engine};
use servicemap_testkit::Rng;
use std::time::Duration;

const SERVICES: u64 = 20;
const PER_BATCH: u64 = 1000;
const T0: u64 = 1_767_225_600_000_000_000;

fn kv(key: &str, v: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    }
}

/// Resident set size in bytes, from /proc/self/statm.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// A batch of `PER_BATCH` client spans, spans `first..` of the run.
fn batch(first: u64, dimensions: usize) -> Vec<u8> {
    let mut by_service: Vec<Vec<Span>> = vec![Vec::new(); SERVICES as usize];
    for n in first..first + PER_BATCH {
        let mut attributes = vec![
            kv("http.request.method", "GET"),
            kv("url.full", &format!("http://inventory.shop.svc.cluster.local:8080/items/{n}")),
            kv("server.address", "inventory.shop.svc.cluster.local"),
        ];
        for d in 0..dimensions {
            attributes.push(kv(&format!("dim{d}"), &format!("value-{}", n % 7)));
        }
        by_service[(n % SERVICES) as usize].push(Span {
            // Random-looking, as real trace IDs are.
            trace_id: [Rng::new(n).next_u64().to_le_bytes(), n.to_le_bytes()].concat(),
            span_id: (n | 1 << 63).to_be_bytes().to_vec(),
            parent_span_id: (n | 1 << 62).to_be_bytes().to_vec(),
            name: "GET".into(),
            kind: span::SpanKind::Client as i32,
            start_time_unix_nano: T0,
            end_time_unix_nano: T0 + 1_000_000,
            attributes,
            ..Default::default()
        });
    }
    let resource_spans = by_service
        .into_iter()
        .enumerate()
        .map(|(s, spans)| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", &format!("svc-{s}"))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }.encode_to_vec()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let dimensions: usize =
        args.iter().position(|a| a == "--dimensions").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(0);
    let messaging_latency = args.iter().any(|a| a == "--messaging-latency");
    let mut config = Config::preset(Compat::Tempo);
    config.enable_messaging_system_latency_histogram = messaging_latency;
    // Room to spare: each shard holds max_items / shards, and random trace
    // IDs do not spread perfectly evenly.
    config.max_items = n as usize * 5 / 4;
    config.wait = Duration::from_secs(3600);
    config.dimensions = (0..dimensions).map(|d| format!("dim{d}")).collect();
    let shards = config.shards;

    let before = rss();
    let engine = Engine::new(config);
    let mut first = 0;
    while first < n {
        let b = batch(first, dimensions);
        engine.consume(&b, T0).expect("valid batch");
        first += PER_BATCH;
    }
    let after = rss();
    let st = engine.stats();
    assert_eq!(st.waiting, n, "every span waits");
    let waiting = st.waiting as f64;
    println!("waiting spans:             {}", st.waiting);
    println!("shards:                    {shards}");
    println!("dimensions:                {dimensions}");
    println!("messaging latency:         {}", if messaging_latency { "on" } else { "off" });
    println!("slot size (store node):    {} bytes", Store::<Waiting>::bytes_per_slot());
    println!(
        "stats.store_bytes:         {} ({:.1} bytes per waiting span)",
        st.store_bytes,
        st.store_bytes as f64 / waiting
    );
    println!(
        "process RSS growth:        {} ({:.1} bytes per waiting span)",
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 / waiting
    );
}
