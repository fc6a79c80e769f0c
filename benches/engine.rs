//! Engine benchmarks: consume throughput on one and two threads (and two
//! threads with an engine each, the machine's own ceiling), the wire
//! reader alone, and rendering 10 000 edges. `BENCHMARKS.md` has the figures
//! and how to run them.

mod workload;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use servicemap::wire::KeySet;
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
    // The same two threads, each with an engine of its own: nothing shared
    // but the machine (caches, memory, the host's scheduling of the two
    // vCPUs). Its ratio to one thread is the most two threads can give here;
    // `2threads` against it is what sharing one engine costs.
    let own: Vec<(Engine, AtomicU64)> = (0..2)
        .map(|_| {
            let e = Engine::new(workload::config());
            let k = replay.warm(&e);
            (e, AtomicU64::new(k))
        })
        .collect();
    let replay = &replay;
    g.bench_function("2threads_2engines", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for (i, (e, next)) in own.iter().enumerate() {
                    // Together `iters` batches, as in the other two.
                    let n = iters / 2 + (i as u64) * (iters % 2);
                    s.spawn(move || {
                        let from = next.fetch_add(n, Relaxed);
                        for k in from..from + n {
                            replay.feed(e, k);
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
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

fn render(c: &mut Criterion) {
    let (engine, now) = workload::mesh(100, 100, workload::config());
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
        // A scraper that keeps its buffer from one scrape to the next.
        let mut buf = Vec::new();
        g.bench_function(format!("10k_edges_reused/{name}"), |b| {
            b.iter(|| {
                engine.render_into(format, now, &mut buf);
                black_box(buf.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, consume, read_batch, render);
criterion_main!(benches);
