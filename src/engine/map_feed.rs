//! Feeding the live map from completed edges, and the map's queries.

use super::*;
use crate::map::Catalog;
use crate::map::history::Snapshot;
use std::borrow::Cow;

/// The live map and what keeps feeding it cheap.
#[derive(Debug)]
pub(super) struct GraphState {
    pub(super) graph: Graph,
    pub(super) history: History,
    /// Edge indexes by id pair, valid while `generation` matches the graph's
    /// and the interner has not been compacted.
    pub(super) cache: EdgeCache,
    pub(super) generation: u64,
    /// The facts last reported per service id, with the raw attribute values
    /// they came from, so unchanged ones cost a comparison of bytes.
    pub(super) facts: HashMap<u32, KnownFacts>,
    /// Scratch for a resource's raw fact values.
    pub(super) raw: Vec<u8>,
}

impl GraphState {
    /// Forgets cached edge indexes and facts once the graph has moved its
    /// nodes and edges (idle removal, or room made for new ones), so a
    /// service that comes back reports its facts again.
    pub(super) fn sync_generation(&mut self) {
        if self.generation != self.graph.generation() {
            self.cache.clear();
            self.facts.clear();
            self.generation = self.graph.generation();
        }
    }
}

/// Edge indexes by (client id, server id) as one word: a small direct-mapped
/// table in front of a map, so the busy edges cost a multiply and a compare
/// instead of a hash lookup.
#[derive(Debug)]
pub(super) struct EdgeCache {
    pub(super) recent: Box<[(u64, u32)]>,
    pub(super) all: HashMap<u64, usize>,
}

impl EdgeCache {
    const RECENT_BITS: u32 = 10;
    /// Never a key: interned ids stay below `u32::MAX`.
    const VACANT: (u64, u32) = (u64::MAX, 0);

    pub(super) fn new() -> EdgeCache {
        EdgeCache { recent: vec![Self::VACANT; 1 << Self::RECENT_BITS].into_boxed_slice(), all: HashMap::new() }
    }

    pub(super) fn key(client: u32, server: u32) -> u64 {
        (client as u64) << 32 | server as u64
    }

    #[inline]
    pub(super) fn slot(key: u64) -> usize {
        (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - Self::RECENT_BITS)) as usize
    }

    #[inline]
    pub(super) fn get(&mut self, key: u64) -> Option<usize> {
        let slot = Self::slot(key);
        let (k, i) = self.recent[slot];
        if k == key {
            return Some(i as usize);
        }
        let &i = self.all.get(&key)?;
        if let Ok(i) = u32::try_from(i) {
            self.recent[slot] = (key, i);
        }
        Some(i)
    }

    pub(super) fn insert(&mut self, key: u64, i: usize) {
        self.all.insert(key, i);
        if let Ok(i) = u32::try_from(i) {
            self.recent[Self::slot(key)] = (key, i);
        }
    }

    pub(super) fn clear(&mut self) {
        self.recent.fill(Self::VACANT);
        self.all.clear();
    }
}

#[derive(Debug, Default)]
pub(super) struct KnownFacts {
    pub(super) raw: Vec<u8>,
    pub(super) facts: Facts,
}

/// Fact values as bytes to compare with the last ones seen: strings as they
/// are, other values as their label.
pub(super) fn raw_facts(values: &[Option<AttrValue<'_>>; 6], es6: bool, out: &mut Vec<u8>) {
    out.clear();
    for v in values {
        match v {
            None => out.push(0),
            Some(AttrValue::Str(b)) => {
                out.push(1);
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                out.extend_from_slice(b);
            }
            Some(v) => {
                let s = v.to_label(es6);
                out.push(2);
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
}

impl Engine {
    /// Adds a call's edges and resource facts to the map. Edge indexes are
    /// cached by id pair, so a known edge costs no name lookup.
    pub(super) fn feed_graph(&self, g: &mut GraphState, events: &Events, facts: &[ResourceFacts<'_>], now_ns: u64) {
        let names = self.interner.read().unwrap_or_else(|p| p.into_inner());
        g.sync_generation();
        for f in facts {
            let mut raw = std::mem::take(&mut g.raw);
            raw_facts(&f.values, self.es6(), &mut raw);
            let known = g.facts.get_mut(&f.service);
            if known.as_ref().is_some_and(|k| k.raw == raw) {
                g.raw = raw;
                continue;
            }
            // The strings as label values: converted, truncated, the first
            // environment spelling that is not empty.
            let max = self.config.max_label_value_length;
            let s = |v: Option<AttrValue<'_>>| {
                v.map(|v| crate::series::intern::truncate(&self.label(&v), max).to_string()).unwrap_or_default()
            };
            let mut environment = s(f.values[1]);
            if environment.is_empty() {
                environment = s(f.values[2]);
            }
            let new = Facts {
                version: s(f.values[0]),
                environment,
                namespace: s(f.values[3]),
                k8s_namespace: s(f.values[4]),
                owner: s(f.values[5]),
            };
            let report = known.as_ref().is_none_or(|k| k.facts != new);
            match known {
                Some(k) => {
                    std::mem::swap(&mut k.raw, &mut raw);
                    g.raw = raw;
                    if report {
                        k.facts = new.clone();
                    }
                }
                None => {
                    // The facts last seen per service are a cache: cleared
                    // rather than grown past the number of nodes the map may
                    // hold. Only a service it does not know yet clears it, so
                    // a map at its cap with every service known keeps it.
                    if g.facts.len() >= self.config.max_graph_nodes {
                        g.facts.clear();
                    }
                    g.facts.insert(f.service, KnownFacts { raw, facts: new.clone() });
                }
            }
            if report {
                g.graph.report_service(names.get(f.service), new, now_ns);
                g.sync_generation();
            }
        }
        let tick = g.graph.tick(now_ns);
        for e in events.edges.iter().chain(&events.entries) {
            let key = EdgeCache::key(e.client, e.server);
            let i = match g.cache.get(key) {
                Some(i) => i,
                None => {
                    let o = Observation {
                        client: names.get(e.client),
                        server: names.get(e.server),
                        conn: e.conn,
                        protocol: names.get(e.protocol),
                        count: e.multiplier,
                        errors: 0.0,
                        latency_s: 0.0,
                        virtual_client: e.inferred == Virtual::Client,
                        virtual_server: e.inferred == Virtual::Server,
                    };
                    let Some(i) = g.graph.edge_index(&o, now_ns) else { continue };
                    // If room was made, cached indexes moved, and a service
                    // whose node went must report its facts again.
                    g.sync_generation();
                    g.cache.insert(key, i);
                    i
                }
            };
            let sample = Sample {
                conn: e.conn,
                count: e.multiplier,
                errors: if e.failed { e.multiplier } else { 0.0 },
                client_only_errors: if e.client_only_failure { e.multiplier } else { 0.0 },
                // The server's view, except where the server was inferred.
                latency_s: if e.inferred == Virtual::Server { e.client_s } else { e.server_s },
                trace_id: e.trace_id,
            };
            g.graph.add(i, &sample, || names.get(e.protocol), tick);
        }
    }

    /// Adds edges observed elsewhere (network flows, gateway logs): JSON
    /// lines of `{"client", "server", "count", "errors", "latency_seconds",
    /// "connection_type", "protocol"}`. The whole input is checked before any
    /// of it is applied. Returns the number of edges added.
    pub fn observe_edges(&self, jsonl: &[u8], now_ns: u64) -> Result<usize, Error> {
        let Some(g) = &self.graph else {
            return Err(Error::Argument("the service map is disabled (config key `graph`)".into()));
        };
        let parsed = crate::map::parse_edge_lines(jsonl)?;
        let mut g = lock(g);
        for p in &parsed {
            g.graph.observe(&p.observation(), now_ns);
        }
        Ok(parsed.len())
    }

    /// The incident answer for `service` at `now_ns` (None when the map is off).
    pub fn impact(&self, service: &str, now_ns: u64) -> Option<map::impact::Impact> {
        let g = lock(self.graph.as_ref()?);
        let view = g.graph.view_with(now_ns, &self.config.catalog, false);
        Some(map::impact::impact(&view, &g.history, &self.config.catalog, service))
    }

    /// The service map at `now_ns`, with health.
    pub fn graph_view(&self, now_ns: u64) -> Option<View> {
        self.graph.as_ref().map(|g| lock(g).graph.view(now_ns, &self.config.catalog))
    }

    /// Answers a query given as JSON (see [`map::query::answer`]) over the
    /// live map.
    pub fn query(&self, request: &[u8], now_ns: u64) -> Result<serde_json::Value, Error> {
        let Some(g) = &self.graph else {
            return Err(Error::Argument("the service map is disabled (config key `graph`)".into()));
        };
        let live = Live { state: lock(g), catalog: &self.config.catalog };
        map::query::answer(&live, request, now_ns)
    }
}

/// The live map as a query source: the graph and its history, locked for
/// the query.
struct Live<'a> {
    state: MutexGuard<'a, GraphState>,
    catalog: &'a Catalog,
}

impl map::query::Source for Live<'_> {
    fn view(&self, at_ns: u64, reasons: bool) -> Result<View, Error> {
        Ok(self.state.graph.view_with(at_ns, self.catalog, reasons))
    }

    fn history(&self, _at_ns: u64) -> Result<Cow<'_, History>, Error> {
        Ok(Cow::Borrowed(&self.state.history))
    }

    fn snapshot_at(&self, at_ns: u64) -> Result<Option<Snapshot>, Error> {
        Ok(self.state.history.at(at_ns).cloned())
    }

    fn snapshot_times(&self, _at_ns: u64) -> Result<Vec<u64>, Error> {
        Ok(self.state.history.times())
    }

    fn catalog(&self) -> &Catalog {
        self.catalog
    }
}
