//! The reference for [`super::encode`]: the same request built as prost
//! messages and encoded by prost, as the output was written before the
//! hand-written encoder. A test encodes random snapshots both ways and
//! compares the bytes.

use super::attributes::Attr;
use super::*;
use crate::series::Exemplar;
use crate::series::native::ZERO_THRESHOLD;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality;
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar as OtlpExemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, exemplar,
    exponential_histogram_data_point, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

fn kv(key: &str, v: Attr) -> KeyValue {
    let value = match v {
        Attr::Str(s) => any_value::Value::StringValue(s.to_string()),
        Attr::Bool(b) => any_value::Value::BoolValue(b),
    };
    KeyValue { key: key.to_string(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn edge_attributes(snap: &Snapshot, e: &EdgeSeries) -> Vec<KeyValue> {
    let mut a = Vec::new();
    super::edge_attributes(snap, e, |k, v| a.push(kv(k, v)));
    a
}

fn side_attributes(s: &SideSeries) -> Vec<KeyValue> {
    let mut a = Vec::new();
    super::side_attributes(s, |k, v| a.push(kv(k, v)));
    a
}

struct Points {
    start: u64,
    time: u64,
    /// Counters as integers (contrib) or doubles (Tempo, or any weighted count).
    ints: bool,
}

impl Points {
    /// A series' start: its own creation time, or the engine's.
    fn since(&self, created: u64) -> u64 {
        if created != 0 { created } else { self.start }
    }

    fn number(&self, attributes: Vec<KeyValue>, v: f64, created: u64) -> NumberDataPoint {
        let value = if self.ints {
            number_data_point::Value::AsInt(v.round() as i64)
        } else {
            number_data_point::Value::AsDouble(v)
        };
        NumberDataPoint {
            attributes,
            start_time_unix_nano: self.since(created),
            time_unix_nano: self.time,
            value: Some(value),
            ..Default::default()
        }
    }

    fn exponential(
        &self,
        attributes: Vec<KeyValue>,
        h: &Hist,
        n: &Native,
        exemplars: &[Exemplar],
        start: u64,
    ) -> ExponentialHistogramDataPoint {
        // An empty histogram of contrib's kind says scale 0 and offset 0;
        // Prometheus' kind always says its schema, and the key before its
        // first bucket.
        let (key, counts) = n.dense();
        let empty_otel = n.otel && counts.is_empty();
        ExponentialHistogramDataPoint {
            attributes,
            start_time_unix_nano: self.since(start),
            time_unix_nano: self.time,
            count: h.count.round() as u64,
            sum: Some(h.sum),
            scale: if empty_otel { 0 } else { i32::from(n.schema) },
            zero_count: n.zero_count.round() as u64,
            positive: Some(exponential_histogram_data_point::Buckets {
                offset: if empty_otel { 0 } else { key - 1 },
                bucket_counts: counts.iter().map(|c| c.round() as u64).collect(),
            }),
            exemplars: otlp_exemplars(exemplars),
            min: n.min_max.map(|m| m.0),
            max: n.min_max.map(|m| m.1),
            zero_threshold: if n.otel { 0.0 } else { ZERO_THRESHOLD },
            ..Default::default()
        }
    }

    fn histogram(
        &self,
        attributes: Vec<KeyValue>,
        bounds: &[f64],
        h: &Hist,
        exemplars: &[Exemplar],
        created: u64,
    ) -> HistogramDataPoint {
        HistogramDataPoint {
            exemplars: otlp_exemplars(exemplars),
            attributes,
            start_time_unix_nano: self.since(created),
            time_unix_nano: self.time,
            count: h.count.round() as u64,
            sum: Some(h.sum),
            bucket_counts: h.buckets.iter().map(|w| w.round() as u64).collect(),
            explicit_bounds: bounds.to_vec(),
            ..Default::default()
        }
    }
}

fn otlp_exemplars(exemplars: &[Exemplar]) -> Vec<OtlpExemplar> {
    exemplars
        .iter()
        .filter(|x| x.is_set())
        .map(|x| OtlpExemplar {
            time_unix_nano: x.at_ns,
            value: Some(exemplar::Value::AsDouble(x.value)),
            span_id: x.span_id.to_vec(),
            trace_id: x.trace_id.to_vec(),
            ..Default::default()
        })
        .collect()
}

fn sum(name: &str, help: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.to_string(),
        description: help.to_string(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

/// An edge's exemplars of one family, when the snapshot has them on.
fn examples(snap: &Snapshot, e: &EdgeSeries, family: ExemplarFamily) -> Vec<Exemplar> {
    match &snap.exemplar_label {
        Some(_) => snap.exemplars_of(e, family).iter().copied().collect(),
        None => Vec::new(),
    }
}

pub(super) fn request(snap: &Snapshot, start_ns: u64, time_ns: u64) -> ExportMetricsServiceRequest {
    let p = Points { start: start_ns, time: time_ns, ints: snap.compat == Compat::Contrib && !snap.weighted };
    let attrs: Vec<Vec<KeyValue>> = snap.edges.iter().map(|e| edge_attributes(snap, e)).collect();
    let mut metrics = Vec::new();
    if !snap.edges.is_empty() {
        let total = snap
            .edges
            .iter()
            .zip(&attrs)
            .map(|(e, a)| p.number(a.clone(), e.values.request, e.values.created_ns))
            .collect();
        metrics.push(sum(&format!("{REQUEST}_total"), REQUEST_HELP, total));
    }
    let failed: Vec<_> = snap
        .edges
        .iter()
        .zip(&attrs)
        .filter(|(e, _)| e.values.has_failed())
        .map(|(e, a)| {
            let v = &e.values;
            p.number(a.clone(), v.failed, if v.failed_since_ns != 0 { v.failed_since_ns } else { v.created_ns })
        })
        .collect();
    if !failed.is_empty() {
        metrics.push(sum(&format!("{REQUEST_FAILED}_total"), REQUEST_FAILED_HELP, failed));
    }
    let kinds: &[Kind] = match snap.histograms {
        Histograms::Classic => &[Kind::Histogram],
        Histograms::Native => &[Kind::Exponential],
        Histograms::Both => &[Kind::Histogram, Kind::Exponential],
    };
    // Each histogram of a family as the data of a metric of `kind`, with
    // when it started.
    let family = |name: &str, help: &str, kind: Kind, hists: Vec<(&Vec<KeyValue>, &Hist, Vec<Exemplar>, u64)>| {
        let data = match kind {
            Kind::Exponential => metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: hists
                    .into_iter()
                    .filter_map(|(a, h, x, since)| {
                        let n = h.native.as_deref()?;
                        Some(p.exponential(a.clone(), h, n, &x, h.start_ns(since)))
                    })
                    .collect(),
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            }),
            _ => metric::Data::Histogram(Histogram {
                data_points: hists
                    .into_iter()
                    .map(|(a, h, x, since)| p.histogram(a.clone(), &snap.bounds, h, &x, h.start_ns(since)))
                    .collect(),
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            }),
        };
        Metric {
            name: name.to_string(),
            description: help.to_string(),
            unit: "s".to_string(),
            data: Some(data),
            ..Default::default()
        }
    };
    if !snap.edges.is_empty() {
        type Pick = fn(&EdgeSeries) -> &Hist;
        let pick: [(&str, &str, Pick, ExemplarFamily); 2] = [
            (SERVER, SERVER_HELP, |e| &e.values.server, ExemplarFamily::Server),
            (CLIENT, CLIENT_HELP, |e| &e.values.client, ExemplarFamily::Client),
        ];
        for (name, help, get, which) in pick {
            for &kind in kinds {
                let hists = snap
                    .edges
                    .iter()
                    .zip(&attrs)
                    .map(|(e, a)| (a, get(e), examples(snap, e, which), e.values.created_ns))
                    .collect();
                metrics.push(family(name, help, kind, hists));
            }
        }
    }
    if snap.messaging {
        for &kind in kinds {
            let hists: Vec<_> = snap
                .edges
                .iter()
                .zip(&attrs)
                .filter(|(e, _)| e.values.has_messaging())
                .filter_map(|(e, a)| {
                    let v = &e.values;
                    let since = if v.messaging_since_ns != 0 { v.messaging_since_ns } else { v.created_ns };
                    let x = examples(snap, e, ExemplarFamily::Messaging);
                    v.messaging.as_deref().map(|h| (a, h, x, since))
                })
                .collect();
            if !hists.is_empty() {
                metrics.push(family(MESSAGING, MESSAGING_HELP, kind, hists));
            }
        }
    }
    if snap.connection_info && !snap.edges.is_empty() {
        let points = attrs
            .iter()
            .map(|a| NumberDataPoint {
                attributes: a.clone(),
                time_unix_nano: time_ns,
                value: Some(number_data_point::Value::AsInt(1)),
                ..Default::default()
            })
            .collect();
        metrics.push(Metric {
            name: CONNECTION_INFO.to_string(),
            description: CONNECTION_INFO_HELP.to_string(),
            data: Some(metric::Data::Gauge(Gauge { data_points: points })),
            ..Default::default()
        });
    }
    for (name, help, list) in [(UNPAIRED, UNPAIRED_HELP, &snap.unpaired), (DROPPED, DROPPED_HELP, &snap.dropped)] {
        if !list.is_empty() {
            let ints = Points { ints: true, ..p };
            let points = list.iter().map(|s| ints.number(side_attributes(s), s.value, s.created_ns)).collect();
            metrics.push(sum(&format!("{name}_total"), help, points));
        }
    }
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource::default()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope { name: "traces_service_graph".to_string(), ..Default::default() }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Histograms;
    use crate::exposition::text::oracle::tests::{Rng, snapshot};
    use crate::series::native::{Budget, Native, Settings};
    use crate::series::{Hist, Snapshot};
    use prost::Message;

    /// Gives some snapshots native buckets (random values, some zero or
    /// negative, a small budget now and then) in one of the modes that write them.
    fn with_native(r: &mut Rng, snap: &mut Snapshot) {
        if r.chance(0.4) {
            return;
        }
        snap.histograms = if r.chance(0.5) { Histograms::Native } else { Histograms::Both };
        let settings = if r.chance(0.3) {
            // contrib's kind: scale 20 and down, a span of 2 to 20 keys.
            Settings::contrib(2 + r.below(19) as u32)
        } else {
            let budget = Budget::Populated { max_buckets: r.below(20) as u32, min_reset_ns: 0 };
            Settings { schema: r.below(12) as i8 - 4, budget }
        };
        let mut fill = |h: &mut Hist| {
            let mut n = Native::new(&settings, r.below(3) as u64);
            for _ in 0..r.below(30) {
                let v = if r.chance(0.1) { 0.0 } else { 2f64.powf(r.below(4000) as f64 / 100.0 - 20.0) };
                let w = if r.chance(0.2) { 0.4 } else { (1 + r.below(1000)) as f64 };
                n.observe(&settings, v, w, 5);
            }
            h.native = Some(Box::new(n));
        };
        for e in &mut snap.edges {
            fill(&mut e.values.server);
            fill(&mut e.values.client);
            if let Some(m) = e.values.messaging.as_deref_mut() {
                fill(m);
            }
        }
    }

    #[test]
    fn encoder_matches_prost_on_random_snapshots() {
        let mut r = Rng::new(0x2545_f491_4f6c_dd1d);
        for case in 0..400 {
            let mut snap = snapshot(&mut r);
            with_native(&mut r, &mut snap);
            let (start, time) = match case % 3 {
                0 => (0, 0),
                1 => (1_700_000_000_000_000_000, 1_700_000_060_000_000_000),
                _ => (1, u64::MAX),
            };
            let want = super::request(&snap, start, time).encode_to_vec();
            let got = super::encode(&snap, start, time);
            assert!(got == want, "case {case}: {} bytes written, prost writes {}", got.len(), want.len());
        }
    }
}
