//! The map at one time: request rates, error rates and percentiles over the
//! window, each edge and node judged against the catalog's objectives.

use super::*;

/// A computed view of one node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    pub name: String,
    pub kind: NodeKind,
    pub facts: Facts,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    pub last_deploy_ns: Option<u64>,
    pub health: Health,
    /// Requests per second into this node over the window.
    pub rate: f64,
    pub error_rate: f64,
    pub tier: String,
}

/// A computed view of one edge.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeView {
    pub client: String,
    pub server: String,
    pub conn: ConnType,
    pub protocol: String,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    /// Requests per second over the window.
    pub rate: f64,
    /// Failed share of requests over the window (0 when there were none).
    pub error_rate: f64,
    /// The part of `error_rate` only the client side reported: the server's
    /// own span said the request went well.
    pub client_only_error_rate: f64,
    pub p50_s: Option<f64>,
    pub p90_s: Option<f64>,
    pub p99_s: Option<f64>,
    pub health: Health,
    /// Why the edge is not green, for people.
    pub reason: String,
    /// The slowest request in the window that came with its trace ID:
    /// (seconds, trace ID). None when no request told its trace.
    pub slowest: Option<(f64, [u8; 16])>,
}

/// The graph at one time, with health computed.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub at_ns: u64,
    pub window_s: f64,
    pub nodes: Vec<NodeView>,
    pub edges: Vec<EdgeView>,
}

impl View {
    pub fn node(&self, name: &str) -> Option<&NodeView> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

impl Graph {
    /// Computes the graph as it stands at `now_ns`, with health from `catalog`.
    pub fn view(&self, now_ns: u64, catalog: &Catalog) -> View {
        self.view_with(now_ns, catalog, true)
    }

    /// The slot indexes a view at `now_ns` sums: oldest and newest.
    pub(super) fn window_at(&self, now_ns: u64) -> (u64, u64) {
        let newest = now_ns / self.window.slot_ns();
        (newest.saturating_sub(self.window.slots as u64 - 1), newest)
    }

    pub(super) fn window_s(&self) -> f64 {
        self.window.length.as_secs_f64().max(1e-9)
    }

    /// An edge's requests, errors (all, and those only the client reported)
    /// and latency sketch over the window.
    pub(super) fn edge_totals(e: &EdgeState, (oldest, newest): (u64, u64)) -> (f64, [f64; 2], [u32; SKETCH_BUCKETS]) {
        let mut requests = 0.0;
        let mut errors = [0.0; 2];
        let mut sketch = [0u32; SKETCH_BUCKETS];
        for s in e.slots.iter().filter(|s| s.index >= oldest && s.index <= newest) {
            requests += s.requests;
            errors[0] += s.errors;
            errors[1] += s.client_only_errors;
            s.latency.add_to(&mut sketch);
        }
        (requests, errors, sketch)
    }

    /// The slowest request with a trace ID among an edge's slots in the window.
    fn slowest(e: &EdgeState, (oldest, newest): (u64, u64)) -> Option<(f64, [u8; 16])> {
        e.slots
            .iter()
            .filter(|s| s.index >= oldest && s.index <= newest && s.slowest_trace != [0; 16])
            .map(|s| (s.slowest_s, s.slowest_trace))
            .max_by(|a, b| a.0.total_cmp(&b.0))
    }

    /// A node's health from its incoming traffic: requests, errors, the
    /// health of each incoming edge, the merged latency sketch.
    pub(super) fn node_health(
        catalog: &Catalog,
        name: &str,
        (requests, errors, healths, sketch): (f64, f64, &[Health], &[u32; SKETCH_BUCKETS]),
    ) -> Health {
        let error_rate = if requests > 0.0 { errors / requests } else { 0.0 };
        match catalog.service(name).and_then(|c| c.slo.as_ref()) {
            // A service with its own SLO is judged on all its incoming traffic.
            Some(slo) if requests > 0.0 => slo.health(error_rate, quantile(sketch, slo.latency_percentile)),
            _ => healths.iter().copied().filter(|h| *h != Health::Unknown).max().unwrap_or(if requests > 0.0 {
                Health::Green
            } else {
                Health::Unknown
            }),
        }
    }

    /// As [`Graph::view`]; without `reasons`, edges carry no explanation of
    /// their health, which queries do not need and which costs a string per edge.
    pub fn view_with(&self, now_ns: u64, catalog: &Catalog, reasons: bool) -> View {
        let window = self.window_at(now_ns);
        let window_s = self.window_s();
        // Each node's rank by name: nodes and edges are listed by name, and
        // edges sort on two integers rather than two strings.
        let mut by_name: Vec<usize> = (0..self.nodes.len()).collect();
        by_name.sort_unstable_by(|&a, &b| self.nodes[a].name.cmp(&self.nodes[b].name));
        let mut rank = vec![0u32; self.nodes.len()];
        for (r, &i) in by_name.iter().enumerate() {
            rank[i] = r as u32;
        }
        let mut edges = Vec::with_capacity(self.edges.len());
        // Per server: requests, errors, the health of each incoming edge, the latency sketch.
        type Incoming = (f64, f64, Vec<Health>, [u32; SKETCH_BUCKETS]);
        let mut incoming: Vec<Option<Box<Incoming>>> = vec![None; self.nodes.len()];
        for e in &self.edges {
            let (client, server) = (&self.nodes[e.client].name, &self.nodes[e.server].name);
            let (requests, [errors, client_only], sketch) = Self::edge_totals(e, window);
            let error_rate = if requests > 0.0 { errors / requests } else { 0.0 };
            let client_only_error_rate = if requests > 0.0 { client_only / requests } else { 0.0 };
            let slo = catalog.edge_slo(client, server);
            let [p50_s, p90_s, p99_s, at_slo] = quantiles(&sketch, [0.5, 0.9, 0.99, slo.latency_percentile]);
            let slowest = Self::slowest(e, window);
            let latency = || at_slo;
            let (health, reason) = match (requests > 0.0, reasons) {
                (false, true) => (Health::Unknown, "no requests in the window".to_string()),
                (false, false) => (Health::Unknown, String::new()),
                (true, true) => slo.judge(error_rate, latency()),
                (true, false) => (slo.health(error_rate, latency()), String::new()),
            };
            let inc = incoming[e.server].get_or_insert_with(|| Box::new((0.0, 0.0, Vec::new(), [0; SKETCH_BUCKETS])));
            inc.0 += requests;
            inc.1 += errors;
            inc.2.push(health);
            for (a, b) in inc.3.iter_mut().zip(sketch.iter()) {
                *a += b;
            }
            edges.push((
                rank[e.client],
                rank[e.server],
                EdgeView {
                    client: client.clone(),
                    server: server.clone(),
                    conn: e.conn,
                    protocol: e.protocol.clone(),
                    first_seen_ns: e.first_seen_ns,
                    last_seen_ns: e.last_seen_ns,
                    rate: requests / window_s,
                    error_rate,
                    client_only_error_rate,
                    p50_s,
                    p90_s,
                    p99_s,
                    health,
                    reason,
                    slowest,
                },
            ));
        }
        let nodes: Vec<(u32, NodeView)> = self
            .nodes
            .iter()
            .zip(incoming)
            .enumerate()
            .map(|(i, (n, inc))| {
                let name = &n.name;
                let entry = catalog.service(name);
                let (requests, errors, healths, sketch) =
                    *inc.unwrap_or_else(|| Box::new((0.0, 0.0, Vec::new(), [0; SKETCH_BUCKETS])));
                let error_rate = if requests > 0.0 { errors / requests } else { 0.0 };
                let health = Self::node_health(catalog, name, (requests, errors, &healths, &sketch));
                let mut facts = n.facts.clone();
                if let Some(c) = entry {
                    if facts.owner.is_empty() {
                        facts.owner = c.owner.clone();
                    }
                }
                (
                    rank[i],
                    NodeView {
                        name: name.clone(),
                        kind: n.kind,
                        facts,
                        first_seen_ns: n.first_seen_ns,
                        last_seen_ns: n.last_seen_ns,
                        last_deploy_ns: n.last_deploy_ns,
                        health,
                        rate: requests / window_s,
                        error_rate,
                        tier: entry.map(|c| c.tier.clone()).unwrap_or_default(),
                    },
                )
            })
            .collect();
        // Names are unique: no two keys are equal. The keys are sorted, not
        // the views, which are large to move.
        let mut order: Vec<(u64, u32)> =
            edges.iter().enumerate().map(|(i, e)| ((e.0 as u64) << 32 | e.1 as u64, i as u32)).collect();
        order.sort_unstable();
        let mut edges: Vec<Option<EdgeView>> = edges.into_iter().map(|e| Some(e.2)).collect();
        let edges = order.iter().filter_map(|&(_, i)| edges[i as usize].take()).collect();
        let mut placed: Vec<Option<NodeView>> = vec![None; nodes.len()];
        for (r, n) in nodes {
            placed[r as usize] = Some(n);
        }
        let nodes = placed.into_iter().flatten().collect();
        View { at_ns: now_ns, window_s, nodes, edges }
    }
}
