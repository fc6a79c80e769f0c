//! The live service map: nodes and edges with request rate, error rate and
//! latency percentiles over a sliding window, resource facts on nodes, and
//! first/last seen times. It is fed by the same completed edges as the
//! metrics (and by edges observed elsewhere), and answers the incident
//! queries in [`crate::query`].

use crate::catalog::Catalog;
use crate::edge::ConnType;
use std::collections::HashMap;
use std::time::Duration;

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeKind {
    /// An instrumented service (it reported spans).
    Service,
    /// A database, named from a client span's database attributes.
    Database,
    /// A messaging system reached by a producer with no consumer in view.
    Queue,
    /// An uninstrumented peer named by a peer attribute (or `unknown`).
    External,
    /// The virtual client of root server spans.
    User,
}

impl NodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Service => "service",
            NodeKind::Database => "database",
            NodeKind::Queue => "queue",
            NodeKind::External => "external",
            NodeKind::User => "user",
        }
    }

    /// Instrumented evidence wins over inferred kinds.
    fn merge(self, other: NodeKind) -> NodeKind {
        if self == NodeKind::Service || other == NodeKind::Service { NodeKind::Service } else { self.min(other) }
    }
}

/// Resource facts reported for a service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub version: String,
    pub environment: String,
    pub namespace: String,
    pub k8s_namespace: String,
    pub owner: String,
}

/// Latency sketch: log-spaced buckets from 100 µs to about 127 s by a factor
/// of 1.25. A percentile is reported as the upper bound of its bucket, so it
/// is never under-reported and at most 25 % high.
const SKETCH_BUCKETS: usize = 64;
const SKETCH_MIN: f64 = 1e-4;
const SKETCH_FACTOR: f64 = 1.25;

/// Upper bounds of the sketch buckets, computed once.
static SKETCH_BOUNDS: std::sync::LazyLock<[f64; SKETCH_BUCKETS]> =
    std::sync::LazyLock::new(|| std::array::from_fn(|i| SKETCH_MIN * SKETCH_FACTOR.powi(i as i32)));

#[cfg(test)]
fn sketch_index(v: f64) -> usize {
    sketch_index_in(&SKETCH_BOUNDS, v)
}

/// Sub-intervals per octave in [`SKETCH_START`]: the top three mantissa bits.
const SKETCH_SUB_BITS: u32 = 3;
/// Octaves from `SKETCH_MIN` up to past the last bound (1.25^63 < 2^21).
const SKETCH_OCTAVES: usize = 21;

/// For each eighth of an octave above `SKETCH_MIN` (`v / SKETCH_MIN` read by
/// its exponent and top three mantissa bits), the first bucket whose bound
/// is at or above the sub-interval's start. A bucket is wider than an eighth
/// of an octave, so at most one bound falls inside a sub-interval and one
/// comparison settles the bucket.
static SKETCH_START: std::sync::LazyLock<[u8; SKETCH_OCTAVES << SKETCH_SUB_BITS]> = std::sync::LazyLock::new(|| {
    std::array::from_fn(|k| {
        let octave = (k >> SKETCH_SUB_BITS) as i32;
        let sub = (k & ((1 << SKETCH_SUB_BITS) - 1)) as f64;
        let start = SKETCH_MIN * 2f64.powi(octave) * (1.0 + sub / (1 << SKETCH_SUB_BITS) as f64);
        SKETCH_BOUNDS.partition_point(|&b| b < start).min(SKETCH_BUCKETS - 1) as u8
    })
});

/// The bucket holding `v`: the first whose upper bound in `b` (the sketch
/// bounds) is at least `v`. A table lookup on the float's bits lands on the
/// bucket or the one before it; the bounds settle it. `v * 1e4` may round
/// the other way than the bounds do, hence the step down as well.
#[inline]
fn sketch_index_in(b: &[f64; SKETCH_BUCKETS], v: f64) -> usize {
    // Also NaN and negatives, as a search of the bounds would.
    if v.is_nan() || v <= b[0] {
        return 0;
    }
    if v > b[SKETCH_BUCKETS - 1] {
        return SKETCH_BUCKETS - 1;
    }
    // v / SKETCH_MIN is in (1, 2^21): exponent 0..=20 above the bias.
    let bits = (v * (1.0 / SKETCH_MIN)).to_bits();
    let k = ((bits >> (52 - SKETCH_SUB_BITS)) as usize).wrapping_sub(1023 << SKETCH_SUB_BITS);
    let table = &*SKETCH_START;
    let mut i = table[k.min(table.len() - 1)] as usize;
    if i > 0 && b[i - 1] >= v {
        i -= 1;
    }
    while b[i] < v {
        i += 1;
    }
    i
}

fn sketch_upper(i: usize) -> f64 {
    SKETCH_BOUNDS[i]
}

/// One time slot of an edge's window.
#[derive(Debug, Clone)]
struct Slot {
    index: u64,
    requests: f64,
    errors: f64,
    latency: [u32; SKETCH_BUCKETS],
}

impl Slot {
    fn empty(index: u64) -> Slot {
        Slot { index, requests: 0.0, errors: 0.0, latency: [0; SKETCH_BUCKETS] }
    }
}

/// Window settings.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub length: Duration,
    pub slots: usize,
}

impl Window {
    fn slot_ns(&self) -> u64 {
        (self.length.as_nanos() as u64 / self.slots as u64).max(1)
    }
}

#[derive(Debug, Clone)]
struct EdgeState {
    client: usize,
    server: usize,
    conn: ConnType,
    protocol: String,
    first_seen_ns: u64,
    last_seen_ns: u64,
    total_requests: f64,
    total_errors: f64,
    slots: Vec<Slot>,
}

#[derive(Debug, Clone)]
struct NodeState {
    name: String,
    kind: NodeKind,
    facts: Facts,
    first_seen_ns: u64,
    last_seen_ns: u64,
    /// When the current `facts.version` was first seen.
    last_deploy_ns: Option<u64>,
}

/// One observation of an edge: a completed request, or an aggregate from
/// another source (`count` requests of which `errors` failed).
#[derive(Debug, Clone)]
pub struct Observation<'a> {
    pub client: &'a str,
    pub server: &'a str,
    pub conn: ConnType,
    pub protocol: &'a str,
    pub count: f64,
    pub errors: f64,
    /// Latency of each of the `count` requests (seconds), for the percentiles.
    pub latency_s: f64,
    /// The client side was inferred (root server span).
    pub virtual_client: bool,
    /// The server side was inferred (no server span).
    pub virtual_server: bool,
}

/// What the hot path adds to a known edge: [`Observation`] without the names.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub conn: ConnType,
    pub count: f64,
    pub errors: f64,
    pub latency_s: f64,
}

/// A time's window slot: its index since the epoch and its position in an
/// edge's ring of slots.
#[derive(Debug, Clone, Copy)]
pub struct Tick {
    now_ns: u64,
    index: u64,
    at: usize,
}

/// The live graph. Nodes and edges live in vectors and are found by name
/// through maps; callers on the hot path keep the edge index returned by
/// [`Graph::edge_index`] and use [`Graph::add`], valid while
/// [`Graph::generation`] is unchanged.
#[derive(Debug, Clone)]
pub struct Graph {
    window: Window,
    nodes: Vec<NodeState>,
    node_index: HashMap<String, usize>,
    edges: Vec<EdgeState>,
    edge_index: HashMap<(usize, usize), usize>,
    generation: u64,
    bounds: &'static [f64; SKETCH_BUCKETS],
    limits: Limits,
    /// Nodes and edges removed to make room for new ones (see [`Limits`]).
    pub evicted_nodes: u64,
    pub evicted_edges: u64,
}

/// How many nodes and edges the graph holds at most. A new node or edge that
/// finds its table full first makes room: the eighth of the table that
/// carried the fewest requests in the window (the least recently seen first
/// among equals) is removed, with the edges of every node removed. Traffic
/// that keeps coming outranks a flood of names seen once, so a flood cannot
/// lock real edges out; the removal is amortised over an eighth of the table.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_nodes: usize,
    pub max_edges: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_nodes: usize::MAX, max_edges: usize::MAX }
    }
}

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
    pub p50_s: Option<f64>,
    pub p90_s: Option<f64>,
    pub p99_s: Option<f64>,
    pub health: Health,
    /// Why the edge is not green, for people.
    pub reason: String,
}

/// Health against the SLOs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Health {
    /// No traffic in the window.
    Unknown,
    Green,
    Yellow,
    Red,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Green => "green",
            Health::Yellow => "yellow",
            Health::Red => "red",
        }
    }

    pub fn is_unhealthy(self) -> bool {
        matches!(self, Health::Yellow | Health::Red)
    }
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
    pub fn new(window: Window) -> Graph {
        Graph::with_limits(window, Limits::default())
    }

    pub fn with_limits(window: Window, limits: Limits) -> Graph {
        Graph {
            window,
            nodes: Vec::new(),
            node_index: HashMap::new(),
            edges: Vec::new(),
            edge_index: HashMap::new(),
            generation: 0,
            bounds: &SKETCH_BOUNDS,
            limits: Limits { max_nodes: limits.max_nodes.max(2), max_edges: limits.max_edges.max(1) },
            evicted_nodes: 0,
            evicted_edges: 0,
        }
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn edge_count(&self) -> usize {
        self.edges.len()
    }

    /// Changes whenever indexes returned by [`Graph::edge_index`] become invalid.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn node(&mut self, name: &str, kind: NodeKind, now_ns: u64) -> usize {
        if let Some(&i) = self.node_index.get(name) {
            let n = &mut self.nodes[i];
            n.kind = n.kind.merge(kind);
            n.last_seen_ns = n.last_seen_ns.max(now_ns);
            return i;
        }
        let i = self.nodes.len();
        self.nodes.push(NodeState {
            name: name.to_string(),
            kind,
            facts: Facts::default(),
            first_seen_ns: now_ns,
            last_seen_ns: now_ns,
            last_deploy_ns: None,
        });
        self.node_index.insert(name.to_string(), i);
        i
    }

    /// Records resource facts of an instrumented service.
    pub fn report_service(&mut self, name: &str, facts: Facts, now_ns: u64) {
        if name.is_empty() {
            return;
        }
        if self.nodes.len() >= self.limits.max_nodes && !self.node_index.contains_key(name) {
            self.make_room(1, 0, now_ns);
        }
        let i = self.node(name, NodeKind::Service, now_ns);
        let n = &mut self.nodes[i];
        // The first version seen is not a deploy we watched happen.
        if !facts.version.is_empty() && !n.facts.version.is_empty() && facts.version != n.facts.version {
            n.last_deploy_ns = Some(now_ns);
        }
        let keep = |new: String, old: &mut String| {
            if !new.is_empty() {
                *old = new;
            }
        };
        keep(facts.version, &mut n.facts.version);
        keep(facts.environment, &mut n.facts.environment);
        keep(facts.namespace, &mut n.facts.namespace);
        keep(facts.k8s_namespace, &mut n.facts.k8s_namespace);
        keep(facts.owner, &mut n.facts.owner);
    }

    /// Finds or creates the edge of an observation; None when a side is unnamed.
    pub fn edge_index(&mut self, o: &Observation<'_>, now_ns: u64) -> Option<usize> {
        if o.client.is_empty() || o.server.is_empty() {
            return None;
        }
        let client_kind = match (o.virtual_client, o.client == "user") {
            (true, true) => NodeKind::User,
            // A client named after a peer attribute (Tempo) is an external caller.
            (true, false) => NodeKind::External,
            _ => NodeKind::Service,
        };
        let server_kind = match (o.conn, o.virtual_server) {
            (ConnType::Database, _) => NodeKind::Database,
            (ConnType::MessagingSystem, true) => NodeKind::Queue,
            (_, true) => NodeKind::External,
            _ => NodeKind::Service,
        };
        // Near a cap, room is made before anything is added, so that the
        // indexes below stay valid.
        let Limits { max_nodes, max_edges } = self.limits;
        if self.edges.len() >= max_edges || self.nodes.len() + 2 > max_nodes {
            let known = |n: &str| self.node_index.get(n).copied();
            let (kc, ks) = (known(o.client), known(o.server));
            let new_edge = match (kc, ks) {
                (Some(c), Some(s)) => !self.edge_index.contains_key(&(c, s)),
                _ => true,
            };
            if new_edge {
                let new_nodes = usize::from(kc.is_none()) + usize::from(ks.is_none() && o.server != o.client);
                self.make_room(new_nodes, 1, now_ns);
            }
        }
        let c = self.node(o.client, client_kind, now_ns);
        let s = self.node(o.server, server_kind, now_ns);
        if let Some(&i) = self.edge_index.get(&(c, s)) {
            return Some(i);
        }
        let i = self.edges.len();
        self.edges.push(EdgeState {
            client: c,
            server: s,
            conn: o.conn,
            protocol: String::new(),
            first_seen_ns: now_ns,
            last_seen_ns: now_ns,
            total_requests: 0.0,
            total_errors: 0.0,
            slots: Vec::new(),
        });
        self.edge_index.insert((c, s), i);
        Some(i)
    }

    /// Adds an observation at `now_ns`.
    pub fn observe(&mut self, o: &Observation<'_>, now_ns: u64) {
        if let Some(i) = self.edge_index(o, now_ns) {
            self.observe_at(i, o, now_ns);
        }
    }

    /// Where samples taken at `now_ns` land: found once for a batch.
    pub fn tick(&self, now_ns: u64) -> Tick {
        let index = now_ns / self.window.slot_ns();
        Tick { now_ns, index, at: (index % self.window.slots as u64) as usize }
    }

    /// Adds an observation to a known edge (the names in `o` are not read).
    pub fn observe_at(&mut self, i: usize, o: &Observation<'_>, now_ns: u64) {
        let s = Sample { conn: o.conn, count: o.count, errors: o.errors, latency_s: o.latency_s };
        self.add(i, &s, || o.protocol, self.tick(now_ns));
    }

    /// Adds a sample to a known edge. `protocol` is asked for only while the
    /// edge has none, so the hot path resolves no name for a known edge.
    #[inline(always)]
    pub fn add<'p>(&mut self, i: usize, s: &Sample, protocol: impl FnOnce() -> &'p str, t: Tick) {
        let Tick { now_ns, index, at } = t;
        let slots = self.window.slots;
        let e = &mut self.edges[i];
        if s.conn != ConnType::VirtualNode || e.conn == ConnType::Plain {
            e.conn = s.conn;
        }
        if e.protocol.is_empty() {
            let p = protocol();
            if !p.is_empty() {
                e.protocol = p.to_string();
            }
        }
        // An edge seen at `now_ns` or later already brought its nodes that far.
        let nodes_seen = e.last_seen_ns >= now_ns;
        e.last_seen_ns = e.last_seen_ns.max(now_ns);
        e.total_requests += s.count;
        e.total_errors += s.errors;
        if e.slots.len() < slots {
            e.slots.resize_with(slots, || Slot::empty(u64::MAX));
        }
        let slot = &mut e.slots[at];
        if slot.index != index {
            *slot = Slot::empty(index);
        }
        slot.requests += s.count;
        slot.errors += s.errors;
        let n = if s.count == 1.0 { 1 } else { s.count.round().max(1.0) as u32 };
        slot.latency[sketch_index_in(self.bounds, s.latency_s)] += n;
        if !nodes_seen {
            let (c, s) = (e.client, e.server);
            for n in [c, s] {
                let n = &mut self.nodes[n];
                n.last_seen_ns = n.last_seen_ns.max(now_ns);
            }
        }
    }

    /// Computes the graph as it stands at `now_ns`, with health from `catalog`.
    pub fn view(&self, now_ns: u64, catalog: &Catalog) -> View {
        self.view_with(now_ns, catalog, true)
    }

    /// The slot indexes a view at `now_ns` sums: oldest and newest.
    fn window_at(&self, now_ns: u64) -> (u64, u64) {
        let newest = now_ns / self.window.slot_ns();
        (newest.saturating_sub(self.window.slots as u64 - 1), newest)
    }

    fn window_s(&self) -> f64 {
        self.window.length.as_secs_f64().max(1e-9)
    }

    /// An edge's requests, errors and latency sketch over the window.
    fn edge_totals(e: &EdgeState, (oldest, newest): (u64, u64)) -> (f64, f64, [u32; SKETCH_BUCKETS]) {
        let mut requests = 0.0;
        let mut errors = 0.0;
        let mut sketch = [0u32; SKETCH_BUCKETS];
        for s in e.slots.iter().filter(|s| s.index >= oldest && s.index <= newest) {
            requests += s.requests;
            errors += s.errors;
            for (a, b) in sketch.iter_mut().zip(s.latency.iter()) {
                *a += b;
            }
        }
        (requests, errors, sketch)
    }

    /// A node's health from its incoming traffic: requests, errors, the
    /// health of each incoming edge, the merged latency sketch.
    fn node_health(
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
            let (requests, errors, sketch) = Self::edge_totals(e, window);
            let error_rate = if requests > 0.0 { errors / requests } else { 0.0 };
            let slo = catalog.edge_slo(client, server);
            let [p50_s, p90_s, p99_s, at_slo] = quantiles(&sketch, [0.5, 0.9, 0.99, slo.latency_percentile]);
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
                    p50_s,
                    p90_s,
                    p99_s,
                    health,
                    reason,
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

    /// Forgets edges not seen for `idle`, and nodes with no edge left that
    /// were not seen either. Invalidates edge indexes when anything goes.
    pub fn remove_idle(&mut self, now_ns: u64, idle: Duration) {
        let idle = idle.as_nanos().min(u64::MAX as u128) as u64;
        let live = |t: u64| t.saturating_add(idle) >= now_ns;
        let keep_edge: Vec<bool> = self.edges.iter().map(|e| live(e.last_seen_ns)).collect();
        let keep_node: Vec<bool> = self.nodes.iter().map(|n| live(n.last_seen_ns)).collect();
        self.retain(&keep_edge, &keep_node);
    }

    /// Makes room for `nodes` new nodes and `edges` new edges within the
    /// [`Limits`], removing the least used eighth of a full table.
    fn make_room(&mut self, nodes: usize, edges: usize, now_ns: u64) {
        let Limits { max_nodes, max_edges } = self.limits;
        let edges_over = self.edges.len() + edges > max_edges;
        let nodes_over = self.nodes.len() + nodes > max_nodes;
        if !edges_over && !nodes_over {
            return;
        }
        let window = self.window_at(now_ns);
        // A score per edge and per node: requests in the window, then when last seen.
        let edge_score: Vec<(f64, u64)> =
            self.edges.iter().map(|e| (Self::window_requests(e, window), e.last_seen_ns)).collect();
        let by_score = |scores: &[(f64, u64)], n: usize| -> Vec<usize> {
            let mut order: Vec<usize> = (0..scores.len()).collect();
            let cmp =
                |a: &usize, b: &usize| scores[*a].0.total_cmp(&scores[*b].0).then(scores[*a].1.cmp(&scores[*b].1));
            if n < order.len() {
                order.select_nth_unstable_by(n, cmp);
                order.truncate(n);
            }
            order
        };
        let mut keep_edge = vec![true; self.edges.len()];
        if edges_over {
            let target = (max_edges - max_edges / 8).min(max_edges.saturating_sub(edges));
            for i in by_score(&edge_score, self.edges.len().saturating_sub(target)) {
                keep_edge[i] = false;
            }
        }
        let mut keep_node = vec![true; self.nodes.len()];
        if nodes_over {
            let mut node_score: Vec<(f64, u64)> = self.nodes.iter().map(|n| (0.0, n.last_seen_ns)).collect();
            for (e, &(requests, _)) in self.edges.iter().zip(&edge_score) {
                node_score[e.client].0 += requests;
                node_score[e.server].0 += requests;
            }
            let target = (max_nodes - max_nodes / 8).min(max_nodes.saturating_sub(nodes));
            for i in by_score(&node_score, self.nodes.len().saturating_sub(target)) {
                keep_node[i] = false;
            }
            for (k, e) in keep_edge.iter_mut().zip(&self.edges) {
                *k &= keep_node[e.client] && keep_node[e.server];
            }
        } else {
            // A node goes with its last edge; one that never had an edge
            // (a service known by its facts alone) stays.
            let (mut had, mut has) = (vec![false; self.nodes.len()], vec![false; self.nodes.len()]);
            for (e, &k) in self.edges.iter().zip(&keep_edge) {
                for n in [e.client, e.server] {
                    had[n] = true;
                    has[n] |= k;
                }
            }
            keep_node = has.iter().zip(&had).map(|(&has, &had)| has || !had).collect();
        }
        let (nodes_before, edges_before) = (self.nodes.len(), self.edges.len());
        self.retain(&keep_edge, &keep_node);
        self.evicted_nodes += (nodes_before - self.nodes.len()) as u64;
        self.evicted_edges += (edges_before - self.edges.len()) as u64;
    }

    /// Requests an edge carried in the window `(oldest, newest)`.
    fn window_requests(e: &EdgeState, (oldest, newest): (u64, u64)) -> f64 {
        e.slots.iter().filter(|s| s.index >= oldest && s.index <= newest).map(|s| s.requests).sum()
    }

    /// Keeps the edges marked in `keep_edge`, and the nodes marked in
    /// `keep_node` or used by a kept edge. Invalidates edge indexes when
    /// anything goes.
    fn retain(&mut self, keep_edge: &[bool], keep_node: &[bool]) {
        let before = (self.nodes.len(), self.edges.len());
        let mut k = keep_edge.iter();
        self.edges.retain(|_| *k.next().expect("one flag per edge"));
        let mut used = keep_node.to_vec();
        for e in &self.edges {
            used[e.client] = true;
            used[e.server] = true;
        }
        let mut remap = vec![usize::MAX; self.nodes.len()];
        let mut kept = Vec::with_capacity(self.nodes.len());
        for (i, n) in std::mem::take(&mut self.nodes).into_iter().enumerate() {
            if used[i] {
                remap[i] = kept.len();
                kept.push(n);
            }
        }
        self.nodes = kept;
        if before == (self.nodes.len(), self.edges.len()) {
            return;
        }
        for e in &mut self.edges {
            e.client = remap[e.client];
            e.server = remap[e.server];
        }
        self.node_index = self.nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
        self.edge_index = self.edges.iter().enumerate().map(|(i, e)| ((e.client, e.server), i)).collect();
        self.generation += 1;
    }
}

/// Several quantiles of a sketch in one pass, each as [`quantile`] gives it.
fn quantiles<const N: usize>(sketch: &[u32; SKETCH_BUCKETS], qs: [f64; N]) -> [Option<f64>; N] {
    let total: u64 = sketch.iter().map(|&c| c as u64).sum();
    if total == 0 {
        return [None; N];
    }
    let ranks = qs.map(|q| (q * total as f64).ceil().max(1.0) as u64);
    let mut out = [Some(sketch_upper(SKETCH_BUCKETS - 1)); N];
    let mut found = [false; N];
    let mut seen = 0u64;
    for (i, &c) in sketch.iter().enumerate() {
        if c == 0 {
            continue;
        }
        seen += c as u64;
        for k in 0..N {
            if !found[k] && seen >= ranks[k] {
                found[k] = true;
                out[k] = Some(sketch_upper(i));
            }
        }
        if found.iter().all(|&f| f) {
            break;
        }
    }
    out
}

/// The `q` quantile of a sketch: the upper bound of the bucket holding it.
fn quantile(sketch: &[u32; SKETCH_BUCKETS], q: f64) -> Option<f64> {
    let total: u64 = sketch.iter().map(|&c| c as u64).sum();
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0u64;
    for (i, &c) in sketch.iter().enumerate() {
        seen += c as u64;
        if seen >= rank {
            return Some(sketch_upper(i));
        }
    }
    Some(sketch_upper(SKETCH_BUCKETS - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs<'a>(c: &'a str, s: &'a str, latency: f64, errors: f64) -> Observation<'a> {
        Observation {
            client: c,
            server: s,
            conn: ConnType::Plain,
            protocol: "http",
            count: 1.0,
            errors,
            latency_s: latency,
            virtual_client: false,
            virtual_server: false,
        }
    }

    const W: Window = Window { length: Duration::from_secs(300), slots: 30 };
    const SEC: u64 = 1_000_000_000;

    #[test]
    fn a_full_map_removes_its_least_used_eighth_and_keeps_steady_traffic() {
        let mut g = Graph::with_limits(W, Limits { max_nodes: 1000, max_edges: 16 });
        g.report_service("lonely", Facts::default(), SEC);
        let mut steady = obs("web", "api", 0.1, 0.0);
        steady.count = 50.0;
        g.observe(&steady, SEC);
        let names: Vec<String> = (0..100).map(|i| format!("junk-{i}")).collect();
        for (i, n) in names.iter().enumerate() {
            g.observe(&obs(n, "sink", 0.1, 0.0), (2 + i as u64) * SEC);
        }
        assert!(g.edge_count() <= 16);
        assert_eq!(g.edge_count() as u64 + g.evicted_edges, 101);
        let view = g.view(102 * SEC, &Catalog::default());
        // The edge with steady traffic, the newest junk and the service known
        // by its facts alone stay; the oldest junk edges went with their nodes.
        assert!(view.edges.iter().any(|e| e.client == "web" && e.server == "api"));
        assert!(view.edges.iter().any(|e| e.client == "junk-99"));
        assert!(!view.edges.iter().any(|e| e.client == "junk-0"));
        assert!(view.node("lonely").is_some() && view.node("junk-0").is_none());
        assert_eq!(g.nodes.len() as u64 + g.evicted_nodes, 100 + 4);
    }

    #[test]
    fn a_full_node_table_removes_its_least_used_nodes_with_their_edges() {
        let mut g = Graph::with_limits(W, Limits { max_nodes: 8, max_edges: 1000 });
        let mut steady = obs("web", "api", 0.1, 0.0);
        steady.count = 50.0;
        g.observe(&steady, SEC);
        for i in 0..20 {
            g.report_service(&format!("svc-{i}"), Facts::default(), (2 + i) * SEC);
        }
        assert!(g.nodes.len() <= 8);
        assert_eq!(g.nodes.len() as u64 + g.evicted_nodes, 22);
        assert!(g.node_index.contains_key("web") && g.node_index.contains_key("api"));
        assert!(g.node_index.contains_key("svc-19") && !g.node_index.contains_key("svc-0"));
        assert_eq!(g.edge_count(), 1);
    }

    #[test]
    fn rate_errors_and_percentiles_over_the_window() {
        let mut g = Graph::new(W);
        for i in 0..100 {
            let latency = if i < 90 { 0.01 } else { 1.0 };
            g.observe(&obs("a", "b", latency, if i % 10 == 0 { 1.0 } else { 0.0 }), 1000 * SEC);
        }
        let v = g.view(1000 * SEC, &Catalog::default());
        let e = &v.edges[0];
        assert_eq!(e.rate, 100.0 / 300.0);
        assert_eq!(e.error_rate, 0.1);
        // 0.01 s falls in bucket 21, upper bound 1e-4 * 1.25^21 = 0.01088...
        assert_eq!(sketch_index(0.01), 21);
        assert_eq!(e.p50_s, Some(sketch_upper(21)));
        assert_eq!(e.p90_s, Some(sketch_upper(21)));
        assert_eq!(e.p99_s, Some(sketch_upper(sketch_index(1.0))));
        // After the window has passed, the edge has no traffic but is still known.
        let later = g.view(1000 * SEC + 301 * SEC, &Catalog::default());
        assert_eq!((later.edges[0].rate, later.edges[0].health), (0.0, Health::Unknown));
    }

    #[test]
    fn sketch_index_is_the_first_bound_at_or_above() {
        let search = |v: f64| SKETCH_BOUNDS.partition_point(|&b| b < v).min(SKETCH_BUCKETS - 1);
        let around = |v: f64| [v, f64::from_bits(v.to_bits() + 1), f64::from_bits(v.to_bits() - 1)];
        let mut v: f64 = 1e-7;
        while v < 1e4 {
            for x in around(v) {
                assert_eq!(sketch_index(x), search(x), "{x}");
            }
            v *= 1.0137;
        }
        for &b in SKETCH_BOUNDS.iter() {
            for x in around(b) {
                assert_eq!(sketch_index(x), search(x), "{x}");
            }
        }
        // Where the lookup table's sub-intervals start.
        for octave in 0..SKETCH_OCTAVES as i32 {
            for sub in 0..1 << SKETCH_SUB_BITS {
                let start = SKETCH_MIN * 2f64.powi(octave) * (1.0 + sub as f64 / (1 << SKETCH_SUB_BITS) as f64);
                for x in around(start) {
                    assert_eq!(sketch_index(x), search(x), "{x}");
                }
            }
        }
        for x in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, f64::MAX, f64::MIN_POSITIVE] {
            assert_eq!(sketch_index(x), search(x), "{x}");
        }
    }

    #[test]
    fn quantiles_in_one_pass_are_the_quantiles() {
        let mut sketch = [0u32; SKETCH_BUCKETS];
        let qs = [0.0, 0.5, 0.9, 0.99, 1.0, 0.25];
        assert_eq!(quantiles(&sketch, qs), qs.map(|q| quantile(&sketch, q)));
        for (i, c) in [(3, 5), (7, 1), (20, 90), (40, 3), (63, 1)] {
            sketch[i] = c;
            assert_eq!(quantiles(&sketch, qs), qs.map(|q| quantile(&sketch, q)));
        }
    }

    #[test]
    fn node_kinds_and_deploys() {
        let mut g = Graph::new(W);
        let mut db = obs("api", "postgres", 0.01, 0.0);
        db.conn = ConnType::Database;
        g.observe(&db, SEC);
        let mut user = obs("user", "api", 0.01, 0.0);
        user.virtual_client = true;
        g.observe(&user, SEC);
        g.report_service("api", Facts { version: "1.0".into(), ..Default::default() }, SEC);
        g.report_service("api", Facts { version: "1.0".into(), ..Default::default() }, 2 * SEC);
        g.report_service("api", Facts { version: "1.1".into(), owner: "team-a".into(), ..Default::default() }, 3 * SEC);
        let v = g.view(3 * SEC, &Catalog::default());
        assert_eq!(v.node("postgres").unwrap().kind, NodeKind::Database);
        assert_eq!(v.node("user").unwrap().kind, NodeKind::User);
        let api = v.node("api").unwrap();
        assert_eq!(
            (api.kind, api.last_deploy_ns, api.facts.owner.as_str()),
            (NodeKind::Service, Some(3 * SEC), "team-a")
        );
    }
}

/// An edge observed outside traces, parsed from one JSON line.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeLine {
    pub client: String,
    pub server: String,
    pub count: f64,
    pub errors: f64,
    pub latency_s: f64,
    pub conn: ConnType,
    pub protocol: String,
}

impl EdgeLine {
    pub fn observation(&self) -> Observation<'_> {
        Observation {
            client: &self.client,
            server: &self.server,
            conn: self.conn,
            protocol: &self.protocol,
            count: self.count,
            errors: self.errors,
            latency_s: self.latency_s,
            virtual_client: false,
            virtual_server: false,
        }
    }
}

/// Parses JSON lines of edges: `client` and `server` (required), `count`
/// (default 1), `errors` (default 0), `latency_seconds` (or `latency` as a
/// number of seconds or a duration string), `connection_type`, `protocol`.
/// Blank lines are skipped; any bad line fails the whole input, naming it.
pub fn parse_edge_lines(text: &[u8]) -> Result<Vec<EdgeLine>, crate::error::Error> {
    use crate::error::Error;
    use serde_json::Value;
    let text = std::str::from_utf8(text).map_err(|e| Error::Argument(format!("edge lines are not UTF-8: {e}")))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad = |m: String| Error::Argument(format!("edge line {}: {m}", n + 1));
        let v: Value = serde_json::from_str(line).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let name = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .ok_or_else(|| bad(format!("`{k}` must be a non-empty string")))
        };
        let number = |k: &str, default: f64| match v.get(k) {
            None | Some(Value::Null) => Ok(default),
            Some(x) => x
                .as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .ok_or_else(|| bad(format!("`{k}` must be a number >= 0"))),
        };
        let latency_s = match v.get("latency_seconds").or_else(|| v.get("latency")) {
            None | Some(Value::Null) => 0.0,
            Some(x) => crate::config::duration("latency", x).map_err(|e| bad(e.to_string()))?.as_secs_f64(),
        };
        let conn = match v.get("connection_type").and_then(Value::as_str).unwrap_or("") {
            "" => ConnType::Plain,
            "messaging_system" => ConnType::MessagingSystem,
            "database" => ConnType::Database,
            "virtual_node" => ConnType::VirtualNode,
            other => return Err(bad(format!("unknown connection_type {other:?}"))),
        };
        let count = number("count", 1.0)?;
        let errors = number("errors", 0.0)?;
        if errors > count {
            return Err(bad("`errors` is larger than `count`".into()));
        }
        out.push(EdgeLine {
            client: name("client")?,
            server: name("server")?,
            count,
            errors,
            latency_s,
            conn,
            protocol: v.get("protocol").and_then(Value::as_str).unwrap_or("").to_string(),
        });
    }
    Ok(out)
}
