//! Builders for OTLP trace batches used by the integration tests.
#![allow(dead_code)]

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span, status};
use prost::Message;

pub const CLIENT: i32 = span::SpanKind::Client as i32;
pub const SERVER: i32 = span::SpanKind::Server as i32;
pub const PRODUCER: i32 = span::SpanKind::Producer as i32;
pub const CONSUMER: i32 = span::SpanKind::Consumer as i32;
pub const INTERNAL: i32 = span::SpanKind::Internal as i32;

pub fn s(key: &str, v: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    }
}

pub fn d(key: &str, v: f64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::DoubleValue(v)) }),
        ..Default::default()
    }
}

pub fn i(key: &str, v: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::IntValue(v)) }),
        ..Default::default()
    }
}

pub fn b(key: &str, v: bool) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::BoolValue(v)) }),
        ..Default::default()
    }
}

pub fn trace(n: u8) -> Vec<u8> {
    let mut t = vec![0xab; 16];
    t[15] = n;
    t
}

pub fn sid(n: u8) -> Vec<u8> {
    vec![0, 0, 0, 0, 0, 0, 0x10, n]
}

/// A span: kind, trace, id, parent (None for a root), start/end in ns.
pub fn span(kind: i32, trace_id: Vec<u8>, id: Vec<u8>, parent: Option<Vec<u8>>, start: u64, end: u64) -> Span {
    Span {
        trace_id,
        span_id: id,
        parent_span_id: parent.unwrap_or_default(),
        name: "op".into(),
        kind,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        ..Default::default()
    }
}

pub fn with_attrs(mut sp: Span, attrs: Vec<KeyValue>) -> Span {
    sp.attributes = attrs;
    sp
}

pub fn failed(mut sp: Span) -> Span {
    sp.status = Some(Status { code: status::StatusCode::Error as i32, message: String::new() });
    sp
}

/// A ResourceSpans for `service` (None: no service.name) with extra resource attributes.
pub fn resource(service: Option<&str>, extra: Vec<KeyValue>, spans: Vec<Span>) -> ResourceSpans {
    let mut attributes: Vec<KeyValue> = service.map(|n| vec![s("service.name", n)]).unwrap_or_default();
    attributes.extend(extra);
    ResourceSpans {
        resource: Some(Resource { attributes, ..Default::default() }),
        scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
        ..Default::default()
    }
}

pub fn batch(resources: Vec<ResourceSpans>) -> Vec<u8> {
    ExportTraceServiceRequest { resource_spans: resources }.encode_to_vec()
}

pub const SEC: u64 = 1_000_000_000;
/// A fixed base time for tests (2026-01-01T00:00:00Z).
pub const T0: u64 = 1_767_225_600 * SEC;

/// Parses Prometheus/OpenMetrics text into `name{label="v",...}` (labels
/// sorted) → value, skipping comments.
pub fn samples(text: &str) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let mut parts = split_labels(labels);
        parts.sort();
        let key = if parts.is_empty() { name.to_string() } else { format!("{name}{{{}}}", parts.join(",")) };
        let v = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().expect("sample value"),
        };
        assert!(out.insert(key, v).is_none(), "duplicate series in exposition: {line}");
    }
    out
}

/// Splits `a="x",b="y\"z"` at the commas between labels.
fn split_labels(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let (mut cur, mut quoted, mut escaped) = (String::new(), false, false);
    for c in s.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        parts.push(cur);
    }
    parts
}

/// Renders Prometheus text and parses it.
pub fn scrape(e: &servicemap::Engine, now: u64) -> std::collections::BTreeMap<String, f64> {
    samples(&String::from_utf8(e.render(servicemap::Format::Prometheus, now)).unwrap())
}

/// An engine from a JSON config; new series are shown with their values at once.
pub fn engine(json: &str) -> servicemap::Engine {
    let mut v: serde_json::Value = serde_json::from_str(json).unwrap();
    v.as_object_mut().unwrap().entry("initial_zero").or_insert(serde_json::Value::Bool(false));
    servicemap::Engine::new(servicemap::Config::from_json(v.to_string().as_bytes()).unwrap())
}
pub mod hostile;
