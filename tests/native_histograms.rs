//! Native histograms: the buckets each latency falls in, the budget
//! (resolution halved, or a reset once old enough), and how each format
//! carries them: Prometheus protobuf (classic, native or both), the text
//! formats (+Inf only when native alone), with exact counts.

mod common;
use common::*;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::ExponentialHistogramDataPoint;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message;
use servicemap::client_model::{Histogram, MetricFamily};
use std::collections::BTreeMap;

const MS: u64 = 1_000_000;

/// One client→server request per server duration (in ms), in this order,
/// each its own trace (numbered from `first_trace`) and batch; the client
/// span lasts twice as long.
fn send(e: &servicemap::Engine, durations_ms: &[u64], first_trace: u8, now: u64) {
    for (i, &d) in durations_ms.iter().enumerate() {
        let t = trace(first_trace + i as u8);
        let a = span(CLIENT, t.clone(), sid(1), None, T0, T0 + 2 * d * MS);
        let b = span(SERVER, t, sid(2), Some(sid(1)), T0, T0 + d * MS);
        e.consume(&batch(vec![resource(Some("a"), vec![], vec![a]), resource(Some("b"), vec![], vec![b])]), now)
            .unwrap();
    }
}

fn families(bytes: &[u8]) -> BTreeMap<String, MetricFamily> {
    let mut buf = bytes;
    let mut out = BTreeMap::new();
    while !buf.is_empty() {
        let f = MetricFamily::decode_length_delimited(&mut buf).unwrap();
        out.insert(f.name.clone().unwrap(), f);
    }
    out
}

fn server_histogram(e: &servicemap::Engine, now: u64) -> Histogram {
    let f = families(&e.render(servicemap::Format::PrometheusProtobuf, now));
    let family = &f["traces_service_graph_request_server_seconds"];
    assert_eq!(family.metric.len(), 1);
    family.metric[0].histogram.clone().unwrap()
}

/// The native buckets as `key → count`, read from spans and deltas.
fn native_buckets(h: &Histogram) -> BTreeMap<i32, i64> {
    let mut out = BTreeMap::new();
    let (mut key, mut count, mut deltas) = (0, 0, h.positive_delta.iter());
    for span in &h.positive_span {
        key += span.offset.unwrap();
        for _ in 0..span.length.unwrap() {
            count += deltas.next().unwrap();
            if count != 0 {
                out.insert(key, count);
            }
            key += 1;
        }
    }
    assert!(deltas.next().is_none());
    out
}

/// The key of a latency at schema 3, from its definition: the smallest k
/// with v ≤ 2^(k/8).
fn key3(v: f64) -> i32 {
    (v.log2() * 8.0).ceil() as i32
}

#[test]
fn both_carries_classic_and_native_buckets_of_the_same_requests() {
    let e = engine(r#"{"histograms":"both"}"#);
    send(&e, &[10, 20, 20, 300, 0], 1, T0);
    let h = server_histogram(&e, T0);
    assert_eq!((h.sample_count, h.schema, h.zero_threshold), (Some(5), Some(3), Some(2f64.powi(-128))));
    assert_eq!(h.zero_count, Some(1));
    let want: BTreeMap<i32, i64> = [(key3(0.01), 1), (key3(0.02), 2), (key3(0.3), 1)].into();
    assert_eq!(native_buckets(&h), want);
    assert_eq!(want.keys().copied().collect::<Vec<_>>(), vec![-53, -45, -13]);
    // Tempo's classic bounds 0.1 … 12.8: cumulative, +Inf implied.
    let classic: Vec<(f64, u64)> =
        h.bucket.iter().map(|b| (b.upper_bound.unwrap(), b.cumulative_count.unwrap())).collect();
    assert_eq!(classic, vec![(0.1, 4), (0.2, 4), (0.4, 5), (0.8, 5), (1.6, 5), (3.2, 5), (6.4, 5), (12.8, 5)]);
    // One exemplar per classic bucket hit (the last request in it), again in
    // the histogram's own list, in time order.
    let traces = |x: &servicemap::client_model::Exemplar| x.label[0].value.clone().unwrap();
    let in_buckets: Vec<String> = h.bucket.iter().filter_map(|b| b.exemplar.as_ref()).map(traces).collect();
    assert_eq!(in_buckets, vec![hex(5), hex(4)]);
    assert_eq!(h.exemplars.iter().map(traces).collect::<Vec<_>>(), vec![hex(5), hex(4)]);
    assert_eq!(h.exemplars[0].label[0].name.as_deref(), Some("traceID"));
}

fn hex(t: u8) -> String {
    trace(t).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn classic_alone_has_no_native_fields_and_native_alone_no_bounds() {
    let classic = engine("{}");
    send(&classic, &[10], 1, T0);
    let h = server_histogram(&classic, T0);
    assert_eq!((h.schema, h.zero_threshold, h.positive_span.len()), (None, None, 0));
    assert_eq!(h.bucket.len(), 8);

    let native = engine(r#"{"histograms":"native"}"#);
    send(&native, &[10], 1, T0);
    let h = server_histogram(&native, T0);
    assert_eq!(h.schema, Some(3));
    assert_eq!(native_buckets(&h), [(key3(0.01), 1)].into());
    // No classic bucket; the exemplar is in the histogram's own list…
    assert_eq!(h.bucket.len(), 0);
    assert_eq!(h.exemplars.len(), 1);
    // …and the text formats carry +Inf, sum and count only.
    let text = scrape(&native, T0);
    let buckets: Vec<_> =
        text.keys().filter(|k| k.starts_with("traces_service_graph_request_server_seconds_bucket")).collect();
    assert_eq!(
        buckets,
        vec!["traces_service_graph_request_server_seconds_bucket{client=\"a\",le=\"+Inf\",server=\"b\"}"]
    );
    assert_eq!(text[buckets[0]], 1.0);
}

#[test]
fn the_bucket_factor_picks_the_schema() {
    for (factor, schema) in [(1.1, 3), (2.0, 0), (1.01, 7)] {
        let e = engine(&format!(r#"{{"histograms":"native","native_histogram_bucket_factor":{factor}}}"#));
        send(&e, &[10], 1, T0);
        assert_eq!(server_histogram(&e, T0).schema, Some(schema), "factor {factor}");
    }
    let err = servicemap::Config::from_json(br#"{"native_histogram_bucket_factor":1}"#).unwrap_err();
    assert!(err.to_string().contains("native_histogram_bucket_factor"), "{err}");
    let err = servicemap::Config::from_json(br#"{"histograms":"fine"}"#).unwrap_err();
    assert!(err.to_string().contains("histograms"), "{err}");
}

/// Past the budget the resolution halves; once the histogram is as old as
/// `native_histogram_min_reset_duration`, it starts again from zero, classic
/// buckets, sum and count with it (the request counter goes on).
#[test]
fn past_the_budget_halve_then_reset() {
    let e = engine(
        r#"{"histograms":"both","native_histogram_max_bucket_number":3,"native_histogram_min_reset_duration":"60s"}"#,
    );
    // Four latencies an octave apart: four buckets at schema 3, over the budget.
    send(&e, &[100, 200, 400, 800], 1, T0);
    let h = server_histogram(&e, T0);
    // Halved to schema 2: keys -26, -18, -10, -2 of schema 3 become -13, -9, -5, -1.
    assert_eq!(h.schema, Some(2));
    assert_eq!(native_buckets(&h), [(-13, 1), (-9, 1), (-5, 1), (-1, 1)].into());
    assert_eq!(h.sample_count, Some(4));

    // Still over the budget and a minute old: the next request starts it again.
    send(&e, &[50], 9, T0 + 60 * SEC);
    let h = server_histogram(&e, T0 + 60 * SEC);
    assert_eq!(h.schema, Some(3));
    assert_eq!(native_buckets(&h), [(key3(0.05), 1)].into());
    assert_eq!((h.sample_count, h.sample_sum), (Some(1), Some(0.05)));
    assert_eq!(h.bucket[0].cumulative_count, Some(1), "le 0.1");
    assert_eq!(h.created_timestamp.as_ref().map(|t| t.seconds as u64), Some(T0 / SEC + 60));
    assert_eq!(scrape(&e, T0 + 60 * SEC)["traces_service_graph_request_total{client=\"a\",server=\"b\"}"], 5.0);
}

/// The OTLP exponential point of metric `name` (one series) and whether any
/// explicit-bucket histogram was written.
fn otlp_exponential(e: &servicemap::Engine, name: &str) -> (ExponentialHistogramDataPoint, bool) {
    let req = ExportMetricsServiceRequest::decode(&e.render(servicemap::Format::OtlpMetrics, T0)[..]).unwrap();
    let metrics: Vec<_> = req.resource_metrics.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics).collect();
    let explicit = metrics.iter().any(|m| matches!(m.data, Some(Data::Histogram(_))));
    let m = metrics.iter().find(|m| m.name == name).unwrap();
    let Some(Data::ExponentialHistogram(h)) = &m.data else { panic!("{name} is not exponential") };
    assert_eq!(h.data_points.len(), 1);
    (h.data_points[0].clone(), explicit)
}

/// contrib's `exponential_histogram_max_size`: exponential histograms only,
/// scale 20 lowered just enough that the populated buckets span fewer than
/// the size, minimum and maximum kept, served to Prometheus at schema 8.
#[test]
fn contribs_exponential_histograms() {
    let e = engine(r#"{"compat":"contrib","exponential_histogram_max_size":4}"#);
    send(&e, &[1000], 1, T0);
    let (server, explicit) = otlp_exponential(&e, "traces_service_graph_request_server");
    // 1 s is a power of two: the last bucket of index -1 at any scale.
    let positive = server.positive.clone().unwrap();
    assert_eq!((server.scale, positive.offset, positive.bucket_counts), (20, -1, vec![1]));
    assert_eq!((server.min, server.max, server.zero_threshold), (Some(1.0), Some(1.0), 0.0));
    assert!(!explicit, "no explicit-bucket histograms");
    // The client's span lasted 2 s: index 2^20 - 1.
    let (client, _) = otlp_exponential(&e, "traces_service_graph_request_client");
    assert_eq!((client.scale, client.positive.unwrap().offset), (20, 1_048_575));

    // 2 s on the server: index 2^20 - 1, 19 halvings to fit in 4.
    send(&e, &[2000], 2, T0);
    let (server, _) = otlp_exponential(&e, "traces_service_graph_request_server");
    let positive = server.positive.unwrap();
    assert_eq!((server.scale, positive.offset, positive.bucket_counts), (1, -1, vec![1, 0, 1]));
    assert_eq!((server.min, server.max), (Some(1.0), Some(2.0)));

    // Prometheus' protobuf: already coarser than 8, so as it is; keys are
    // OTLP's indices plus one.
    let h = server_histogram(&e, T0);
    assert_eq!(h.schema, Some(1));
    assert_eq!(native_buckets(&h), [(0, 1), (2, 1)].into());

    for (doc, names) in [
        (r#"{"exponential_histogram_max_size":160,"latency_histogram_buckets":[1]}"#, "latency_histogram_buckets"),
        (r#"{"exponential_histogram_max_size":160,"histograms":"both"}"#, "histograms: both"),
    ] {
        let err = servicemap::Config::from_json(doc.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("exponential_histogram_max_size") && err.contains(names), "{err}");
    }
    let err = servicemap::Config::from_json(br#"{"exponential_histogram_max_size":-1}"#).unwrap_err();
    assert!(err.to_string().contains("exponential_histogram_max_size"), "{err}");
}

/// At scale 20 a histogram is written to Prometheus at schema 8, its buckets
/// merged 2^12 at a time.
#[test]
fn contribs_scale_20_is_served_at_schema_8() {
    let e = engine(r#"{"exponential_histogram_max_size":160}"#);
    send(&e, &[100], 1, T0);
    let h = server_histogram(&e, T0);
    assert_eq!(h.schema, Some(8));
    // 0.1 s at scale 20 is index floor(log2(0.1) · 2^20); at 8, that >> 12.
    let index = (0.1f64.ln() * std::f64::consts::LOG2_E * 1048576.0).floor() as i32;
    assert_eq!(native_buckets(&h), [((index >> 12) + 1, 1)].into());
    assert_eq!(h.zero_threshold, Some(0.0));
}
