//! Replays the benchmark workload (`benches/workload`) through one engine on
//! one thread and prints the time per span: a steady-state run to point a
//! profiler at.
//!
//!     cargo run --release --example replay -- [N] [--no-graph] [--no-exemplars] [--histograms MODE]
//!         [--wire-only | --render FORMAT]
//!
//! The engine is warmed with one pass over the ring first; only the N
//! batches after it (default 2000) are timed. With `--wire-only`, only the
//! wire reader runs. With `--render prometheus|openmetrics|protobuf|otlp`, the
//! engine of the render benchmark (10 000 edges, with the same options) is rendered N times
//! (default 20) instead (with `--reuse`, into one buffer kept between renders). With `--no-graph`, the engine keeps no service map
//! (config `graph: false`), to measure what the map costs; with
//! `--no-exemplars`, it keeps none (config `exemplars: false`); with
//! `--histograms native|both`, it keeps native histograms (config `histograms`),
//! with `--histograms exponential` contrib's (`exponential_histogram_max_size: 160`).

#[path = "../benches/workload/mod.rs"]
mod workload;

use servicemap::config::Histograms;
use servicemap::wire::KeySet;
use servicemap::wire::{self, Batch};
use servicemap::{Engine, Format};
use std::time::Instant;
use workload::{Replay, SPANS_PER_BATCH};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let batches: u64 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(2000);
    let wire_only = args.iter().any(|a| a == "--wire-only");
    let mut config = workload::config();
    config.graph = !args.iter().any(|a| a == "--no-graph");
    config.exemplars = !args.iter().any(|a| a == "--no-exemplars");
    let after = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).map(|s| s.as_str());
    config.histograms = match after("--histograms") {
        Some("native") => Histograms::Native,
        Some("both") => Histograms::Both,
        Some("exponential") => {
            // contrib's exponential histograms at their usual size.
            config.exponential_histogram_max_size = 160;
            Histograms::Native
        }
        _ => Histograms::Classic,
    };
    let render = args.iter().any(|a| a == "--render").then(|| match after("--render") {
        Some("openmetrics") => Format::OpenMetrics,
        Some("protobuf") => Format::PrometheusProtobuf,
        Some("otlp") => Format::OtlpMetrics,
        _ => Format::Prometheus,
    });
    if let Some(format) = render {
        let times: u32 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(20);
        let (engine, now) = workload::mesh(100, 100, config);
        let start = Instant::now();
        let reuse = args.iter().any(|a| a == "--reuse");
        let (mut bytes, mut buf) = (0, Vec::new());
        for _ in 0..times {
            bytes = if reuse {
                engine.render_into(format, now, &mut buf);
                buf.len()
            } else {
                engine.render(format, now).len()
            };
        }
        let ms = start.elapsed().as_secs_f64() * 1e3 / times as f64;
        println!("render {format:?}: {ms:.1} ms for {} series, {bytes} bytes", engine.stats().active_series);
        return;
    }
    let replay = Replay::new();
    let spans = batches * SPANS_PER_BATCH as u64;
    if wire_only {
        let keys = KeySet::new(&config);
        let mut batch = Batch::default();
        let mut read = 0;
        let start = Instant::now();
        for k in 0..batches as usize {
            wire::read_batch(&replay.ring[k % replay.ring.len()], &keys, &mut batch).unwrap();
            read += batch.spans.len();
        }
        let ns = start.elapsed().as_nanos() as f64 / spans as f64;
        println!("wire::read_batch: {ns:.0} ns/span over {spans} spans ({read} kept for pairing)");
        return;
    }
    let engine = Engine::new(config);
    let first = replay.warm(&engine);
    let start = Instant::now();
    for k in first..first + batches {
        replay.feed(&engine, k);
    }
    let ns = start.elapsed().as_nanos() as f64 / spans as f64;
    let st = engine.stats();
    println!(
        "consume: {ns:.0} ns/span ({:.2} M spans/s) over {spans} spans of {:.0} bytes; {} waiting, {} series",
        1e3 / ns,
        replay.bytes_per_span,
        st.waiting,
        st.active_series
    );
}
