//! Prometheus and OpenMetrics text, written through prometheus-client (which
//! escapes label values). The names and labels are the ones Grafana's
//! service-graph view queries.
//!
//! prometheus-client writes OpenMetrics; the Prometheus 0.0.4 text differs
//! only in the counter TYPE/HELP names (`x_total` instead of `x`), and in
//! having no `# UNIT` and no `# EOF` lines, so it is derived from it.

use crate::edge::Virtual;
use crate::engine::{EdgeSeries, SideSeries, Snapshot};
use crate::series::Hist;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::fmt;

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
pub const DROPPED_HELP: &str = "Spans dropped because the pairing store was full.";

const COUNTERS: [&str; 4] = [REQUEST, REQUEST_FAILED, UNPAIRED, DROPPED];

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
    l.push(("client", e.client.as_str()));
    l.push(("server", e.server.as_str()));
    l.push(("connection_type", e.conn.as_str()));
    if snap.failed_label {
        l.push(("failed", if e.failed { "true" } else { "false" }));
    }
    for (name, value) in snap.dim_labels.prometheus.iter().zip(&e.dims) {
        l.push((name.as_str(), value.as_str()));
    }
    if snap.virtual_label && e.virtual_side != Virtual::None {
        l.push(("virtual_node", e.virtual_side.as_str()));
    }
    l.retain(|(_, v)| !v.is_empty());
    l
}

fn side_labels(s: &SideSeries) -> Vec<(&str, &str)> {
    let mut l =
        vec![("client", s.client.as_str()), ("server", s.server.as_str()), ("connection_type", s.conn.as_str())];
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
            (MESSAGING, MESSAGING_HELP, |e| e.values.messaging.as_ref().filter(|_| e.values.has_messaging())),
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
        Ok(())
    }
}
