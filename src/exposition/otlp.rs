//! OTLP metrics output (`ExportMetricsServiceRequest`, cumulative), shaped as
//! contrib's `servicegraph` connector shapes it: one resource with no
//! attributes, scope `traces_service_graph`, histograms named without the
//! `_seconds` suffix and with unit `s` (a Prometheus exporter adds the suffix).
//!
//! The protobuf is written by hand: building the prost message gave every
//! data point its own copy of its series' attributes (a `String` per key and
//! value), to be encoded and freed again. Here each series' attributes are
//! encoded once and their bytes copied into each of its data points (10 000
//! edges, 5.5 MB, snapshot included: 356 M → 54 M instructions under
//! callgrind; CPU time about 31 ms → 8 ms on a loaded, shared 2-vCPU
//! machine). The
//! bytes are the ones prost writes for the same message (fields in tag
//! order, defaults left out, packed repeated scalars); a test encodes random
//! snapshots both ways and compares them.

use crate::config::{Compat, Histograms};
use crate::exposition::text::{
    CLIENT, CLIENT_HELP, CONNECTION_INFO, CONNECTION_INFO_HELP, DROPPED, DROPPED_HELP, MESSAGING, MESSAGING_HELP,
    REQUEST, REQUEST_FAILED, REQUEST_FAILED_HELP, REQUEST_HELP, SERVER, SERVER_HELP, UNPAIRED, UNPAIRED_HELP,
};
// Whole-number bucket weights and counts, as prost was given them: `round() as u64`.
use crate::exposition::text::whole;
use crate::series::native::Native;
use crate::series::{EdgeSeries, SideSeries, Snapshot};
use crate::series::{Family as ExemplarFamily, Hist, Row};

/// `AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE`.
const CUMULATIVE: u8 = 2;

/// Encodes a snapshot; each series starts when it was created, or at
/// `start_ns`, when the engine started counting, if that is not known.
#[cfg(test)]
pub(crate) fn encode(snap: &Snapshot, start_ns: u64, time_ns: u64) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(snap, start_ns, time_ns, &mut out);
    out
}

/// As [`encode`], into `out`, which is cleared first; its capacity is kept.
pub fn encode_into<'a>(snap: &'a Snapshot, start_ns: u64, time_ns: u64, out: &mut Vec<u8>) {
    let ints = snap.compat == Compat::Contrib && !snap.weighted;
    // Each series' attributes, encoded once as the repeated field of a number
    // data point (tag 7) and of a histogram data point (tag 9), into lists
    // sized first so that they never move as they are written.
    let (mut lists, mut bytes) = (0, 0);
    for e in &snap.edges {
        edge_attributes(snap, e, |k, v| bytes += Attributes::size(k, v));
        lists += 1;
    }
    for s in snap.unpaired.iter().chain(&snap.dropped) {
        side_attributes(s, |k, v| bytes += Attributes::size(k, v));
        lists += 1;
    }
    let mut attrs = Attributes::new(snap.histograms, lists, bytes);
    for e in &snap.edges {
        edge_attributes(snap, e, |k, v| attrs.put(k, v));
        attrs.end();
    }
    let sides = |list: &[SideSeries], attrs: &mut Attributes| {
        let from = attrs.ends.len();
        for s in list {
            side_attributes(s, |k, v| attrs.put(k, v));
            attrs.end();
        }
        from
    };
    let unpaired_at = sides(&snap.unpaired, &mut attrs);
    let dropped_at = sides(&snap.dropped, &mut attrs);

    let mut metrics: Vec<Family> = Vec::new();
    let counter = |v: f64, ints: bool| if ints { Value::Int(round(v)) } else { Value::Double(v) };
    fn point(attrs: usize, value: Value<'_>, start: u64, time: u64) -> Point<'_> {
        Point { attrs, start, time, value }
    }
    let number = |i, v, start| point(i, v, start, time_ns);
    // Each cumulative series starts when it was created; the engine's start
    // stands in for a time not known.
    let start = |t: u64| if t != 0 { t } else { start_ns };
    if !snap.edges.is_empty() {
        let points = snap
            .edges
            .iter()
            .enumerate()
            .map(|(i, e)| number(i, counter(e.values.request, ints), start(e.values.created_ns)));
        metrics.push(Family::sum(format!("{REQUEST}_total"), REQUEST_HELP, points.collect()));
    }
    let failed: Vec<_> = snap
        .edges
        .iter()
        .enumerate()
        .filter(|(_, e)| e.values.has_failed())
        .map(|(i, e)| {
            let since = if e.values.failed_since_ns != 0 { e.values.failed_since_ns } else { e.values.created_ns };
            number(i, counter(e.values.failed, ints), start(since))
        })
        .collect();
    if !failed.is_empty() {
        metrics.push(Family::sum(format!("{REQUEST_FAILED}_total"), REQUEST_FAILED_HELP, failed));
    }
    // Exemplars, when they are on: a histogram's set ones, in bucket order.
    let on = snap.exemplar_label.is_some();
    let exemplars =
        |e: &'a EdgeSeries, family| -> Row<'a> { if on { snap.exemplars_of(e, family) } else { Row::default() } };
    // Explicit buckets, exponential ones (the native buckets), or both
    // under the same name, as Tempo writes both to one store.
    let kinds: &[Kind] = match snap.histograms {
        Histograms::Classic => &[Kind::Histogram],
        Histograms::Native => &[Kind::Exponential],
        Histograms::Both => &[Kind::Histogram, Kind::Exponential],
    };
    if !snap.edges.is_empty() {
        type Pick = fn(&EdgeSeries) -> &Hist;
        let pick: [(&str, &str, Pick, ExemplarFamily); 2] = [
            (SERVER, SERVER_HELP, |e| &e.values.server, ExemplarFamily::Server),
            (CLIENT, CLIENT_HELP, |e| &e.values.client, ExemplarFamily::Client),
        ];
        for (name, help, get, family) in pick {
            for &kind in kinds {
                let mut points = Vec::with_capacity(snap.edges.len());
                points.extend(snap.edges.iter().enumerate().filter_map(|(i, e)| {
                    let h = get(e);
                    hist_value(kind, h, exemplars(e, family))
                        .map(|v| number(i, v, start(h.start_ns(e.values.created_ns))))
                }));
                metrics.push(Family::histogram(name, help, kind, points));
            }
        }
    }
    if snap.messaging {
        for &kind in kinds {
            let points: Vec<_> = snap
                .edges
                .iter()
                .enumerate()
                .filter(|(_, e)| e.values.has_messaging())
                .filter_map(|(i, e)| {
                    let v = &e.values;
                    let since = if v.messaging_since_ns != 0 { v.messaging_since_ns } else { v.created_ns };
                    let h = v.messaging.as_deref()?;
                    let x = exemplars(e, ExemplarFamily::Messaging);
                    hist_value(kind, h, x).map(|value| number(i, value, start(h.start_ns(since))))
                })
                .collect();
            if !points.is_empty() {
                metrics.push(Family::histogram(MESSAGING, MESSAGING_HELP, kind, points));
            }
        }
    }
    if snap.connection_info && !snap.edges.is_empty() {
        let points = (0..snap.edges.len()).map(|i| number(i, Value::Int(1), 0)).collect();
        metrics.push(Family {
            name: CONNECTION_INFO.to_string(),
            help: CONNECTION_INFO_HELP,
            unit: "",
            kind: Kind::Gauge,
            points,
        });
    }
    for (name, help, list, at) in
        [(UNPAIRED, UNPAIRED_HELP, &snap.unpaired, unpaired_at), (DROPPED, DROPPED_HELP, &snap.dropped, dropped_at)]
    {
        if !list.is_empty() {
            let points =
                list.iter().enumerate().map(|(i, s)| number(at + i, counter(s.value, true), start(s.created_ns)));
            metrics.push(Family::sum(format!("{name}_total"), help, points.collect()));
        }
    }
    write(&attrs, &snap.bounds, &metrics, out);
}

/// A histogram as a data point of `kind`: its explicit buckets, or its native
/// ones (none when it keeps none).
fn hist_value<'a>(kind: Kind, h: &'a Hist, exemplars: Row<'a>) -> Option<Value<'a>> {
    match kind {
        Kind::Exponential => h.native.as_deref().map(|n| Value::Exp(h, n, exemplars)),
        _ => Some(Value::Hist(h, exemplars)),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Sum,
    Gauge,
    Histogram,
    Exponential,
}

/// One metric to write: its data points refer to attribute lists by index.
struct Family<'a> {
    name: String,
    help: &'static str,
    unit: &'static str,
    kind: Kind,
    points: Vec<Point<'a>>,
}

impl<'a> Family<'a> {
    fn sum(name: String, help: &'static str, points: Vec<Point<'a>>) -> Family<'a> {
        Family { name, help, unit: "", kind: Kind::Sum, points }
    }

    /// A latency histogram: explicit buckets, or exponential ones.
    fn histogram(name: &str, help: &'static str, kind: Kind, points: Vec<Point<'a>>) -> Family<'a> {
        Family { name: name.to_string(), help, unit: "s", kind, points }
    }
}

struct Point<'a> {
    attrs: usize,
    start: u64,
    time: u64,
    value: Value<'a>,
}

enum Value<'a> {
    Double(f64),
    Int(i64),
    /// A histogram and its set exemplars.
    Hist(&'a Hist, Row<'a>),
    /// A histogram's native buckets, as an exponential histogram, and its set exemplars.
    Exp(&'a Hist, &'a Native, Row<'a>),
}

/// An `Exemplar` message's size: time (2), as_double (3), span_id (4),
/// trace_id (5); the double is in a oneof, so written even when zero.
const EXEMPLAR_LEN: usize = 9 + 9 + 2 + 8 + 2 + 16;

// Wire types.
const I64: u8 = 1;
const LEN: u8 = 2;
const VARINT: u8 = 0;

/// A field key; every tag used here fits in one byte.
const fn field(tag: u8, wire: u8) -> u8 {
    (tag << 3) | wire
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field's size: key, length, body.
fn delimited(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

fn put_delimited(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(field(tag, LEN));
    put_varint(out, len as u64);
}

fn put_str(out: &mut Vec<u8>, tag: u8, s: &str) {
    if !s.is_empty() {
        put_delimited(out, tag, s.len());
        out.extend_from_slice(s.as_bytes());
    }
}

fn str_len(s: &str) -> usize {
    if s.is_empty() { 0 } else { delimited(s.len()) }
}

fn put_fixed(out: &mut Vec<u8>, tag: u8, v: u64) {
    let b = v.to_le_bytes();
    out.extend_from_slice(&[field(tag, I64), b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
}

/// Numbers as a packed repeated `fixed64` field's body, written in place.
fn put_packed(out: &mut Vec<u8>, values: impl ExactSizeIterator<Item = u64>) {
    let start = out.len();
    out.resize(start + 8 * values.len(), 0);
    for (b, v) in out[start..].chunks_exact_mut(8).zip(values) {
        b.copy_from_slice(&v.to_le_bytes());
    }
}

/// `v.round() as i64`, without the call to `round` when `v` already is a
/// whole number.
#[inline]
fn round(v: f64) -> i64 {
    let t = v as i64;
    if t as f64 == v { t } else { v.round() as i64 }
}

impl Point<'_> {
    /// The data point message's size.
    fn len(&self, attrs: &Attributes, bounds: &[f64]) -> usize {
        let fixed = |v: u64| if v == 0 { 0 } else { 9 };
        let mut n = fixed(self.start) + fixed(self.time);
        n += match self.value {
            Value::Double(_) | Value::Int(_) => 9 + attrs.get(self.attrs, Kind::Sum).len(),
            Value::Hist(h, x) => {
                let packed = |k: usize| if k == 0 { 0 } else { delimited(8 * k) };
                fixed(whole(h.count))
                    + 9
                    + packed(h.buckets.len())
                    + packed(bounds.len())
                    + x.len() * delimited(EXEMPLAR_LEN)
                    + attrs.get(self.attrs, Kind::Histogram).len()
            }
            Value::Exp(h, n, x) => {
                let (scale, offset, counts) = n.otlp();
                fixed(whole(h.count))
                    + 9
                    + if scale != 0 { 1 + varint_len(zigzag(i32::from(scale))) } else { 0 }
                    + fixed(whole(n.zero_count))
                    + delimited(buckets_len(offset, counts))
                    + x.len() * delimited(EXEMPLAR_LEN)
                    + if n.min_max.is_some() { 18 } else { 0 }
                    + if n.zero_threshold() != 0.0 { 9 } else { 0 }
                    + attrs.get(self.attrs, Kind::Exponential).len()
            }
        };
        n
    }

    /// Writes the data point; `bounds` is the explicit bounds field, encoded.
    fn put(&self, out: &mut Vec<u8>, attrs: &Attributes, bounds: &[u8]) {
        if let Value::Exp(..) = self.value {
            // Attributes are field 1 of an exponential histogram's point.
            out.extend_from_slice(attrs.get(self.attrs, Kind::Exponential));
        }
        if self.start != 0 {
            put_fixed(out, 2, self.start);
        }
        if self.time != 0 {
            put_fixed(out, 3, self.time);
        }
        match self.value {
            Value::Double(v) => {
                put_fixed(out, 4, v.to_bits());
                out.extend_from_slice(attrs.get(self.attrs, Kind::Sum));
            }
            Value::Int(v) => {
                put_fixed(out, 6, v as u64);
                out.extend_from_slice(attrs.get(self.attrs, Kind::Sum));
            }
            Value::Hist(h, exemplars) => {
                let count = whole(h.count);
                if count != 0 {
                    put_fixed(out, 4, count);
                }
                put_fixed(out, 5, h.sum.to_bits());
                if !h.buckets.is_empty() {
                    put_delimited(out, 6, 8 * h.buckets.len());
                    put_packed(out, h.buckets.iter().map(|&w| whole(w)));
                }
                // The explicit bounds, the same for every point, encoded once.
                out.extend_from_slice(bounds);
                put_exemplars(out, 8, exemplars);
                out.extend_from_slice(attrs.get(self.attrs, Kind::Histogram));
            }
            Value::Exp(h, n, exemplars) => {
                let count = whole(h.count);
                if count != 0 {
                    put_fixed(out, 4, count);
                }
                put_fixed(out, 5, h.sum.to_bits());
                let (scale, offset, counts) = n.otlp();
                if scale != 0 {
                    out.push(field(6, VARINT));
                    put_varint(out, zigzag(i32::from(scale)));
                }
                let zero = whole(n.zero_count);
                if zero != 0 {
                    put_fixed(out, 7, zero);
                }
                put_delimited(out, 8, buckets_len(offset, counts));
                if offset != 0 {
                    out.push(field(1, VARINT));
                    put_varint(out, zigzag(offset));
                }
                if !counts.is_empty() {
                    put_delimited(out, 2, counts.iter().map(|&c| varint_len(whole(c))).sum());
                    for &c in counts {
                        put_varint(out, whole(c));
                    }
                }
                put_exemplars(out, 11, exemplars);
                if let Some((min, max)) = n.min_max {
                    put_fixed(out, 12, min.to_bits());
                    put_fixed(out, 13, max.to_bits());
                }
                if n.zero_threshold() != 0.0 {
                    put_fixed(out, 14, n.zero_threshold().to_bits());
                }
            }
        }
    }
}

/// The set exemplars, as repeated field `tag` of a data point.
fn put_exemplars(out: &mut Vec<u8>, tag: u8, exemplars: Row<'_>) {
    for x in exemplars.iter() {
        put_delimited(out, tag, EXEMPLAR_LEN);
        put_fixed(out, 2, x.at_ns);
        put_fixed(out, 3, x.value.to_bits());
        put_delimited(out, 4, 8);
        out.extend_from_slice(&x.span_id);
        put_delimited(out, 5, 16);
        out.extend_from_slice(&x.trace_id);
    }
}

fn zigzag(v: i32) -> u64 {
    ((v << 1) ^ (v >> 31)) as u32 as u64
}

/// The size of an exponential histogram's `Buckets` message whose first
/// bucket is Prometheus' key `offset`.
/// The length of a `Buckets` message starting at OTLP index `offset`.
fn buckets_len(offset: i32, counts: &[f64]) -> usize {
    let offset = if offset != 0 { 1 + varint_len(zigzag(offset)) } else { 0 };
    let counts: usize = counts.iter().map(|&c| varint_len(whole(c))).sum();
    offset + if counts == 0 { 0 } else { delimited(counts) }
}

/// Writes `ExportMetricsServiceRequest { resource_metrics: [ResourceMetrics {
/// resource: {}, scope_metrics: [ScopeMetrics { scope: {name}, metrics }] }] }`.
fn write(attrs: &Attributes, bounds: &[f64], metrics: &[Family], out: &mut Vec<u8>) {
    const SCOPE: &str = "traces_service_graph";
    // Sizes first, inside out: each point, each metric's data, each metric.
    let point_lens: Vec<Vec<usize>> =
        metrics.iter().map(|m| m.points.iter().map(|p| p.len(attrs, bounds)).collect()).collect();
    let data_lens: Vec<usize> = metrics
        .iter()
        .zip(&point_lens)
        .map(|(m, lens)| {
            let points: usize = lens.iter().map(|&l| delimited(l)).sum();
            points
                + match m.kind {
                    Kind::Sum => 4, // temporality, monotonic
                    Kind::Histogram | Kind::Exponential => 2,
                    Kind::Gauge => 0,
                }
        })
        .collect();
    let metric_lens: Vec<usize> = metrics
        .iter()
        .zip(&data_lens)
        .map(|(m, &d)| str_len(&m.name) + str_len(m.help) + str_len(m.unit) + delimited(d))
        .collect();
    let scope_metrics = delimited(str_len(SCOPE)) + metric_lens.iter().map(|&l| delimited(l)).sum::<usize>();
    let resource_metrics = delimited(0) + delimited(scope_metrics);
    let mut bounds_field = Vec::new();
    if !bounds.is_empty() {
        put_delimited(&mut bounds_field, 7, 8 * bounds.len());
        put_packed(&mut bounds_field, bounds.iter().map(|b| b.to_bits()));
    }
    out.clear();
    out.reserve(delimited(resource_metrics));
    let out = &mut *out;

    put_delimited(out, 1, resource_metrics);
    put_delimited(out, 1, 0); // resource: {}
    put_delimited(out, 2, scope_metrics);
    put_delimited(out, 1, str_len(SCOPE));
    put_str(out, 1, SCOPE);
    for (((m, lens), &data), &len) in metrics.iter().zip(&point_lens).zip(&data_lens).zip(&metric_lens) {
        put_delimited(out, 2, len);
        put_str(out, 1, &m.name);
        put_str(out, 2, m.help);
        put_str(out, 3, m.unit);
        let tag = match m.kind {
            Kind::Gauge => 5,
            Kind::Sum => 7,
            Kind::Histogram => 9,
            Kind::Exponential => 10,
        };
        put_delimited(out, tag, data);
        for (p, &l) in m.points.iter().zip(lens) {
            put_delimited(out, 1, l);
            p.put(out, attrs, &bounds_field);
        }
        if m.kind != Kind::Gauge {
            out.extend_from_slice(&[field(2, VARINT), CUMULATIVE]);
        }
        if m.kind == Kind::Sum {
            out.extend_from_slice(&[field(3, VARINT), 1]);
        }
    }
    debug_assert_eq!(out.len(), delimited(resource_metrics));
}

mod attributes;
#[cfg(test)]
mod oracle;

use attributes::{Attributes, edge_attributes, side_attributes};

#[cfg(test)]
mod tests {
    #[test]
    fn round_is_round_as_i64() {
        for v in [
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.5,
            2.4999,
            -3.0,
            9.3e18,
            -9.3e18,
            (1u64 << 63) as f64,
            f64::INFINITY,
            f64::NAN,
            7.0,
        ] {
            assert_eq!(super::round(v), v.round() as i64, "{v}");
        }
    }
}
