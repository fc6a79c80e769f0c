//! Engine benchmarks: consume throughput on one and two threads, the wire
//! reader alone, and rendering 10 000 edges. `BENCHMARKS.md` has the figures
//! and how to run them.

mod workload;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span, status};
use prost::Message;
use servicemap::attributes::KeySet;
use servicemap::wire::{self, Batch};
use servicemap::{Engine, Format};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use workload::{Replay, SPANS_PER_BATCH};

/// Consumes batches `from..to` on `threads` threads sharing `engine`; each
/// thread takes the next batch number as it finishes one.
fn run(replay: &Replay, engine: &Engine, from: u64, to: u64, threads: usize) -> Duration {
    let start = Instant::now();
    if threads == 1 {
        for k in from..to {
            replay.feed(engine, k);
        }
    } else {
        let next = AtomicU64::new(from);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    loop {
                        let k = next.fetch_add(1, Relaxed);
                        if k >= to {
                            break;
                        }
                        replay.feed(engine, k);
                    }
                });
            }
        });
    }
    start.elapsed()
}

fn consume(c: &mut Criterion) {
    let replay = Replay::new();
    let engine = Engine::new(workload::config());
    let next = AtomicU64::new(replay.warm(&engine));
    let st = engine.stats();
    eprintln!(
        "consume: {:.0} bytes/span; after warm-up {} waiting, {} series, {} completed of {} edges",
        replay.bytes_per_span, st.waiting, st.active_series, st.edges_completed, st.edges_new
    );

    let mut g = c.benchmark_group("consume");
    // Every sample runs the same number of batches, long enough that starting
    // the threads of a sample does not count.
    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(SPANS_PER_BATCH as u64));
    for (name, threads) in [("1thread", 1), ("2threads", 2)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let from = next.fetch_add(iters, Relaxed);
                run(&replay, &engine, from, from + iters, threads)
            })
        });
    }
    g.finish();
    let st = engine.stats();
    eprintln!(
        "consume: at the end {} waiting ({} store bytes), {} series, {} dropped",
        st.waiting, st.store_bytes, st.active_series, st.spans_dropped
    );
}

fn read_batch(c: &mut Criterion) {
    let replay = Replay::new();
    let keys = KeySet::new(&workload::config());
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements(SPANS_PER_BATCH as u64));
    let mut batch = Batch::default();
    let mut k = 0;
    g.bench_function("read_batch", |b| {
        b.iter(|| {
            let data = &replay.ring[k % replay.ring.len()];
            k += 1;
            wire::read_batch(data, &keys, &mut batch).unwrap();
            black_box(batch.spans.len())
        })
    });
    g.finish();
}

fn kv(key: &str, v: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    }
}

/// An engine holding `clients × servers` distinct edges: every client service
/// calls every server service a few times, some calls failing.
fn mesh(clients: usize, servers: usize) -> (Engine, u64) {
    let engine = Engine::new(workload::config());
    let now = workload::T0;
    let mut n: u64 = 0;
    for round in 0..3u64 {
        for c in 0..clients {
            let mut client_spans = Vec::new();
            let mut server_spans: Vec<Vec<Span>> = vec![Vec::new(); servers];
            for (s, server) in server_spans.iter_mut().enumerate() {
                n += 1;
                let trace_id = [&n.to_be_bytes()[..], &[0x5a; 8]].concat();
                let client_id = (n << 1).to_be_bytes().to_vec();
                let failed = (c + s + round as usize) % 13 == 0;
                let start = now + round * 1_000_000_000;
                let dur = 1_000_000 * (1 + (n % 400));
                let st = failed.then(|| Status { code: status::StatusCode::Error as i32, message: String::new() });
                client_spans.push(Span {
                    trace_id: trace_id.clone(),
                    span_id: client_id.clone(),
                    parent_span_id: vec![1; 8],
                    name: "GET".into(),
                    kind: span::SpanKind::Client as i32,
                    start_time_unix_nano: start,
                    end_time_unix_nano: start + dur + 500_000,
                    attributes: vec![kv("http.request.method", "GET"), kv("server.address", "svc")],
                    status: st.clone(),
                    ..Default::default()
                });
                server.push(Span {
                    trace_id,
                    span_id: ((n << 1) | 1).to_be_bytes().to_vec(),
                    parent_span_id: client_id,
                    name: "GET /items/{id}".into(),
                    kind: span::SpanKind::Server as i32,
                    start_time_unix_nano: start + 200_000,
                    end_time_unix_nano: start + dur,
                    attributes: vec![kv("http.request.method", "GET"), kv("http.route", "/items/{id}")],
                    status: st,
                    ..Default::default()
                });
            }
            let mut resource_spans = vec![resource(&format!("client-{c:03}"), client_spans)];
            for (s, spans) in server_spans.into_iter().enumerate() {
                resource_spans.push(resource(&format!("server-{s:03}"), spans));
            }
            let bytes = ExportTraceServiceRequest { resource_spans }.encode_to_vec();
            engine.consume(&bytes, now).unwrap();
        }
    }
    let later = now + 10_000_000_000;
    // The first scrape shows new series at zero; render once so that later
    // renders show the real values, as they would in steady operation.
    engine.render(Format::Prometheus, later);
    (engine, later)
}

fn resource(service: &str, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource { attributes: vec![kv("service.name", service)], ..Default::default() }),
        scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
        ..Default::default()
    }
}

fn render(c: &mut Criterion) {
    let (engine, now) = mesh(100, 100);
    let series = engine.stats().active_series;
    let mut g = c.benchmark_group("render");
    g.sample_size(30);
    for (name, format) in
        [("prometheus", Format::Prometheus), ("openmetrics", Format::OpenMetrics), ("otlp", Format::OtlpMetrics)]
    {
        let out = engine.render(format, now);
        let lines = out.iter().filter(|&&b| b == b'\n').count();
        eprintln!("render {name}: {series} series, {} bytes, {lines} lines", out.len());
        g.bench_function(format!("10k_edges/{name}"), |b| b.iter(|| black_box(engine.render(format, now).len())));
    }
    g.finish();
}

criterion_group!(benches, consume, read_batch, render);
criterion_main!(benches);
