//! Prometheus' protobuf exposition: length-delimited `MetricFamily`
//! messages (`application/vnd.google.protobuf;
//! proto=io.prometheus.client.MetricFamily; encoding=delimited`), the format
//! a Prometheus with native histograms on asks for first, and the only one
//! that carries native histograms. The families, names, labels and values
//! are the text formats' (`text`); a histogram carries its classic buckets,
//! its native ones, or both, as the `histograms` option says, and its
//! exemplars: one per classic bucket, and the same ones again in the
//! histogram's own list, where Prometheus reads a native histogram's.
//!
//! Written through prost messages declared here from `io.prometheus.client`'s
//! `metrics.proto` (proto2: every field has presence). Counts are whole
//! numbers unless spans are weighted by a multiplier, as in the text formats
//! (then the `_float` fields carry them).

use crate::exposition::text::{
    CLIENT, CLIENT_HELP, CONNECTION_INFO, CONNECTION_INFO_HELP, DROPPED, DROPPED_HELP, MESSAGING, MESSAGING_HELP,
    OVERFLOW, OVERFLOW_HELP, REQUEST, REQUEST_FAILED, REQUEST_FAILED_HELP, REQUEST_HELP, SERVER, SERVER_HELP, UNPAIRED,
    UNPAIRED_HELP, edge_label_pairs, side_label_pairs, since, whole,
};
use crate::series::exemplar::hex;
use crate::series::native::MAX_SCHEMA;
use crate::series::{EdgeSeries, Exemplar, Family as Which, Hist, Row, SideSeries, Snapshot};
use prost::Message;

/// `io.prometheus.client` messages, the fields this writer fills.
pub mod model {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelPair {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub value: Option<String>,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
    #[repr(i32)]
    pub enum MetricType {
        Counter = 0,
        Gauge = 1,
        Summary = 2,
        Untyped = 3,
        Histogram = 4,
        GaugeHistogram = 5,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Timestamp {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Gauge {
        #[prost(double, optional, tag = "1")]
        pub value: Option<f64>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Counter {
        #[prost(double, optional, tag = "1")]
        pub value: Option<f64>,
        #[prost(message, optional, tag = "3")]
        pub created_timestamp: Option<Timestamp>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Exemplar {
        #[prost(message, repeated, tag = "1")]
        pub label: Vec<LabelPair>,
        #[prost(double, optional, tag = "2")]
        pub value: Option<f64>,
        #[prost(message, optional, tag = "3")]
        pub timestamp: Option<Timestamp>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Bucket {
        #[prost(uint64, optional, tag = "1")]
        pub cumulative_count: Option<u64>,
        #[prost(double, optional, tag = "2")]
        pub upper_bound: Option<f64>,
        #[prost(message, optional, tag = "3")]
        pub exemplar: Option<Exemplar>,
        #[prost(double, optional, tag = "4")]
        pub cumulative_count_float: Option<f64>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BucketSpan {
        #[prost(sint32, optional, tag = "1")]
        pub offset: Option<i32>,
        #[prost(uint32, optional, tag = "2")]
        pub length: Option<u32>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Histogram {
        #[prost(uint64, optional, tag = "1")]
        pub sample_count: Option<u64>,
        #[prost(double, optional, tag = "2")]
        pub sample_sum: Option<f64>,
        #[prost(message, repeated, tag = "3")]
        pub bucket: Vec<Bucket>,
        #[prost(double, optional, tag = "4")]
        pub sample_count_float: Option<f64>,
        #[prost(sint32, optional, tag = "5")]
        pub schema: Option<i32>,
        #[prost(double, optional, tag = "6")]
        pub zero_threshold: Option<f64>,
        #[prost(uint64, optional, tag = "7")]
        pub zero_count: Option<u64>,
        #[prost(double, optional, tag = "8")]
        pub zero_count_float: Option<f64>,
        #[prost(message, repeated, tag = "12")]
        pub positive_span: Vec<BucketSpan>,
        #[prost(sint64, repeated, packed = "false", tag = "13")]
        pub positive_delta: Vec<i64>,
        #[prost(double, repeated, packed = "false", tag = "14")]
        pub positive_count: Vec<f64>,
        #[prost(message, optional, tag = "15")]
        pub created_timestamp: Option<Timestamp>,
        #[prost(message, repeated, tag = "16")]
        pub exemplars: Vec<Exemplar>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metric {
        #[prost(message, repeated, tag = "1")]
        pub label: Vec<LabelPair>,
        #[prost(message, optional, tag = "2")]
        pub gauge: Option<Gauge>,
        #[prost(message, optional, tag = "3")]
        pub counter: Option<Counter>,
        #[prost(message, optional, tag = "7")]
        pub histogram: Option<Histogram>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricFamily {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub help: Option<String>,
        #[prost(enumeration = "MetricType", optional, tag = "3")]
        pub r#type: Option<i32>,
        #[prost(message, repeated, tag = "4")]
        pub metric: Vec<Metric>,
    }
}

use model::{Bucket, BucketSpan, Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType, Timestamp};

/// Renders a snapshot as length-delimited `MetricFamily` messages, in the
/// text formats' order, into `out` (cleared first); a family with no series
/// is left out.
pub fn render(snap: &Snapshot, out: &mut Vec<u8>) {
    let labels: Vec<Vec<LabelPair>> = snap.edges.iter().map(|e| edge_labels(snap, e)).collect();
    let mut families = Vec::new();
    let counter = |labels: &[LabelPair], value: f64, created_ns: u64| Metric {
        label: labels.to_vec(),
        counter: Some(Counter { value: Some(value), created_timestamp: Some(timestamp(created_ns)) }),
        ..Default::default()
    };
    families.push(family(
        format!("{REQUEST}_total"),
        REQUEST_HELP,
        MetricType::Counter,
        snap.edges.iter().zip(&labels).map(|(e, l)| counter(l, e.values.request, e.values.created_ns)).collect(),
    ));
    families.push(family(
        format!("{REQUEST_FAILED}_total"),
        REQUEST_FAILED_HELP,
        MetricType::Counter,
        snap.edges
            .iter()
            .zip(&labels)
            .filter(|(e, _)| e.values.has_failed())
            .map(|(e, l)| counter(l, e.values.failed, since(e.values.failed_since_ns, e.values.created_ns)))
            .collect(),
    ));
    type Pick = fn(&EdgeSeries) -> Option<&Hist>;
    let hists: [(&str, &str, Pick, Which); 3] = [
        (SERVER, SERVER_HELP, |e| Some(&e.values.server), Which::Server),
        (CLIENT, CLIENT_HELP, |e| Some(&e.values.client), Which::Client),
        (
            MESSAGING,
            MESSAGING_HELP,
            |e| e.values.messaging.as_deref().filter(|_| e.values.has_messaging()),
            Which::Messaging,
        ),
    ];
    for (name, help, pick, which) in &hists[..2 + usize::from(snap.messaging)] {
        let metrics = snap
            .edges
            .iter()
            .zip(&labels)
            .filter_map(|(e, l)| {
                let h = pick(e)?;
                let created = match which {
                    Which::Messaging => since(e.values.messaging_since_ns, e.values.created_ns),
                    _ => e.values.created_ns,
                };
                let exemplars = snap.exemplar_label.as_deref().map(|label| (label, snap.exemplars_of(e, *which)));
                Some(Metric {
                    label: l.clone(),
                    histogram: Some(histogram(snap, h, h.start_ns(created), exemplars)),
                    ..Default::default()
                })
            })
            .collect();
        families.push(family(format!("{name}_seconds"), help, MetricType::Histogram, metrics));
    }
    if snap.connection_info {
        let metrics = labels
            .iter()
            .map(|l| Metric { label: l.clone(), gauge: Some(Gauge { value: Some(1.0) }), ..Default::default() })
            .collect();
        families.push(family(CONNECTION_INFO.to_string(), CONNECTION_INFO_HELP, MetricType::Gauge, metrics));
    }
    for (name, help, list) in [(UNPAIRED, UNPAIRED_HELP, &snap.unpaired), (DROPPED, DROPPED_HELP, &snap.dropped)] {
        let metrics = list.iter().map(|s| counter(&side_labels(s), s.value, s.created_ns)).collect();
        families.push(family(format!("{name}_total"), help, MetricType::Counter, metrics));
    }
    let overflow = snap
        .overflow
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|&(option, n)| counter(&[pair("option", option)], n as f64, snap.started_ns))
        .collect();
    families.push(family(format!("{OVERFLOW}_total"), OVERFLOW_HELP, MetricType::Counter, overflow));

    out.clear();
    for f in families.iter().filter(|f| !f.metric.is_empty()) {
        f.encode_length_delimited(&mut *out).expect("a Vec grows as needed");
    }
}

fn family(name: String, help: &str, kind: MetricType, metric: Vec<Metric>) -> MetricFamily {
    MetricFamily { name: Some(name), help: Some(help.to_string()), r#type: Some(kind as i32), metric }
}

fn pair(name: &str, value: &str) -> LabelPair {
    LabelPair { name: Some(name.to_string()), value: Some(value.to_string()) }
}

fn edge_labels(snap: &Snapshot, e: &EdgeSeries) -> Vec<LabelPair> {
    let mut out = Vec::new();
    edge_label_pairs(snap, e, |name, value| {
        if !value.is_empty() {
            out.push(pair(name, value));
        }
    });
    out
}

fn side_labels(s: &SideSeries) -> Vec<LabelPair> {
    let mut out = Vec::new();
    side_label_pairs(s, |name, value| {
        if !value.is_empty() {
            out.push(pair(name, value));
        }
    });
    out
}

fn timestamp(ns: u64) -> Timestamp {
    Timestamp { seconds: (ns / 1_000_000_000) as i64, nanos: (ns % 1_000_000_000) as i32 }
}

/// A count as the message carries it: whole, or as a float when weighted.
fn count(weighted: bool, v: f64) -> (Option<u64>, Option<f64>) {
    if weighted { (None, Some(v)) } else { (Some(whole(v)), None) }
}

fn exemplar(label: &str, x: &Exemplar) -> model::Exemplar {
    let mut trace_id = String::with_capacity(32);
    hex(&x.trace_id, &mut trace_id);
    model::Exemplar { label: vec![pair(label, &trace_id)], value: Some(x.value), timestamp: Some(timestamp(x.at_ns)) }
}

fn histogram(snap: &Snapshot, h: &Hist, start_ns: u64, exemplars: Option<(&str, Row<'_>)>) -> model::Histogram {
    let weighted = snap.weighted;
    let (sample_count, sample_count_float) = count(weighted, h.count);
    let mut out = model::Histogram {
        sample_count,
        sample_count_float,
        sample_sum: Some(h.sum),
        created_timestamp: Some(timestamp(start_ns)),
        ..Default::default()
    };
    let (label, examples) = exemplars.unwrap_or_default();
    let set = |b: usize| examples.get(b).map(|x| exemplar(label, x));
    if snap.histograms.classic() {
        // Every bound's cumulative count; the +Inf bucket, implied by the
        // sample count, is written only to carry its exemplar.
        let mut cumulative = 0.0;
        for (b, &w) in h.buckets.iter().enumerate() {
            cumulative += w;
            let upper = snap.bounds.get(b).copied().unwrap_or(f64::INFINITY);
            let exemplar = set(b);
            if upper.is_infinite() && exemplar.is_none() {
                continue;
            }
            let (cumulative_count, cumulative_count_float) = count(weighted, cumulative);
            out.bucket.push(Bucket { cumulative_count, cumulative_count_float, upper_bound: Some(upper), exemplar });
        }
    }
    if let Some(n) = h.native.as_deref().filter(|_| snap.histograms.native()) {
        let n = n.at_most(MAX_SCHEMA);
        out.schema = Some(i32::from(n.schema));
        out.zero_threshold = Some(n.zero_threshold());
        (out.zero_count, out.zero_count_float) = count(weighted, n.zero_count);
        let spans = n.spans();
        let mut previous = 0i64;
        for (gap, counts) in &spans {
            out.positive_span.push(BucketSpan { offset: Some(*gap), length: Some(counts.len() as u32) });
            for &c in counts.iter() {
                if weighted {
                    out.positive_count.push(c);
                } else {
                    let c = c.round() as i64;
                    out.positive_delta.push(c - previous);
                    previous = c;
                }
            }
        }
        if spans.is_empty() {
            // An empty span marks a histogram with no observations yet as
            // native, as the Go client does.
            out.positive_span.push(BucketSpan { offset: Some(0), length: Some(0) });
        }
        // In time order, as Prometheus appends them.
        let mut list: Vec<&Exemplar> = examples.iter().collect();
        list.sort_by_key(|x| x.at_ns);
        out.exemplars = list.into_iter().map(|x| exemplar(label, x)).collect();
    }
    out
}
