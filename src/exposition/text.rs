//! Prometheus 0.0.4 and OpenMetrics text. The names and labels are the ones
//! Grafana's service-graph view queries.
//!
//! The text is written directly rather than through prometheus-client's
//! encoder: that encoder escapes and writes an edge's whole label set again
//! for each of its ~23 lines, through `fmt::Write`, and only writes
//! OpenMetrics, so 0.0.4 needed a second, rewriting pass. Here each series'
//! label block is escaped once per render, the `le` bounds are formatted once,
//! and both formats are written in one pass. Measured on the render benchmark
//! (10 000 edges, 23 MB of text; `BENCHMARKS.md`), the whole render with its
//! snapshot: 587 M → 65 M instructions for Prometheus and 529 M → 65 M for
//! OpenMetrics under callgrind; CPU time about 86 ms → 10 ms and 63 ms → 10 ms
//! on a loaded, shared 2-vCPU machine (60.1 M for Prometheus since a series'
//! lines are written into room made once for them, `exposition::room`; the
//! OpenMetrics figure has grown with exemplars). The output is byte-for-byte what
//! prometheus-client 0.25 writes — the same escaping of `\`, `"` and
//! newline in label values, the same number formatting (`dtoa` for floats,
//! `itoa` for integers) — and a test renders random snapshots through both
//! and compares them (`oracle`, compiled for tests only).
//!
//! The Prometheus 0.0.4 text differs from OpenMetrics only in the counter
//! TYPE/HELP names (`x_total` instead of `x`), and in having no `# UNIT` and
//! no `# EOF` lines.

use crate::series::Virtual;
use crate::series::{EdgeSeries, SideSeries, Snapshot};
use crate::series::{Family, Hist, Row};

mod numbers;
#[cfg(test)]
pub(crate) mod oracle;

use crate::exposition::room::Room;
use numbers::{NUMBER, Seconds, exemplar_bound};

pub const REQUEST: &str = "traces_service_graph_request";
pub const REQUEST_FAILED: &str = "traces_service_graph_request_failed";
pub const SERVER: &str = "traces_service_graph_request_server";
pub const CLIENT: &str = "traces_service_graph_request_client";
pub const MESSAGING: &str = "traces_service_graph_request_messaging_system";
pub const CONNECTION_INFO: &str = "traces_service_graph_connection_info";
pub const UNPAIRED: &str = "traces_service_graph_unpaired_spans";
pub const DROPPED: &str = "traces_service_graph_dropped_spans";

pub const REQUEST_HELP: &str = "Requests between two nodes.";
pub const REQUEST_FAILED_HELP: &str = "Failed requests between two nodes.";
pub const SERVER_HELP: &str = "Time for a request between two nodes as seen from the server.";
pub const CLIENT_HELP: &str = "Time for a request between two nodes as seen from the client.";
pub const MESSAGING_HELP: &str =
    "Time between the producer ending and the consumer starting, for messaging-system edges.";
pub const CONNECTION_INFO_HELP: &str = "1 for every pair of nodes that has been connected.";
pub const UNPAIRED_HELP: &str = "Spans whose other side never arrived, by the side that did.";
pub const OVERFLOW: &str = "servicemap_overflow";
pub const OVERFLOW_HELP: &str =
    "Label sets refused, or entries removed to make room, because the cap named by `option` was reached.";
pub const DROPPED_HELP: &str = "Spans dropped because the pairing store was full.";

/// Renders a snapshot as OpenMetrics (`openmetrics`) or Prometheus 0.0.4 text.
#[cfg(test)]
pub(crate) fn render(snap: &Snapshot, openmetrics: bool) -> String {
    let mut out = Vec::new();
    render_into(snap, openmetrics, &mut out);
    String::from_utf8(out).expect("the text is UTF-8")
}

/// As [`render`], into `out`, which is cleared first; its capacity is kept,
/// so a caller rendering again into the same buffer writes to pages already
/// mapped rather than to fresh ones the kernel must zero.
pub fn render_into(snap: &Snapshot, openmetrics: bool, out: &mut Vec<u8>) {
    let labels = Labels::of_edges(snap);
    // The messaging histogram exists only for edges that observed one.
    type Pick = fn(&EdgeSeries) -> Option<&Hist>;
    let families: [(&str, &str, Pick); 3] = [
        (SERVER, SERVER_HELP, |e| Some(&e.values.server)),
        (CLIENT, CLIENT_HELP, |e| Some(&e.values.client)),
        (MESSAGING, MESSAGING_HELP, |e| e.values.messaging.as_deref().filter(|_| e.values.has_messaging())),
    ];
    let families = &families[..2 + usize::from(snap.messaging)];
    // Exemplars: OpenMetrics carries them, 0.0.4 does not.
    let exemplar_label = snap.exemplar_label.as_deref().filter(|_| openmetrics);
    // When each family of an edge began: the messaging one with its first observation.
    let created: [fn(&EdgeSeries) -> u64; 3] =
        [|e| e.values.created_ns, |e| e.values.created_ns, |e| since(e.values.messaging_since_ns, e.values.created_ns)];
    // Native histograms only: the text formats carry the +Inf bucket, sum
    // and count, as the Go client writes a histogram without classic buckets.
    let bounds: &[f64] = if snap.histograms.classic() { &snap.bounds } else { &[] };
    let hists: Vec<Histogram> = families.iter().map(|(name, _, _)| Histogram::new(name, bounds)).collect();
    let request = format!("{REQUEST}_total{{");
    let failed = format!("{REQUEST_FAILED}_total{{");
    let connection_info = format!("{CONNECTION_INFO}{{");

    // About the size of the text: every line's beginning and labels, and a
    // few bytes for its value (a longer one only makes the buffer grow). An
    // estimate well above the size would make the allocator map fresh pages
    // for every render. Room for the last lines is made for their longest
    // values, so the largest room a histogram can ask for is added: a text
    // just under the estimate then never makes the buffer grow.
    const VALUE: usize = 6;
    let mut size = 4096 + (snap.unpaired.len() + snap.dropped.len()) * 160;
    let longest = (0..snap.edges.len()).map(|i| labels.get(i).len()).max().unwrap_or(0);
    let exemplar_len = exemplar_label.map_or(0, str::len);
    size += hists.iter().map(|h| h.room(longest, h.buckets.len(), exemplar_len)).max().unwrap_or(0);
    for (i, e) in snap.edges.iter().enumerate() {
        let l = labels.get(i).len() + VALUE;
        size += request.len() + l;
        if e.values.has_failed() {
            size += failed.len() + l;
        }
        if snap.connection_info {
            size += connection_info.len() + l;
        }
        for ((h, (_, _, get)), which) in hists.iter().zip(families).zip(EXEMPLAR_FAMILIES) {
            if get(e).is_some() {
                size += h.sum.len() + h.count.len() + 2 * l + h.bucket_bytes + h.buckets.len() * (l + 1);
                if openmetrics {
                    size += h.created.len() + l + 16;
                }
                if exemplar_label.is_some() {
                    // ` # {traceID="…"} value time` on the bucket lines that have one.
                    size += snap.exemplars_of(e, which).len() * 90;
                }
            }
        }
        if openmetrics {
            size += request.len() + l + 16;
        }
    }
    out.clear();
    out.reserve(size);
    let mut w = Writer { out, openmetrics, seconds: Seconds::new() };

    // OpenMetrics gives every counter and histogram its creation time
    // (`_created`), so a Prometheus that reads it needs no zero sample first.
    let request_created = format!("{REQUEST}_created{{");
    let failed_created = format!("{REQUEST_FAILED}_created{{");
    w.descriptor(REQUEST, REQUEST_HELP, Kind::Counter);
    for (i, e) in snap.edges.iter().enumerate() {
        w.line(&request, labels.get(i), Num::F64(e.values.request));
        w.created(&request_created, labels.get(i), e.values.created_ns);
    }
    w.descriptor(REQUEST_FAILED, REQUEST_FAILED_HELP, Kind::Counter);
    for (i, e) in snap.edges.iter().enumerate() {
        if e.values.has_failed() {
            w.line(&failed, labels.get(i), Num::F64(e.values.failed));
            w.created(&failed_created, labels.get(i), since(e.values.failed_since_ns, e.values.created_ns));
        }
    }
    for (((family, (_, help, get)), created), which) in hists.iter().zip(families).zip(created).zip(EXEMPLAR_FAMILIES) {
        w.descriptor(&family.name, help, Kind::Histogram);
        for (i, e) in snap.edges.iter().enumerate() {
            if let Some(h) = get(e) {
                w.histogram(family, labels.get(i), h, exemplar_label.map(|l| (l, snap.exemplars_of(e, which))));
                w.created(&family.created, labels.get(i), h.start_ns(created(e)));
            }
        }
    }
    if snap.connection_info {
        w.descriptor(CONNECTION_INFO, CONNECTION_INFO_HELP, Kind::Gauge);
        for i in 0..snap.edges.len() {
            w.line(&connection_info, labels.get(i), Num::U64(1));
        }
    }
    let mut block = Vec::new();
    for (name, help, list) in [(UNPAIRED, UNPAIRED_HELP, &snap.unpaired), (DROPPED, DROPPED_HELP, &snap.dropped)] {
        w.descriptor(name, help, Kind::Counter);
        let open = format!("{name}_total{{");
        let open_created = format!("{name}_created{{");
        for s in list {
            block.clear();
            label_block(&mut block, |f| side_label_pairs(s, f));
            w.line(&open, &block, Num::F64(s.value));
            w.created(&open_created, &block, s.created_ns);
        }
    }
    // Present once a cap has been reached, as a labelled counter appears
    // with its first increment: a run within every cap renders as the peers do.
    if snap.overflow.iter().any(|&(_, n)| n > 0) {
        w.descriptor(OVERFLOW, OVERFLOW_HELP, Kind::Counter);
        let open = format!("{OVERFLOW}_total{{");
        let open_created = format!("{OVERFLOW}_created{{");
        for &(option, n) in snap.overflow.iter().filter(|(_, n)| *n > 0) {
            block.clear();
            label_block(&mut block, |f| f("option", option));
            w.line(&open, &block, Num::U64(n));
            w.created(&open_created, &block, snap.started_ns);
        }
    }
    if openmetrics {
        w.out.extend_from_slice(b"# EOF\n");
    }
}

/// The families whose exemplars the histogram families carry, in order.
const EXEMPLAR_FAMILIES: [Family; 3] = [Family::Server, Family::Client, Family::Messaging];

/// A creation time, or the series' own when the family has none yet.
pub(crate) fn since(t: u64, series: u64) -> u64 {
    if t != 0 { t } else { series }
}

/// What follows a label block on every line.
const CLOSE: &str = "} ";

/// Every edge's label block (`a="x",b="y"`, escaped), followed by [`CLOSE`],
/// in one buffer.
struct Labels {
    text: Vec<u8>,
    /// End of edge `i`'s block in `text`; it starts where edge `i - 1`'s ends.
    ends: Vec<usize>,
}

impl Labels {
    fn of_edges(snap: &Snapshot) -> Labels {
        let mut text = Vec::with_capacity(snap.edges.len() * 96);
        let mut ends = Vec::with_capacity(snap.edges.len());
        for e in &snap.edges {
            label_block(&mut text, |f| edge_label_pairs(snap, e, f));
            ends.push(text.len());
        }
        Labels { text, ends }
    }

    fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }
}

/// Appends a label block: the labels `pairs` hands over, empty values left
/// out (an empty label and a missing label are the same series in
/// Prometheus), then [`CLOSE`].
fn label_block<'a>(out: &mut Vec<u8>, pairs: impl Fn(&mut dyn FnMut(&'a str, &'a str))) {
    // A comma, the name, `="`, the value with every byte escaped, `"`.
    let mut bound = CLOSE.len();
    pairs(&mut |name, value| bound += name.len() + 4 + 2 * value.len());
    Room::make(out, bound, |r| {
        let mut first = true;
        pairs(&mut |name, value| label(r, &mut first, name, value));
        r.put(CLOSE.as_bytes());
    });
}

/// An edge series' Prometheus labels as `(name, value)`, in order; empty
/// values are passed too (the writers leave them out).
pub(crate) fn edge_label_pairs<'a>(snap: &'a Snapshot, e: &'a EdgeSeries, mut f: impl FnMut(&'a str, &'a str)) {
    f("client", &e.client);
    f("server", &e.server);
    f("connection_type", e.conn.as_str());
    if snap.failed_label {
        f("failed", if e.failed { "true" } else { "false" });
    }
    for (name, value) in snap.dim_labels.prometheus.iter().zip(&e.dims) {
        f(name, value);
    }
    if snap.virtual_label && e.virtual_side != Virtual::None {
        f("virtual_node", e.virtual_side.as_str());
    }
}

/// An unpaired or dropped span counter's labels, as [`edge_label_pairs`].
pub(crate) fn side_label_pairs<'a>(s: &'a SideSeries, mut f: impl FnMut(&'a str, &'a str)) {
    if s.overflow {
        f("otel_metric_overflow", "true");
        return;
    }
    f("client", &s.client);
    f("server", &s.server);
    f("connection_type", s.conn.as_str());
}

/// Writes `name="value"`, a comma first unless it is the `first`; nothing
/// for an empty value.
fn label(r: &mut Room<'_>, first: &mut bool, name: &str, value: &str) {
    if value.is_empty() {
        return;
    }
    if !std::mem::take(first) {
        r.byte(b',');
    }
    r.put(name.as_bytes());
    r.put(b"=\"");
    escape(r, value);
    r.byte(b'"');
}

/// A label value as the text formats escape it: `\` → `\\`, `"` → `\"`,
/// newline → `\n`; nothing else.
fn escape(r: &mut Room<'_>, value: &str) {
    // Most values have nothing to escape: a pass without branches says so,
    // and they are copied whole.
    let special = value.bytes().fold(0u8, |s, b| s | u8::from(b == b'\\') | u8::from(b == b'"') | u8::from(b == b'\n'));
    if special == 0 {
        r.put(value.as_bytes());
        return;
    }
    for b in value.bytes() {
        match b {
            b'\\' => r.put(b"\\\\"),
            b'"' => r.put(b"\\\""),
            b'\n' => r.put(b"\\n"),
            _ => r.byte(b),
        }
    }
}

/// A histogram family's line beginnings, made once per render.
struct Histogram {
    /// `x_seconds`
    name: String,
    sum: String,
    count: String,
    created: String,
    /// `x_seconds_bucket{le="…"` for every bucket, the +Inf one last.
    buckets: Vec<String>,
    /// The same, each with the comma before the series' labels.
    buckets_comma: Vec<String>,
    /// Their total length.
    bucket_bytes: usize,
}

impl Histogram {
    fn new(name: &str, bounds: &[f64]) -> Histogram {
        let name = format!("{name}_seconds");
        let mut dtoa = dtoa::Buffer::new();
        let buckets: Vec<String> = bounds
            .iter()
            .map(|&b| format!("{name}_bucket{{le=\"{}\"", dtoa.format(b)))
            .chain(std::iter::once(format!("{name}_bucket{{le=\"+Inf\"")))
            .collect();
        let bucket_bytes = buckets.iter().map(|b| b.len()).sum();
        let buckets_comma = buckets.iter().map(|b| format!("{b},")).collect();
        Histogram {
            sum: format!("{name}_sum{{"),
            count: format!("{name}_count{{"),
            created: format!("{name}_created{{"),
            buckets,
            buckets_comma,
            bucket_bytes,
            name,
        }
    }

    /// The most a series' `_sum`, `_count` and bucket lines take, for a
    /// label block of `labels` bytes and `examples` exemplars under a label
    /// name of `label` bytes.
    fn room(&self, labels: usize, examples: usize, label: usize) -> usize {
        let lines = self.buckets.len();
        // The openings (with the comma before the labels, the longer form),
        // and each line's labels, value and newline.
        self.sum.len()
            + self.count.len()
            + self.bucket_bytes
            + lines
            + (lines + 2) * (labels + NUMBER + 1)
            + examples * exemplar_bound(label)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

enum Num {
    F64(f64),
    U64(u64),
}

/// A bucket weight or count as a whole number, as prometheus-client is
/// given it (`round() as u64`, which saturates), without the call to
/// `round` when it already is one. The test goes through `i64`, whose
/// conversions to and from `f64` are one instruction each on x86-64 (the
/// `u64` ones take about eight); weights from 2^63 up take the general path.
#[inline]
pub(crate) fn whole(w: f64) -> u64 {
    let t = w as i64;
    if (0..i64::MAX).contains(&t) && t as f64 == w { t as u64 } else { w.round() as u64 }
}

/// `open` (`name{`), the label block with its [`CLOSE`], the value, into
/// room for `open.len() + labels.len() + NUMBER + 1` bytes.
#[inline(always)]
fn put_line(r: &mut Room<'_>, open: &str, labels: &[u8], v: Num) {
    r.put(open.as_bytes());
    r.put(labels);
    match v {
        Num::F64(v) => r.float(v),
        Num::U64(v) => r.integer(v),
    }
    r.byte(b'\n');
}

struct Writer<'o> {
    out: &'o mut Vec<u8>,
    openmetrics: bool,
    /// The last `_created` time, as text.
    seconds: Seconds,
}

impl Writer<'_> {
    /// HELP and TYPE (and, in OpenMetrics, UNIT) lines. `name` is the
    /// family's name in OpenMetrics: a 0.0.4 counter's is `name_total`.
    fn descriptor(&mut self, name: &str, help: &str, kind: Kind) {
        let total = if kind == Kind::Counter && !self.openmetrics { "_total" } else { "" };
        let kind_str = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let o = &mut *self.out;
        for (head, tail) in [("# HELP ", help), ("# TYPE ", kind_str)] {
            o.extend_from_slice(head.as_bytes());
            o.extend_from_slice(name.as_bytes());
            o.extend_from_slice(total.as_bytes());
            o.push(b' ');
            o.extend_from_slice(tail.as_bytes());
            o.push(b'\n');
        }
        if kind == Kind::Histogram && self.openmetrics {
            o.extend_from_slice(b"# UNIT ");
            o.extend_from_slice(name.as_bytes());
            o.extend_from_slice(b" seconds\n");
        }
    }

    /// `open` (`name{`), the label block with its [`CLOSE`], the value.
    #[inline]
    fn line(&mut self, open: &str, labels: &[u8], v: Num) {
        Room::make(self.out, open.len() + labels.len() + NUMBER + 1, |r| put_line(r, open, labels, v));
    }

    /// In OpenMetrics, a `_created` line: `open`, the label block, the time
    /// in seconds, exact to the nanosecond. (The text format's calls, which
    /// write nothing, stay a test and a branch.)
    #[inline]
    fn created(&mut self, open: &str, labels: &[u8], ns: u64) {
        if self.openmetrics {
            self.created_line(open, labels, ns);
        }
    }

    fn created_line(&mut self, open: &str, labels: &[u8], ns: u64) {
        let seconds = self.seconds.text(ns);
        Room::make(self.out, open.len() + labels.len() + seconds.len() + 1, |r| {
            r.put(open.as_bytes());
            r.put(labels);
            r.put(seconds);
            r.byte(b'\n');
        });
    }

    /// A histogram's `_sum`, `_count` and cumulative `_bucket` lines. Bucket
    /// lines carry `le` first, and, given an exemplar label, each bucket's
    /// exemplar (` # {traceID="…"} value time`). With fewer bounds than the
    /// histogram has (native histograms only), the +Inf line counts the
    /// rest and carries the last exemplar among them.
    fn histogram(&mut self, family: &Histogram, labels: &[u8], h: &Hist, exemplars: Option<(&str, Row<'_>)>) {
        let opens = if labels.len() > CLOSE.len() { &family.buckets_comma } else { &family.buckets };
        // Set exemplars in bucket order: a bucket takes its own, +Inf the last left.
        let (label, Row(mut pending)) = exemplars.unwrap_or_default();
        let lines = opens.len();
        // Each exemplar is written once at most.
        let bound = family.room(labels.len(), pending.len().min(lines), label.len());
        Room::make(self.out, bound, |r| {
            put_line(r, &family.sum, labels, Num::F64(h.sum));
            put_line(r, &family.count, labels, Num::U64(whole(h.count)));
            let mut cumulative = 0u64;
            let last = lines - 1;
            for (b, open) in opens.iter().enumerate() {
                let (weights, example) = if b == last {
                    (h.buckets.get(b..).unwrap_or(&[]), pending.last())
                } else {
                    let own = pending.first().filter(|k| k.bucket as usize == b);
                    pending = &pending[usize::from(own.is_some())..];
                    (&h.buckets[b..=b], own)
                };
                for &w in weights {
                    cumulative = cumulative.wrapping_add(whole(w));
                }
                r.put(open.as_bytes());
                r.put(labels);
                r.integer(cumulative);
                if let Some(x) = example.map(|k| &k.exemplar) {
                    r.put(b" # {");
                    r.put(label.as_bytes());
                    r.put(b"=\"");
                    r.hex(&x.trace_id);
                    r.put(b"\"} ");
                    r.put(dtoa::Buffer::new().format(x.value).as_bytes());
                    r.byte(b' ');
                    r.seconds(x.at_ns);
                }
                r.byte(b'\n');
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        for (value, want) in [("plain", "plain"), ("a\\b", "a\\\\b"), ("say \"hi\"", "say \\\"hi\\\""), ("x\n", "x\\n")]
        {
            let mut o = Vec::new();
            Room::make(&mut o, 2 * value.len(), |r| escape(r, value));
            assert_eq!(o, want.as_bytes());
        }
    }

    #[test]
    fn whole_is_round_as_u64() {
        let two63 = (1u64 << 63) as f64;
        for w in [
            0.0,
            -0.0,
            0.5,
            1.5,
            2.4999,
            -3.0,
            -2.5,
            4503599627370495.5,
            9.007199254740993e15,
            two63,
            -two63,
            f64::from_bits(two63.to_bits() - 1),
            f64::from_bits(two63.to_bits() + 1),
            1e19,
            1.8446744073709552e19,
            1e30,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            -f64::NAN,
            7.0,
        ] {
            assert_eq!(whole(w), w.round() as u64, "{w}");
        }
    }
}
