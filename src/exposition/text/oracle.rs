//! The reference for [`super::render`]: the same text written through
//! prometheus-client's OpenMetrics encoder (0.25, whose label escaping the
//! text formats follow), with the 0.0.4 text derived from it line by line.
//! This is how the exposition was written before the hand-written writer; a
//! test renders random snapshots through both and compares the bytes.

use super::*;
use crate::series::Hist;
use crate::series::Virtual;
use crate::series::{EdgeSeries, SideSeries, Snapshot};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::fmt;

const COUNTERS: [&str; 5] = [REQUEST, REQUEST_FAILED, UNPAIRED, DROPPED, OVERFLOW];

/// Renders a snapshot as OpenMetrics (`openmetrics`) or Prometheus 0.0.4 text.
pub fn render(snap: &Snapshot, openmetrics: bool) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector(snap.clone())));
    let mut out = String::with_capacity(256 + snap.edges.len() * 64 * (snap.bounds.len() + 4));
    prometheus_client::encoding::text::encode(&mut out, &registry).expect("writing to a String cannot fail");
    if openmetrics { out } else { to_prometheus_004(&out) }
}

fn to_prometheus_004(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ").or_else(|| line.strip_prefix("# HELP ")) {
            let name = rest.split(' ').next().unwrap_or("");
            if COUNTERS.contains(&name) {
                out.push_str(&line[..7]);
                out.push_str(name);
                out.push_str("_total");
                out.push_str(&rest[name.len()..]);
                out.push('\n');
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[derive(Debug)]
struct SnapshotCollector(Snapshot);

/// The labels of an edge series, empty values left out (an empty label and a
/// missing label are the same series in Prometheus).
fn edge_labels<'a>(snap: &'a Snapshot, e: &'a EdgeSeries) -> Vec<(&'a str, &'a str)> {
    let mut l = Vec::with_capacity(4 + e.dims.len());
    l.push(("client", &*e.client));
    l.push(("server", &*e.server));
    l.push(("connection_type", e.conn.as_str()));
    if snap.failed_label {
        l.push(("failed", if e.failed { "true" } else { "false" }));
    }
    for (name, value) in snap.dim_labels.prometheus.iter().zip(&e.dims) {
        l.push((name.as_str(), &**value));
    }
    if snap.virtual_label && e.virtual_side != Virtual::None {
        l.push(("virtual_node", e.virtual_side.as_str()));
    }
    l.retain(|(_, v)| !v.is_empty());
    l
}

fn side_labels(s: &SideSeries) -> Vec<(&str, &str)> {
    if s.overflow {
        return vec![("otel_metric_overflow", "true")];
    }
    let mut l = vec![("client", &*s.client), ("server", &*s.server), ("connection_type", s.conn.as_str())];
    l.retain(|(_, v)| !v.is_empty());
    l
}

fn buckets(bounds: &[f64], h: &Hist) -> Vec<(f64, u64)> {
    bounds
        .iter()
        .copied()
        .chain(std::iter::once(f64::INFINITY))
        .zip(h.buckets.iter().map(|&w| w.round() as u64))
        .collect()
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let snap = &self.0;
        let labels: Vec<_> = snap.edges.iter().map(|e| edge_labels(snap, e)).collect();
        let seconds = Unit::Seconds;

        let mut m = enc.encode_descriptor(REQUEST, REQUEST_HELP, None, MetricType::Counter)?;
        for (e, l) in snap.edges.iter().zip(&labels) {
            m.encode_family(l)?.encode_counter::<NoLabelSet, _, f64>(&e.values.request, None)?;
        }
        let mut m = enc.encode_descriptor(REQUEST_FAILED, REQUEST_FAILED_HELP, None, MetricType::Counter)?;
        for (e, l) in snap.edges.iter().zip(&labels) {
            if e.values.has_failed() {
                m.encode_family(l)?.encode_counter::<NoLabelSet, _, f64>(&e.values.failed, None)?;
            }
        }
        // The messaging histogram exists only for edges that observed one.
        type Pick = fn(&EdgeSeries) -> Option<&Hist>;
        let hists: [(&str, &str, Pick); 3] = [
            (SERVER, SERVER_HELP, |e| Some(&e.values.server)),
            (CLIENT, CLIENT_HELP, |e| Some(&e.values.client)),
            (MESSAGING, MESSAGING_HELP, |e| e.values.messaging.as_deref().filter(|_| e.values.has_messaging())),
        ];
        for (name, help, get) in hists {
            if name == MESSAGING && !snap.messaging {
                continue;
            }
            let mut m = enc.encode_descriptor(name, help, Some(&seconds), MetricType::Histogram)?;
            for (e, l) in snap.edges.iter().zip(&labels) {
                if let Some(h) = get(e) {
                    m.encode_family(l)?.encode_histogram::<NoLabelSet>(
                        h.sum,
                        h.count.round() as u64,
                        &buckets(&snap.bounds, h),
                        None,
                    )?;
                }
            }
        }
        if snap.connection_info {
            let mut m = enc.encode_descriptor(CONNECTION_INFO, CONNECTION_INFO_HELP, None, MetricType::Gauge)?;
            for l in &labels {
                m.encode_family(l)?.encode_gauge(&1i64)?;
            }
        }
        let sides: [(&str, &str, &Vec<SideSeries>); 2] =
            [(UNPAIRED, UNPAIRED_HELP, &snap.unpaired), (DROPPED, DROPPED_HELP, &snap.dropped)];
        for (name, help, list) in sides {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for s in list {
                m.encode_family(&side_labels(s))?.encode_counter::<NoLabelSet, _, f64>(&s.value, None)?;
            }
        }
        if snap.overflow.iter().any(|&(_, n)| n > 0) {
            let mut m = enc.encode_descriptor(OVERFLOW, OVERFLOW_HELP, None, MetricType::Counter)?;
            for (option, n) in snap.overflow.iter().filter(|(_, n)| *n > 0) {
                m.encode_family(&[("option", *option)])?.encode_counter::<NoLabelSet, _, u64>(n, None)?;
            }
        }
        Ok(())
    }
}

/// Random snapshots, for this test and the OTLP encoder's.
#[cfg(test)]
pub(crate) mod tests {
    use super::render as oracle;
    use crate::config::Compat;
    use crate::exposition::text::render;
    use crate::series::{ConnType, Virtual};
    use crate::series::{DimLabels, EdgeSeries, SideSeries, Snapshot};
    use crate::series::{Exemplar, Exemplars, Family, Hist, Rows, Values};

    pub(crate) use servicemap_testkit::Rng;

    const VALUES: &[&str] = &[
        "",
        "",
        "a",
        "frontend",
        "svc-1.ns.svc.cluster.local:8080",
        "say \"hi\"",
        "C:\\path\\",
        "two\nlines\n",
        "\\\"\n",
        "carriage\rreturn",
        "tab\tand {braces}=,",
        "λ unicode 日本語 🚀",
        " ",
        "\"",
        "\\",
        "\n",
    ];

    /// Floats for sums and counters, the awkward ones included.
    fn float(r: &mut Rng) -> f64 {
        const F: &[f64] = &[
            0.0,
            -0.0,
            1.0,
            3.0,
            0.1,
            0.30000000000000004,
            1e-7,
            1e21,
            1e22,
            123456.789,
            1e15,
            9007199254740993.0,
            5e-324,
            1e-300,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -2.5,
        ];
        match r.below(4) {
            0 => f64::from_bits(r.next_u64()),
            1 => (r.next_u64() % 1_000_000) as f64 / 1000.0,
            _ => *r.pick(F),
        }
    }

    /// Bucket weights and counts; whole numbers mostly, and the values that
    /// round or saturate (kept small enough that the cumulative sum of one
    /// histogram cannot overflow a u64).
    /// A creation time: whole seconds, a fraction of one, or near the epoch.
    fn created(r: &mut Rng) -> u64 {
        *r.pick(&[1, 999_999_999, 1_767_225_600_000_000_000, 1_767_225_600_123_456_789, 1_767_225_600_500_000_000])
    }

    fn weight(r: &mut Rng) -> f64 {
        const W: &[f64] = &[0.0, 1.0, 2.0, 0.5, 1.5, 2.4999, -3.0, f64::NAN, 1e15, 1e18, 4294967296.0];
        if r.chance(0.5) { (r.next_u64() % 100) as f64 } else { *r.pick(W) }
    }

    /// Exemplars in some of the buckets of each family.
    fn exemplars(r: &mut Rng, families: usize, buckets: usize) -> Exemplars {
        let mut x = Exemplars::new(families, buckets);
        for family in [Family::Server, Family::Client, Family::Messaging].into_iter().take(families) {
            for b in 0..buckets {
                if r.chance(0.4) {
                    let mut trace_id = [0u8; 16];
                    trace_id[..8].copy_from_slice(&r.next_u64().to_be_bytes());
                    trace_id[8..].copy_from_slice(&r.next_u64().to_be_bytes());
                    let span_id = r.next_u64().to_be_bytes();
                    x.set(family, b, Exemplar { value: float(r).abs(), at_ns: created(r), trace_id, span_id });
                }
            }
        }
        x
    }

    fn hist(r: &mut Rng, bounds: usize) -> Hist {
        let mut h = Hist::new(bounds);
        for b in h.buckets.iter_mut() {
            *b = weight(r);
        }
        h.sum = float(r);
        h.count = if r.chance(0.1) { *r.pick(&[1e30, f64::INFINITY, f64::NAN, -1.0]) } else { weight(r) };
        h
    }

    pub(crate) fn snapshot(r: &mut Rng) -> Snapshot {
        const BOUNDS: &[f64] = &[0.002, 0.004, 0.1, 0.25, 1.0, 2.5, 10.0, 1e-7, 1e21, 1.0 / 3.0, 100.0, 0.0];
        const DIMS: &[&str] = &["http_method", "deployment_environment", "client_k8s_ns", "server_k8s_ns", "_1x"];
        let bounds: Vec<f64> = (0..r.below(24)).map(|_| *r.pick(BOUNDS)).collect();
        let dims: Vec<String> = (0..r.below(5)).map(|_| r.pick(DIMS).to_string()).collect();
        let messaging = r.chance(0.5);
        let exemplar_label = r.chance(0.5).then(|| r.pick(&["traceID", "trace_id"]).to_string());
        let edges = (0..r.below(40))
            .map(|_| {
                let messaging_hist = (messaging && r.chance(0.7)).then(|| Box::new(hist(r, bounds.len())));
                EdgeSeries {
                    client: (*r.pick(VALUES)).into(),
                    server: (*r.pick(VALUES)).into(),
                    conn: *r.pick(&[
                        ConnType::Plain,
                        ConnType::MessagingSystem,
                        ConnType::Database,
                        ConnType::VirtualNode,
                    ]),
                    failed: r.chance(0.3),
                    virtual_side: *r.pick(&[Virtual::None, Virtual::Client, Virtual::Server]),
                    dims: dims.iter().map(|_| (*r.pick(VALUES)).into()).collect(),
                    values: Values {
                        request: float(r),
                        failed: if r.chance(0.5) { 0.0 } else { float(r) },
                        server: hist(r, bounds.len()),
                        client: hist(r, bounds.len()),
                        messaging: messaging_hist,
                        created_ns: if r.chance(0.2) { 0 } else { created(r) },
                        updated_ns: 0,
                        failed_since_ns: if r.chance(0.5) { 0 } else { created(r) },
                        messaging_since_ns: if r.chance(0.5) { 0 } else { created(r) },
                        exemplars: None,
                    },
                    exemplars: Rows::default(),
                }
            })
            .collect::<Vec<_>>();
        // The set exemplars in the snapshot's list, as the engine copies them.
        let kept: Vec<Option<Exemplars>> = (0..edges.len())
            .map(|_| {
                (exemplar_label.is_some() && r.chance(0.8))
                    .then(|| exemplars(r, 2 + usize::from(messaging), bounds.len() + 1))
            })
            .collect();
        let side = |r: &mut Rng| {
            let mut list: Vec<SideSeries> = (0..r.below(6))
                .map(|_| SideSeries {
                    client: (*r.pick(VALUES)).into(),
                    server: (*r.pick(VALUES)).into(),
                    conn: *r.pick(&[ConnType::Plain, ConnType::Database]),
                    value: float(r),
                    created_ns: created(r),
                    overflow: false,
                })
                .collect();
            if r.chance(0.2) {
                list.push(SideSeries::overflow(float(r), created(r)));
            }
            list
        };
        let mut overflow = [
            ("max_series", 0),
            ("max_unpaired_series", 0),
            ("max_graph_nodes", 0),
            ("max_graph_edges", 0),
            ("max_history_entries", 0),
        ];
        if r.chance(0.2) {
            for (_, n) in overflow.iter_mut() {
                *n = if r.chance(0.5) { 0 } else { r.below(1 << 20) as u64 };
            }
        }
        let mut snap = Snapshot {
            compat: if r.chance(0.5) { Compat::Tempo } else { Compat::Contrib },
            failed_label: r.chance(0.5),
            virtual_label: r.chance(0.5),
            connection_info: r.chance(0.5),
            messaging,
            weighted: r.chance(0.3),
            bounds,
            histograms: crate::config::Histograms::Classic,
            exemplar_label,
            dim_labels: DimLabels { raw: dims.iter().map(|d| d.replace('_', ".")).collect(), prometheus: dims },
            edges,
            exemplars: Vec::new(),
            unpaired: side(r),
            dropped: side(r),
            overflow,
            started_ns: created(r),
        };
        for (i, x) in kept.iter().enumerate() {
            if let Some(x) = x {
                snap.set_exemplars(i, x);
            }
        }
        snap
    }

    #[test]
    fn writer_matches_prometheus_client_on_random_snapshots() {
        let mut r = Rng::new(0x9e37_79b9_7f4a_7c15);
        for case in 0..400 {
            let snap = snapshot(&mut r);
            for openmetrics in [false, true] {
                let want = oracle(&snap, openmetrics);
                // prometheus-client writes no `_created` lines, and cannot be
                // given the exemplars of a histogram it did not observe;
                // both are checked on their own below.
                let got = without_exemplars(&without_created(&render(&snap, openmetrics)));
                if got != want {
                    let line = got.lines().zip(want.lines()).position(|(a, b)| a != b);
                    panic!(
                        "case {case}, openmetrics {openmetrics}: first differing line {line:?}\n--- writer\n{got}\n--- prometheus-client\n{want}"
                    );
                }
            }
        }
    }

    fn without_exemplars(text: &str) -> String {
        text.lines().flat_map(|l| [l.split_once(" # {").map_or(l, |(sample, _)| sample), "\n"]).collect()
    }

    /// OpenMetrics writes every set exemplar on its bucket's line, and only
    /// there; 0.0.4 and a snapshot without an exemplar label write none.
    #[test]
    fn openmetrics_writes_each_exemplar_on_its_bucket_line() {
        let mut r = Rng::new(0xe8e3);
        for _ in 0..200 {
            let snap = snapshot(&mut r);
            assert!(!render(&snap, false).contains(" # {"));
            let text = render(&snap, true);
            let written: Vec<&str> = text.lines().filter(|l| l.contains(" # {")).collect();
            let Some(label) = &snap.exemplar_label else {
                assert!(written.is_empty());
                continue;
            };
            // Family by family, as the histograms are written.
            let mut want = Vec::new();
            for f in [Family::Server, Family::Client, Family::Messaging] {
                for e in &snap.edges {
                    let written = match f {
                        Family::Messaging => snap.messaging && e.values.has_messaging() && e.values.messaging.is_some(),
                        _ => true,
                    };
                    for k in snap.exemplars_of(e, f).0.iter().filter(|_| written) {
                        let (x, mut id) = (&k.exemplar, String::new());
                        crate::series::exemplar::hex(&x.trace_id, &mut id);
                        // The bucket's upper bound; the last bucket is +Inf.
                        let le = snap.bounds.get(k.bucket as usize).copied().unwrap_or(f64::INFINITY);
                        want.push((le, format!("{label}=\"{id}\"}} {}", dtoa::Buffer::new().format(x.value))));
                    }
                }
            }
            let got: Vec<(f64, String)> = written
                .iter()
                .map(|l| {
                    let (sample, exemplar) = l.split_once(" # {").unwrap();
                    let le = sample.split_once("_seconds_bucket{le=\"").and_then(|(_, r)| r.split_once('"'));
                    let le = match le.unwrap_or_else(|| panic!("not a bucket line: {l}")).0 {
                        "+Inf" => f64::INFINITY,
                        v => v.parse::<f64>().unwrap(),
                    };
                    (le, exemplar.rsplit_once(' ').unwrap().0.to_string())
                })
                .collect();
            assert!(got == want, "{} exemplars written, {} expected", got.len(), want.len());
        }
    }

    #[test]
    fn an_exemplar_as_openmetrics_writes_it() {
        let mut snap = snapshot(&mut Rng::new(3));
        snap.edges.truncate(1);
        snap.exemplar_label = Some("traceID".into());
        snap.bounds = vec![0.1, 1.0];
        let e = &mut snap.edges[0];
        (e.client, e.server, e.conn, e.failed, e.virtual_side) =
            ("web".into(), "db".into(), ConnType::Database, false, Virtual::None);
        e.dims = snap.dim_labels.raw.iter().map(|_| "".into()).collect();
        e.values.server = Hist::new(2);
        e.values.server.observe(&[0.1, 1.0], 0.25, 1.0);
        let mut x = Exemplars::new(2, 3);
        let trace_id = *b"\x01\x23\x45\x67\x89\xab\xcd\xef\x00\x11\x22\x33\x44\x55\x66\x77";
        x.set(Family::Server, 1, Exemplar { value: 0.25, at_ns: 1_767_225_600_120_000_000, trace_id, span_id: [9; 8] });
        snap.set_exemplars(0, &x);
        let text = render(&snap, true);
        let lines: Vec<&str> =
            text.lines().filter(|l| l.starts_with("traces_service_graph_request_server_seconds_bucket")).collect();
        assert_eq!(
            lines,
            [
                r#"traces_service_graph_request_server_seconds_bucket{le="0.1",client="web",server="db",connection_type="database"} 0"#,
                r#"traces_service_graph_request_server_seconds_bucket{le="1.0",client="web",server="db",connection_type="database"} 1 # {traceID="0123456789abcdef0011223344556677"} 0.25 1767225600.12"#,
                r#"traces_service_graph_request_server_seconds_bucket{le="+Inf",client="web",server="db",connection_type="database"} 1"#,
            ]
        );
    }

    fn without_created(text: &str) -> String {
        text.lines().filter(|l| !l.contains("_created{")).flat_map(|l| [l, "\n"]).collect()
    }

    /// Every `_created` line follows the last sample of its series, in
    /// OpenMetrics only, with the series' own creation time.
    #[test]
    fn openmetrics_gives_each_counter_and_histogram_its_creation_time() {
        let mut r = Rng::new(0x5eed);
        for _ in 0..200 {
            let snap = snapshot(&mut r);
            assert!(!render(&snap, false).contains("_created"));
            let text = render(&snap, true);
            let lines: Vec<&str> = text.lines().collect();
            let created: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].contains("_created{")).collect();
            let failed = snap.edges.iter().filter(|e| e.values.has_failed()).count();
            let hists: usize = snap.edges.len() * 2
                + if snap.messaging {
                    snap.edges.iter().filter(|e| e.values.has_messaging() && e.values.messaging.is_some()).count()
                } else {
                    0
                };
            let overflow = snap.overflow.iter().filter(|(_, n)| *n > 0).count();
            assert_eq!(
                created.len(),
                snap.edges.len() + failed + hists + snap.unpaired.len() + snap.dropped.len() + overflow
            );
            for i in created {
                let (series, ts) = lines[i].rsplit_once(' ').unwrap();
                let (name, labels) = series.split_once('{').unwrap();
                let family = name.strip_suffix("_created").unwrap();
                let before = lines[i - 1];
                assert!(
                    before.starts_with(family) && before.contains(&labels[..labels.len() - 1]),
                    "{before} / {}",
                    lines[i]
                );
                assert!(ts.parse::<f64>().is_ok() && !ts.ends_with('.') && !ts.contains('e'), "{ts}");
            }
        }
        let mut snap = snapshot(&mut Rng::new(3));
        snap.edges.truncate(1);
        snap.unpaired.clear();
        snap.dropped.clear();
        snap.overflow = [("max_series", 0); 5];
        let e = &mut snap.edges[0];
        e.values.created_ns = 1_767_225_600_120_000_000;
        e.values.failed = 1.0;
        e.values.failed_since_ns = 1_767_225_601_000_000_000;
        let text = render(&snap, true);
        assert!(text.contains("traces_service_graph_request_created{"), "{text}");
        let ts: Vec<&str> =
            text.lines().filter(|l| l.contains("_created{")).map(|l| l.rsplit_once(' ').unwrap().1).collect();
        assert_eq!(ts[0], "1767225600.12");
        assert_eq!(ts[1], "1767225601");
    }

    #[test]
    fn writer_matches_prometheus_client_on_an_empty_snapshot() {
        let snap = Snapshot {
            compat: Compat::Contrib,
            failed_label: false,
            virtual_label: false,
            connection_info: true,
            messaging: true,
            weighted: false,
            bounds: vec![0.1, 1.0],
            histograms: crate::config::Histograms::Classic,
            exemplar_label: Some("traceID".into()),
            dim_labels: DimLabels { raw: vec![], prometheus: vec![] },
            edges: vec![],
            exemplars: vec![],
            unpaired: vec![],
            dropped: vec![],
            overflow: [("max_series", 0); 5],
            started_ns: 0,
        };
        for openmetrics in [false, true] {
            assert_eq!(render(&snap, openmetrics), oracle(&snap, openmetrics));
        }
    }
}
