//! The live service map's costs: what keeping the graph adds to consume, an
//! impact query over 2,000 services and 20,000 edges, and rendering that
//! graph as JSON.
//!
//!     cargo bench --bench service_map

#[path = "workload/mod.rs"]
mod workload;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use servicemap::{Config, Engine, Format};
use std::fmt::Write;
use std::hint::black_box;
use workload::{Replay, SPANS_PER_BATCH};

const NOW: u64 = 1_767_225_600_000_000_000;

/// 2,000 services in 20 layers of 100; each calls 10 services of the next
/// layer (the last layer calls nothing), 20,000 edges with traffic.
fn big_graph() -> Engine {
    let engine = Engine::new(Config::preset(servicemap::Compat::Tempo));
    let mut lines = String::new();
    for layer in 0..20u32 {
        for i in 0..100u32 {
            let to_layer = (layer + 1) % 20;
            for j in 0..10u32 {
                let target = (i * 7 + j * 13) % 100;
                let _ = writeln!(
                    lines,
                    r#"{{"client":"svc-{layer}-{i}","server":"svc-{to_layer}-{target}","count":{},"errors":{},"latency_seconds":0.02}}"#,
                    10 + j,
                    j % 3
                );
            }
        }
    }
    engine.observe_edges(lines.as_bytes(), NOW).unwrap();
    engine
}

fn graph_cost(c: &mut Criterion) {
    let replay = Replay::new();
    let mut g = c.benchmark_group("consume");
    g.throughput(Throughput::Elements(SPANS_PER_BATCH as u64));
    for (name, graph) in [("graph_on", true), ("graph_off", false)] {
        let mut config = workload::config();
        config.graph = graph;
        let engine = Engine::new(config);
        let mut k = replay.warm(&engine);
        g.bench_function(name, |b| {
            b.iter(|| {
                replay.feed(&engine, k);
                k += 1;
            })
        });
    }
    g.finish();
}

fn queries(c: &mut Criterion) {
    let engine = big_graph();
    let v = engine.graph_view(NOW).unwrap();
    assert_eq!((v.nodes.len(), v.edges.len()), (2000, 20000));
    let mut g = c.benchmark_group("map_2000_services_20000_edges");
    g.sample_size(20);
    g.bench_function("impact", |b| {
        b.iter(|| black_box(engine.query(br#"{"query":"impact","service":"svc-5-17"}"#, NOW).unwrap()))
    });
    let (history, catalog) = (servicemap::map::History::new(1, 1), servicemap::map::Catalog::default());
    g.bench_function("impact_on_view", |b| {
        b.iter(|| black_box(servicemap::map::impact(&v, &history, &catalog, "svc-5-17")))
    });
    g.bench_function("graph_json", |b| b.iter(|| black_box(engine.render(Format::GraphJson, NOW))));
    g.bench_function("root_causes", |b| {
        b.iter_batched(
            || (),
            |_| black_box(engine.query(br#"{"query":"root_causes"}"#, NOW).unwrap()),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, graph_cost, queries);
criterion_main!(benches);
