//! OTLP metrics output (`ExportMetricsServiceRequest`, cumulative), shaped as
//! contrib's `servicegraph` connector shapes it: one resource with no
//! attributes, scope `traces_service_graph`, histograms named without the
//! `_seconds` suffix and with unit `s` (a Prometheus exporter adds the suffix).

use crate::config::Compat;
use crate::edge::Virtual;
use crate::engine::{EdgeSeries, SideSeries, Snapshot};
use crate::exposition::{
    CLIENT, CLIENT_HELP, CONNECTION_INFO, CONNECTION_INFO_HELP, DROPPED, DROPPED_HELP, MESSAGING, MESSAGING_HELP,
    REQUEST, REQUEST_FAILED, REQUEST_FAILED_HELP, REQUEST_HELP, SERVER, SERVER_HELP, UNPAIRED, UNPAIRED_HELP,
};
use crate::series::Hist;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

/// Encodes a snapshot; `start_ns` is when the engine started counting.
pub fn encode(snap: &Snapshot, start_ns: u64, time_ns: u64) -> Vec<u8> {
    request(snap, start_ns, time_ns).encode_to_vec()
}

fn kv_str(key: &str, v: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.to_string())) }),
        ..Default::default()
    }
}

fn kv_bool(key: &str, v: bool) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(any_value::Value::BoolValue(v)) }),
        ..Default::default()
    }
}

/// Data-point attributes. contrib always writes client, server,
/// connection_type and failed (and virtual_node when enabled), even empty;
/// Tempo leaves empty labels out.
fn edge_attributes(snap: &Snapshot, e: &EdgeSeries) -> Vec<KeyValue> {
    let contrib = snap.compat == Compat::Contrib;
    let mut a = vec![kv_str("client", &e.client), kv_str("server", &e.server)];
    if contrib || !e.conn.as_str().is_empty() {
        a.push(kv_str("connection_type", e.conn.as_str()));
    }
    if snap.failed_label {
        a.push(kv_bool("failed", e.failed));
    }
    for (name, value) in snap.dim_labels.raw.iter().zip(&e.dims) {
        if !value.is_empty() {
            a.push(kv_str(name, value));
        }
    }
    if snap.virtual_label && (contrib || e.virtual_side != Virtual::None) {
        a.push(kv_str("virtual_node", e.virtual_side.as_str()));
    }
    a
}

fn side_attributes(s: &SideSeries) -> Vec<KeyValue> {
    let mut a = Vec::new();
    for (k, v) in [("client", &*s.client), ("server", &*s.server), ("connection_type", s.conn.as_str())] {
        if !v.is_empty() {
            a.push(kv_str(k, v));
        }
    }
    a
}

struct Points {
    start: u64,
    time: u64,
    /// Counters as integers (contrib) or doubles (Tempo, or any weighted count).
    ints: bool,
}

impl Points {
    fn number(&self, attributes: Vec<KeyValue>, v: f64) -> NumberDataPoint {
        let value = if self.ints {
            number_data_point::Value::AsInt(v.round() as i64)
        } else {
            number_data_point::Value::AsDouble(v)
        };
        NumberDataPoint {
            attributes,
            start_time_unix_nano: self.start,
            time_unix_nano: self.time,
            value: Some(value),
            ..Default::default()
        }
    }

    fn histogram(&self, attributes: Vec<KeyValue>, bounds: &[f64], h: &Hist) -> HistogramDataPoint {
        HistogramDataPoint {
            attributes,
            start_time_unix_nano: self.start,
            time_unix_nano: self.time,
            count: h.count.round() as u64,
            sum: Some(h.sum),
            bucket_counts: h.buckets.iter().map(|w| w.round() as u64).collect(),
            explicit_bounds: bounds.to_vec(),
            ..Default::default()
        }
    }
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

fn histogram(name: &str, help: &str, points: Vec<HistogramDataPoint>) -> Metric {
    Metric {
        name: name.to_string(),
        description: help.to_string(),
        unit: "s".to_string(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    }
}

pub fn request(snap: &Snapshot, start_ns: u64, time_ns: u64) -> ExportMetricsServiceRequest {
    let p = Points { start: start_ns, time: time_ns, ints: snap.compat == Compat::Contrib && !snap.weighted };
    let attrs: Vec<Vec<KeyValue>> = snap.edges.iter().map(|e| edge_attributes(snap, e)).collect();
    let mut metrics = Vec::new();
    if !snap.edges.is_empty() {
        let total = snap.edges.iter().zip(&attrs).map(|(e, a)| p.number(a.clone(), e.values.request)).collect();
        metrics.push(sum(&format!("{REQUEST}_total"), REQUEST_HELP, total));
    }
    let failed: Vec<_> = snap
        .edges
        .iter()
        .zip(&attrs)
        .filter(|(e, _)| e.values.has_failed())
        .map(|(e, a)| p.number(a.clone(), e.values.failed))
        .collect();
    if !failed.is_empty() {
        metrics.push(sum(&format!("{REQUEST_FAILED}_total"), REQUEST_FAILED_HELP, failed));
    }
    if !snap.edges.is_empty() {
        type Pick = fn(&EdgeSeries) -> &Hist;
        let pick: [(&str, &str, Pick); 2] =
            [(SERVER, SERVER_HELP, |e| &e.values.server), (CLIENT, CLIENT_HELP, |e| &e.values.client)];
        for (name, help, get) in pick {
            let points =
                snap.edges.iter().zip(&attrs).map(|(e, a)| p.histogram(a.clone(), &snap.bounds, get(e))).collect();
            metrics.push(histogram(name, help, points));
        }
    }
    if snap.messaging {
        let points: Vec<_> = snap
            .edges
            .iter()
            .zip(&attrs)
            .filter(|(e, _)| e.values.has_messaging())
            .filter_map(|(e, a)| e.values.messaging.as_ref().map(|h| p.histogram(a.clone(), &snap.bounds, h)))
            .collect();
        if !points.is_empty() {
            metrics.push(histogram(MESSAGING, MESSAGING_HELP, points));
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
            let points = list.iter().map(|s| ints.number(side_attributes(s), s.value)).collect();
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
