//! The service map read back from a Prometheus-compatible store.
//!
//! When spans are spread over several collectors (a gateway routing by trace
//! ID to graph instances), each instance holds part of the counts; the store
//! that scrapes them all holds the sum. [`Store`] builds the same [`View`]
//! the engine builds from its own memory out of PromQL over the service-graph
//! series: `rate` of the request and failure counters and `histogram_quantile`
//! of the summed server-latency histogram over the window, summed by `client`
//! and `server` so that `instance`, `job` and dimensions fall away. The
//! latency histogram is read native where the store has it native (a
//! Prometheus scraping `histograms: native` or `both` with native histograms
//! on keeps no classic buckets) and from its classic buckets otherwise. The
//! incident queries then run on it unchanged ([`crate::map::query`]).
//!
//! Series written by Tempo's metrics-generator and by contrib's connector
//! read the same: both name the metrics alike and label the two sides
//! `client` and `server`.

pub mod client;

pub use client::{Client, Sample, Series};

use crate::config::catalog::Health;
use crate::error::Error;
use crate::map::history::Snapshot;
use crate::map::query::Source;
use crate::map::{Catalog, EdgeView, Facts, History, NodeKind, NodeView, View};
use crate::series::ConnType;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The counter of requests between two services.
pub const REQUESTS: &str = "traces_service_graph_request_total";
/// The counter of failed requests.
pub const FAILED: &str = "traces_service_graph_request_failed_total";
/// The server-side latency histogram, as a native histogram.
pub const SERVER_SECONDS: &str = "traces_service_graph_request_server_seconds";
/// The server-side latency histogram's classic buckets.
pub const SERVER_BUCKETS: &str = "traces_service_graph_request_server_seconds_bucket";

/// PromQL for quantile `q` of the server latency over window `w`, summed by
/// `by`: the native histogram where there is one, else the classic buckets
/// (`or` keeps the left side's result for a label set both sides have).
fn latency_quantile(q: f64, by: &str, w: &str) -> String {
    format!(
        "histogram_quantile({q}, sum by ({by}) (rate({SERVER_SECONDS}[{w}]))) \
         or histogram_quantile({q}, sum by ({by}, le) (rate({SERVER_BUCKETS}[{w}])))"
    )
}

/// The map as a store holds it: where to ask, over which window, judged
/// against which catalog.
pub struct Store {
    client: Client,
    window: Duration,
    /// History: how far back the baselines reach, and their step.
    lookback: Duration,
    step: Duration,
    catalog: Catalog,
    /// The exemplar label holding the trace ID.
    trace_label: String,
}

/// Totals of one edge over the window.
#[derive(Default)]
struct EdgeTotals {
    conn: ConnType,
    virtual_side: Option<String>,
    rate: f64,
    errors: f64,
    quantiles: BTreeMap<u64, f64>,
}

/// A client and server pair.
type EdgeKey = (String, String);

/// A trace ID written as 32 hex digits.
fn trace_id(hex: &str) -> Option<[u8; 16]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, pair) in bytes.chunks(2).enumerate() {
        id[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(id)
}

/// A percentile as a map key: per million, exact for the percentiles people use.
fn key(q: f64) -> u64 {
    (q * 1e6).round() as u64
}

impl Store {
    pub fn new(client: Client, window: Duration, lookback: Duration, step: Duration, catalog: Catalog) -> Store {
        Store { client, window, lookback, step, catalog, trace_label: "traceID".into() }
    }

    /// Reads trace IDs from the exemplar label `name` (`trace_id_label_name`).
    pub fn with_trace_label(mut self, name: &str) -> Store {
        self.trace_label = name.to_string();
        self
    }

    /// Each edge's slowest request in the window whose trace ID an exemplar
    /// of the server histogram carries. Exemplars are a link, not a count:
    /// a store that cannot answer for them leaves the map without links
    /// rather than without a map.
    fn slowest(&self, at_s: f64) -> BTreeMap<EdgeKey, (f64, [u8; 16])> {
        let mut out: BTreeMap<EdgeKey, (f64, [u8; 16])> = BTreeMap::new();
        let start = at_s - self.window.as_secs_f64().max(1.0);
        let Ok(series) = self.client.exemplars(SERVER_BUCKETS, start, at_s) else { return out };
        for s in series {
            let (Some(c), Some(sv)) = (s.labels.get("client"), s.labels.get("server")) else { continue };
            for (labels, value) in s.exemplars {
                let Some(id) = labels.get(&self.trace_label).and_then(|t| trace_id(t.as_str())) else { continue };
                let e = out.entry((c.clone(), sv.clone())).or_insert((value, id));
                if value > e.0 {
                    *e = (value, id);
                }
            }
        }
        out
    }

    fn range(&self) -> String {
        format!("{}s", self.window.as_secs().max(1))
    }

    /// Instant query, by (client, server).
    fn by_edge(&self, expr: &str, at_s: f64) -> Result<Vec<(EdgeKey, Sample)>, Error> {
        let samples = self.client.query(expr, at_s)?;
        Ok(samples
            .into_iter()
            .filter_map(|s| Some(((s.labels.get("client")?.clone(), s.labels.get("server")?.clone()), s)))
            .collect())
    }

    /// The map at `at_ns`.
    pub fn view(&self, at_ns: u64, reasons: bool) -> Result<View, Error> {
        let at_s = at_ns as f64 / 1e9;
        let w = self.range();
        let mut edges: BTreeMap<(String, String), EdgeTotals> = BTreeMap::new();
        // Every edge whose series exist in the window, even before a rate can be computed.
        let listed =
            format!("group by (client, server, connection_type, virtual_node) (last_over_time({REQUESTS}[{w}]))");
        for (k, s) in self.by_edge(&listed, at_s)? {
            let e = edges.entry(k).or_default();
            e.conn = match s.labels.get("connection_type").map(String::as_str) {
                Some("database") => ConnType::Database,
                Some("messaging_system") => ConnType::MessagingSystem,
                Some("virtual_node") => ConnType::VirtualNode,
                _ => e.conn,
            };
            e.virtual_side = s.labels.get("virtual_node").filter(|v| !v.is_empty()).cloned().or(e.virtual_side.take());
        }
        for (k, s) in self.by_edge(&format!("sum by (client, server) (rate({REQUESTS}[{w}]))"), at_s)? {
            edges.entry(k).or_default().rate = finite(s.value);
        }
        for (k, s) in self.by_edge(&format!("sum by (client, server) (rate({FAILED}[{w}]))"), at_s)? {
            edges.entry(k).or_default().errors = finite(s.value);
        }
        // The percentiles shown (50, 90, 99) and those the objectives ask for.
        let mut wanted: BTreeSet<u64> = [0.5, 0.9, 0.99].map(key).into();
        for (c, s) in edges.keys() {
            wanted.insert(key(self.catalog.edge_slo(c, s).latency_percentile));
        }
        for q in &wanted {
            let q = *q as f64 / 1e6;
            let expr = latency_quantile(q, "client, server", &w);
            for (k, s) in self.by_edge(&expr, at_s)? {
                if let (Some(e), true) = (edges.get_mut(&k), s.value.is_finite()) {
                    e.quantiles.insert(key(q), s.value);
                }
            }
        }
        // Services with their own objective are judged on all their incoming traffic.
        let mut own: BTreeMap<(String, u64), f64> = BTreeMap::new();
        let servers: BTreeSet<&String> = edges.keys().map(|(_, s)| s).collect();
        let own_percentiles: BTreeSet<u64> = servers
            .iter()
            .filter_map(|s| self.catalog.service(s)?.slo.as_ref().map(|slo| key(slo.latency_percentile)))
            .collect();
        for q in own_percentiles {
            let expr = latency_quantile(q as f64 / 1e6, "server", &w);
            for s in self.client.query(&expr, at_s)? {
                if let (Some(server), true) = (s.labels.get("server"), s.value.is_finite()) {
                    own.insert((server.clone(), q), s.value);
                }
            }
        }
        Ok(self.assemble(at_ns, edges, &own, reasons))
    }

    /// Nodes and edges with health, as the engine's view has them.
    fn assemble(
        &self,
        at_ns: u64,
        edges: BTreeMap<(String, String), EdgeTotals>,
        own: &BTreeMap<(String, u64), f64>,
        reasons: bool,
    ) -> View {
        let catalog = &self.catalog;
        let mut kinds: BTreeMap<String, NodeKind> = BTreeMap::new();
        let callers: BTreeSet<&str> = edges.keys().map(|(c, _)| c.as_str()).collect();
        let mut kind_of = |name: &str, k: NodeKind| {
            let e = kinds.entry(name.to_string()).or_insert(k);
            if k == NodeKind::Service || *e == NodeKind::Service {
                *e = NodeKind::Service;
            } else {
                *e = (*e).min(k);
            }
        };
        for ((c, s), e) in &edges {
            let virtual_client = e.virtual_side.as_deref() == Some("client")
                || (e.conn == ConnType::VirtualNode && c == "user" && e.virtual_side.is_none());
            let virtual_server =
                e.virtual_side.as_deref() == Some("server") || (e.conn == ConnType::VirtualNode && !virtual_client);
            kind_of(
                c,
                if !virtual_client {
                    NodeKind::Service
                } else if c == "user" {
                    NodeKind::User
                } else {
                    NodeKind::External
                },
            );
            let server_kind = if callers.contains(s.as_str()) {
                NodeKind::Service
            } else if virtual_server {
                NodeKind::External
            } else if e.conn == ConnType::Database {
                NodeKind::Database
            } else {
                NodeKind::Service
            };
            kind_of(s, server_kind);
        }
        // The virtual client of root spans calls and is never called.
        if let Some(k) = kinds.get_mut("user") {
            if *k == NodeKind::Service && !edges.keys().any(|(_, s)| s == "user") {
                *k = NodeKind::User;
            }
        }
        let mut incoming: BTreeMap<&str, (f64, f64, Vec<Health>)> = BTreeMap::new();
        let mut views = Vec::with_capacity(edges.len());
        let mut slowest = self.slowest(at_ns as f64 / 1e9);
        for ((client, server), e) in &edges {
            let error_rate = if e.rate > 0.0 { (e.errors / e.rate).min(1.0) } else { 0.0 };
            let slo = catalog.edge_slo(client, server);
            let at_slo = e.quantiles.get(&key(slo.latency_percentile)).copied();
            let (health, reason) = match (e.rate > 0.0, reasons) {
                (false, true) => (Health::Unknown, "no requests in the window".to_string()),
                (false, false) => (Health::Unknown, String::new()),
                (true, true) => slo.judge(error_rate, at_slo),
                (true, false) => (slo.health(error_rate, at_slo), String::new()),
            };
            let inc = incoming.entry(server).or_default();
            inc.0 += e.rate;
            inc.1 += e.rate * error_rate;
            inc.2.push(health);
            views.push(EdgeView {
                client: client.clone(),
                server: server.clone(),
                conn: e.conn,
                protocol: String::new(),
                first_seen_ns: at_ns,
                last_seen_ns: at_ns,
                rate: e.rate,
                error_rate,
                // The series record a failure, not which side reported it.
                client_only_error_rate: 0.0,
                p50_s: e.quantiles.get(&key(0.5)).copied(),
                p90_s: e.quantiles.get(&key(0.9)).copied(),
                p99_s: e.quantiles.get(&key(0.99)).copied(),
                health,
                reason,
                slowest: slowest.remove(&(client.clone(), server.clone())),
            });
        }
        let nodes = kinds
            .into_iter()
            .map(|(name, kind)| {
                let (rate, errors, healths) = incoming.remove(name.as_str()).unwrap_or_default();
                let error_rate = if rate > 0.0 { errors / rate } else { 0.0 };
                let entry = catalog.service(&name);
                let health = match entry.and_then(|c| c.slo.as_ref()) {
                    Some(slo) if rate > 0.0 => {
                        slo.health(error_rate, own.get(&(name.clone(), key(slo.latency_percentile))).copied())
                    }
                    _ => healths.iter().copied().filter(|h| *h != Health::Unknown).max().unwrap_or(if rate > 0.0 {
                        Health::Green
                    } else {
                        Health::Unknown
                    }),
                };
                let facts = Facts { owner: entry.map(|c| c.owner.clone()).unwrap_or_default(), ..Facts::default() };
                NodeView {
                    tier: entry.map(|c| c.tier.clone()).unwrap_or_default(),
                    name,
                    kind,
                    facts,
                    first_seen_ns: at_ns,
                    last_seen_ns: at_ns,
                    last_deploy_ns: None,
                    health,
                    rate,
                    error_rate,
                }
            })
            .collect();
        View { at_ns, window_s: self.window.as_secs_f64(), nodes, edges: views }
    }

    /// Snapshots of the edges' and nodes' rates every `step` over `lookback`
    /// before `at_ns`: the baselines a surge is measured against.
    pub fn history(&self, at_ns: u64) -> Result<History, Error> {
        let step_ns = self.step.as_nanos().max(1) as u64;
        let capacity = (self.lookback.as_nanos() as u64 / step_ns).max(1) as usize + 1;
        let mut history = History::new(step_ns, capacity);
        let end = at_ns as f64 / 1e9;
        let start = end - self.lookback.as_secs_f64();
        let expr = format!("sum by (client, server) (rate({REQUESTS}[{}]))", self.range());
        let mut by_time: BTreeMap<u64, Snapshot> = BTreeMap::new();
        for series in self.client.query_range(&expr, start, end, self.step.as_secs_f64().max(1.0))? {
            let (Some(c), Some(s)) = (series.labels.get("client"), series.labels.get("server")) else { continue };
            for (t, v) in series.points.into_iter().filter(|p| p.1.is_finite() && p.1 > 0.0) {
                let at = (t * 1e9).round() as u64;
                let snap = by_time.entry(at).or_insert_with(|| Snapshot { at_ns: at, ..Snapshot::default() });
                snap.edges.insert((c.clone(), s.clone()), Health::Unknown);
                snap.edge_rates.insert((c.clone(), s.clone()), v);
                for n in [c, s] {
                    snap.nodes.insert(n.clone(), Health::Unknown);
                }
                *snap.node_rates.entry(s.clone()).or_insert(0.0) += v;
            }
        }
        for (_, s) in by_time {
            history.push(s);
        }
        Ok(history)
    }
}

fn finite(v: f64) -> f64 {
    if v.is_finite() { v } else { 0.0 }
}

impl Source for Store {
    fn view(&self, at_ns: u64, reasons: bool) -> Result<View, Error> {
        Store::view(self, at_ns, reasons)
    }

    fn history(&self, at_ns: u64) -> Result<Cow<'_, History>, Error> {
        Ok(Cow::Owned(Store::history(self, at_ns)?))
    }

    /// The store keeps every time: the snapshot at `at_ns` is the map then.
    fn snapshot_at(&self, at_ns: u64) -> Result<Option<Snapshot>, Error> {
        Ok(Some(Snapshot::of(&Store::view(self, at_ns, false)?)))
    }

    fn snapshot_times(&self, at_ns: u64) -> Result<Vec<u64>, Error> {
        Ok(Store::history(self, at_ns)?.times())
    }

    fn catalog(&self) -> &Catalog {
        &self.catalog
    }
}
