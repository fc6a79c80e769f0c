//! The live service map: nodes and edges with request rate, error rate and
//! latency percentiles over a sliding window, resource facts on nodes, and
//! first/last seen times. It is fed by the same completed edges as the
//! metrics (and by edges observed elsewhere), and answers the incident
//! queries in [`crate::map::impact`].

use crate::config::catalog::{Catalog, Health};
use crate::series::ConnType;
use foldhash::{HashMap, HashMapExt};
use std::time::Duration;

mod sketch;
mod view;

use sketch::{SKETCH_BUCKETS, Sketch, quantile, quantiles};
pub use view::{EdgeView, NodeView, View};

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

/// One time slot of an edge's window.
#[derive(Debug, Clone)]
struct Slot {
    index: u64,
    requests: f64,
    errors: f64,
    /// Failures only the client side reported (see [`Sample::client_only_errors`]).
    client_only_errors: f64,
    latency: Sketch,
    /// The slot's slowest request that came with a trace ID (all zeros: none).
    slowest_s: f64,
    slowest_trace: [u8; 16],
}

impl Slot {
    fn empty(index: u64) -> Slot {
        Slot {
            index,
            requests: 0.0,
            errors: 0.0,
            client_only_errors: 0.0,
            latency: Sketch::default(),
            slowest_s: 0.0,
            slowest_trace: [0; 16],
        }
    }

    /// Starts the slot over for `index`, keeping its sketch's storage.
    fn reset(&mut self, index: u64) {
        let mut latency = std::mem::take(&mut self.latency);
        latency.clear();
        *self = Slot { latency, ..Slot::empty(index) };
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
    /// Of `errors`, those only the client side reported: the server's span
    /// was seen and said the request went well.
    pub client_only_errors: f64,
    pub latency_s: f64,
    /// The request's trace (all zeros: not known), so that the map can
    /// link an edge's slowest recent request.
    pub trace_id: [u8; 16],
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
        let s = Sample {
            conn: o.conn,
            count: o.count,
            errors: o.errors,
            client_only_errors: 0.0,
            latency_s: o.latency_s,
            trace_id: [0; 16],
        };
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
            slot.reset(index);
        }
        slot.requests += s.count;
        slot.errors += s.errors;
        slot.client_only_errors += s.client_only_errors;
        let n = if s.count == 1.0 { 1 } else { s.count.round().max(1.0) as u32 };
        slot.latency.add(s.latency_s, n);
        if s.trace_id != [0; 16] && (slot.slowest_trace == [0; 16] || s.latency_s > slot.slowest_s) {
            slot.slowest_s = s.latency_s;
            slot.slowest_trace = s.trace_id;
        }
        if !nodes_seen {
            let (c, s) = (e.client, e.server);
            for n in [c, s] {
                let n = &mut self.nodes[n];
                n.last_seen_ns = n.last_seen_ns.max(now_ns);
            }
        }
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
        // Past the edge cap, edges go and the nodes mostly stay: their
        // numbers, and so their index, change only if one of them went.
        if self.nodes.len() != before.0 {
            for e in &mut self.edges {
                e.client = remap[e.client];
                e.server = remap[e.server];
            }
            self.node_index = self.nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
        }
        self.edge_index = self.edges.iter().enumerate().map(|(i, e)| ((e.client, e.server), i)).collect();
        self.generation += 1;
    }
}

#[cfg(test)]
mod tests;
