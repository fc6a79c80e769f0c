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
//! With `--projected`, each batch is first cut down to what the collector
//! components hand over (`go-shim/internal/projection`): span IDs, kind,
//! times, status, a consumer's links and only the attributes the engine
//! reads, so the engine's own share of the connector's cost is measured.

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
    let mut replay = Replay::new();
    if args.iter().any(|a| a == "--projected") {
        let probe = Engine::new(config.clone());
        let wanted = probe.wanted_keys();
        let keys = |side: &str| -> Vec<String> { serde_json::from_value(wanted[side].clone()).unwrap() };
        let (resource, span) = (keys("resource"), keys("span"));
        let names = wanted["span_name"].as_bool().unwrap_or(false);
        for batch in &mut replay.ring {
            *batch = project(batch, &resource, &span, names);
        }
    }
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

/// A batch as the collector components hand it over: only what the engine
/// reads (as `go-shim/internal/projection` writes it, less its padded
/// length prefixes).
fn project(batch: &[u8], resource: &[String], span: &[String], names: bool) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
    use prost::Message;
    let mut req = ExportTraceServiceRequest::decode(batch).expect("corpus batches decode");
    for rs in &mut req.resource_spans {
        let named = rs.resource.as_ref().is_some_and(|r| r.attributes.iter().any(|kv| kv.key == "service.name"));
        if let Some(r) = rs.resource.as_mut() {
            r.attributes.retain(|kv| resource.contains(&kv.key));
        }
        rs.schema_url.clear();
        for ss in &mut rs.scope_spans {
            ss.scope = None;
            ss.schema_url.clear();
            for s in &mut ss.spans {
                let kind = s.kind;
                let pairs = [SpanKind::Client, SpanKind::Server, SpanKind::Producer, SpanKind::Consumer]
                    .iter()
                    .any(|k| *k as i32 == kind);
                s.trace_state.clear();
                s.flags = 0;
                s.events.clear();
                s.dropped_attributes_count = 0;
                s.dropped_events_count = 0;
                s.dropped_links_count = 0;
                if !names || !named || !pairs {
                    s.name.clear();
                }
                if !named || !pairs {
                    s.parent_span_id.clear();
                    s.start_time_unix_nano = 0;
                    s.end_time_unix_nano = 0;
                    s.attributes.clear();
                    s.links.clear();
                    s.status = None;
                    continue;
                }
                s.attributes.retain(|kv| span.contains(&kv.key));
                if kind != SpanKind::Consumer as i32 {
                    s.links.clear();
                }
                for l in &mut s.links {
                    l.trace_state.clear();
                    l.attributes.clear();
                    l.flags = 0;
                    l.dropped_attributes_count = 0;
                }
                if let Some(st) = s.status.as_mut() {
                    st.message.clear();
                }
            }
        }
    }
    req.encode_to_vec()
}
