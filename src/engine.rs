//! The engine: reads a batch, pairs its spans in the store, and counts the
//! edges that complete or expire.
//!
//! A call goes through four steps, each with the least locking it can:
//! 1. read the batch bytes ([`wire`]) — no lock; a bad batch stops here;
//! 2. turn the label strings it needs into ids — one interner read lock;
//! 3. pair, shard by shard — spans are routed by trace ID (so all spans of a
//!    trace meet in one shard, exactly as the collector's load-balancing
//!    exporter routes whole traces to one instance), one lock per shard,
//!    shards another call holds taken after the free ones;
//! 4. count the completed edges — one lock on the series table and one on
//!    the map; the map first when the series table is busy.

use crate::attributes::{AttrValue, KeySet};
use crate::config::{Config, DatabaseNaming};
use crate::edge::{ConnType, Expiry, ExpiryRules, HalfEdge, SideWrite, Virtual};
use crate::error::{DecodeError, Error};
use crate::export;
use crate::exposition;
use crate::graph::{Facts, Graph, Limits, Observation, Sample, View, Window};
use crate::history::{self, History};
use crate::intern::{EMPTY, Interner, Resolver};
use crate::otlp_metrics;
use crate::query;
use crate::series::{EdgeEvent, Entry, Events, SeriesTable, SideCount, SideKey};
use crate::store::{Key, Store};
use crate::wire::{self, Batch, SpanKind, SpanRec};
use hashbrown::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, TryLockError};

/// Output formats of [`Engine::render`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text exposition 0.0.4.
    Prometheus,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
    /// OTLP `ExportMetricsServiceRequest` protobuf, cumulative.
    OtlpMetrics,
    /// The self-report as JSON.
    StatsJson,
    /// The service map as JSON (schema `servicemap.graph/v1`).
    GraphJson,
    /// The service map as Graphviz DOT, coloured by health.
    GraphDot,
    /// The service map as a Mermaid flowchart.
    GraphMermaid,
}

/// What one accepted batch contained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsumeSummary {
    /// Spans that took part in pairing.
    pub spans: u64,
    /// Spans dropped because the store was full.
    pub dropped: u64,
}

/// One shard of the pairing store.
#[derive(Debug)]
struct Shard {
    store: Store<HalfEdge>,
    /// Dimension values per store slot: the client side's, then the server side's.
    dims: Vec<u32>,
    /// Producer key → slots of linked consumers waiting for that producer.
    pending: HashMap<Key, Vec<u32>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while a lock was held leaves consistent-enough state for counters;
    // keep serving rather than poisoning every later call.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The lock if no one holds it, as [`lock`] takes it.
fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// The live map and what keeps feeding it cheap.
#[derive(Debug)]
struct GraphState {
    graph: Graph,
    history: History,
    /// Edge indexes by id pair, valid while `generation` matches the graph's
    /// and the interner has not been compacted.
    cache: EdgeCache,
    generation: u64,
    /// The facts last reported per service id, with the raw attribute values
    /// they came from, so unchanged ones cost a comparison of bytes.
    facts: HashMap<u32, KnownFacts>,
    /// Scratch for a resource's raw fact values.
    raw: Vec<u8>,
}

impl GraphState {
    /// Forgets cached edge indexes and facts once the graph has moved its
    /// nodes and edges (idle removal, or room made for new ones), so a
    /// service that comes back reports its facts again.
    fn sync_generation(&mut self) {
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
struct EdgeCache {
    recent: Box<[(u64, u32)]>,
    all: HashMap<u64, usize>,
}

impl EdgeCache {
    const RECENT_BITS: u32 = 10;
    /// Never a key: interned ids stay below `u32::MAX`.
    const VACANT: (u64, u32) = (u64::MAX, 0);

    fn new() -> EdgeCache {
        EdgeCache { recent: vec![Self::VACANT; 1 << Self::RECENT_BITS].into_boxed_slice(), all: HashMap::new() }
    }

    fn key(client: u32, server: u32) -> u64 {
        (client as u64) << 32 | server as u64
    }

    #[inline]
    fn slot(key: u64) -> usize {
        (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - Self::RECENT_BITS)) as usize
    }

    #[inline]
    fn get(&mut self, key: u64) -> Option<usize> {
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

    fn insert(&mut self, key: u64, i: usize) {
        self.all.insert(key, i);
        if let Ok(i) = u32::try_from(i) {
            self.recent[Self::slot(key)] = (key, i);
        }
    }

    fn clear(&mut self) {
        self.recent.fill(Self::VACANT);
        self.all.clear();
    }
}

#[derive(Debug, Default)]
struct KnownFacts {
    raw: Vec<u8>,
    facts: Facts,
}

/// A resource's service id and its fact attributes as read: version, the
/// two spellings of the environment, namespace, Kubernetes namespace, owner.
/// They become strings only when they differ from what the map last saw.
#[derive(Debug, Clone, Copy)]
struct ResourceFacts<'a> {
    service: u32,
    values: [Option<AttrValue<'a>>; 6],
}

/// Fact values as bytes to compare with the last ones seen: strings as they
/// are, other values as their label.
fn raw_facts(values: &[Option<AttrValue<'_>>; 6], es6: bool, out: &mut Vec<u8>) {
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

/// The protocol values of one batch resolved so far, by their bytes.
#[derive(Default)]
struct ProtocolCache<'a> {
    values: Vec<(&'a [u8], u32)>,
    http: Option<u32>,
}

impl ProtocolCache<'_> {
    const MAX: usize = 16;
}

/// Counters for the self-report, updated once per call.
#[derive(Debug, Default)]
struct Counters {
    batches_accepted: AtomicU64,
    batches_rejected: AtomicU64,
    spans_received: AtomicU64,
    spans_ignored: AtomicU64,
    spans_unnamed: AtomicU64,
    spans_dropped: AtomicU64,
    edges_new: AtomicU64,
    edges_completed: AtomicU64,
    edges_virtual: AtomicU64,
    edges_expired: AtomicU64,
    expired_by_kind: [AtomicU64; 6],
    first_now_ns: AtomicU64,
    /// Attribute values cut at [`crate::attributes::MAX_VALUE_DEPTH`].
    values_truncated: AtomicU64,
}

/// Per-call tallies, added to [`Counters`] at the end of the call.
#[derive(Debug, Default)]
struct Tally {
    /// The shard's store size when this call took its lock.
    shard_base: usize,
    /// Waiting across all shards when this call took the shard's lock.
    waiting_base: usize,
    dropped: u64,
    edges_new: u64,
    completed: u64,
    virtual_edges: u64,
    expired: u64,
    expired_by_kind: [u64; 6],
}

/// A span ready to pair: its side, the key it pairs on, its dimension values.
#[derive(Debug, Clone, Copy)]
struct Prepared {
    side: SideWrite,
    key: Key,
    dims_at: u32,
    /// Pairs with the producer named by a span link, not with its parent.
    linked: bool,
}

/// The label names of the dimension values in a series key, raw (OTLP) and
/// sanitised for Prometheus.
#[derive(Debug, Clone)]
pub struct DimLabels {
    pub raw: Vec<String>,
    pub prometheus: Vec<String>,
}

/// A service-graph engine. Send + Sync: call it from many threads at once.
#[derive(Debug)]
pub struct Engine {
    config: Config,
    keys: KeySet,
    rules: ExpiryRules,
    user: u32,
    interner: RwLock<Interner>,
    /// Held for reading by every call that carries interned ids from one lock
    /// to the next (consume, expiry, snapshot), and for writing by interner
    /// compaction, which renumbers them: no call sees ids of both numberings.
    ids: RwLock<()>,
    shards: Box<[Mutex<Shard>]>,
    series: Mutex<SeriesTable>,
    dim_labels: DimLabels,
    counters: Counters,
    wait_ns: u64,
    /// Interner size (strings, bytes) at which the next compaction runs.
    compact_at: Mutex<(usize, usize)>,
    graph: Option<Mutex<GraphState>>,
    /// One side's dimension values when that side is absent (all empty).
    no_dims: Box<[u32]>,
    /// Half-edges waiting across all shards, as of the last finished shard
    /// visit. `max_items` applies to this total, as in both peers.
    waiting: AtomicUsize,
}

/// The interner is compacted once it holds this many strings more than
/// twice the live ones (and this many bytes more than twice the live bytes).
const COMPACT_SLACK_STRINGS: usize = 4096;
const COMPACT_SLACK_BYTES: usize = 4 << 20;

impl Engine {
    pub fn new(config: Config) -> Engine {
        let keys = KeySet::new(&config);
        let keys_dims = keys.dimensions.len();
        let mut interner = Interner::default();
        let user = interner.insert("user");
        let fallback = config.virtual_server_fallback.as_deref().map(|s| interner.insert(s)).unwrap_or(EMPTY);
        let rules = ExpiryRules::new(&config, fallback);
        // The engine enforces max_items over all shards (see `insert`).
        let shards = (0..config.shards)
            .map(|_| Mutex::new(Shard { store: Store::new(usize::MAX), dims: Vec::new(), pending: HashMap::new() }))
            .collect();
        let series = Mutex::new(SeriesTable::new(
            &config.histogram_buckets,
            config.enable_messaging_system_latency_histogram,
            config.max_series,
            config.max_unpaired_series,
        ));
        let dim_labels = dim_labels(&config);
        let graph = config.graph.then(|| {
            Mutex::new(GraphState {
                graph: Graph::with_limits(
                    Window { length: config.graph_window, slots: config.graph_window_slots },
                    Limits { max_nodes: config.max_graph_nodes, max_edges: config.max_graph_edges },
                ),
                history: History::with_max_entries(
                    config.snapshot_interval.as_nanos().min(u64::MAX as u128) as u64,
                    config.history_length,
                    config.max_history_entries,
                ),
                cache: EdgeCache::new(),
                generation: 0,
                facts: HashMap::new(),
                raw: Vec::new(),
            })
        });
        Engine {
            wait_ns: config.wait.as_nanos().min(u64::MAX as u128) as u64,
            config,
            keys,
            rules,
            user,
            interner: RwLock::new(interner),
            ids: RwLock::new(()),
            shards,
            series,
            dim_labels,
            counters: Counters::default(),
            compact_at: Mutex::new((COMPACT_SLACK_STRINGS, COMPACT_SLACK_BYTES)),
            graph,
            waiting: AtomicUsize::new(0),
            no_dims: vec![EMPTY; keys_dims].into(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The attribute keys the wire reader keeps, as
    /// `{"resource":[...],"span":[...]}`: a batch holding only the attributes
    /// with these keys (and the span fields pairing reads) gives the same
    /// result as the whole batch. Resources also need `service.name`.
    pub fn wanted_keys(&self) -> serde_json::Value {
        let span: Vec<&str> = self.keys.span_keys().collect();
        let mut resource: Vec<&str> = self.keys.keys().filter(|&k| k != "service.name").collect();
        resource.insert(0, "service.name");
        serde_json::json!({ "resource": resource, "span": span })
    }

    /// Dimension values per side of a waiting edge.
    fn dims_per_side(&self) -> usize {
        self.keys.dimensions.len()
    }

    /// Dimension label values per series key.
    fn dims_per_series(&self) -> usize {
        self.dim_labels.raw.len()
    }

    fn note_now(&self, now_ns: u64) {
        let _ = self.counters.first_now_ns.compare_exchange(0, now_ns.max(1), Relaxed, Relaxed);
    }

    /// Feeds one OTLP traces batch. A malformed batch is rejected whole:
    /// nothing from it is applied and it is counted.
    pub fn consume(&self, data: &[u8], now_ns: u64) -> Result<ConsumeSummary, Error> {
        let _ids = self.ids.read().unwrap_or_else(|p| p.into_inner());
        self.note_now(now_ns);
        let mut batch = Batch::default();
        let read = if data.len() > self.config.max_batch_bytes {
            Err(DecodeError {
                offset: 0,
                path: "ExportTraceServiceRequest",
                reason: "batch is larger than max_batch_bytes",
            })
        } else {
            wire::read_batch(data, &self.keys, &mut batch)
        };
        if let Err(e) = read {
            self.counters.batches_rejected.fetch_add(1, Relaxed);
            return Err(e.into());
        }
        let c = &self.counters;
        c.batches_accepted.fetch_add(1, Relaxed);
        c.spans_received.fetch_add(batch.spans.len() as u64 + batch.ignored_spans + batch.unnamed_spans, Relaxed);
        c.spans_ignored.fetch_add(batch.ignored_spans, Relaxed);
        c.spans_unnamed.fetch_add(batch.unnamed_spans, Relaxed);

        let mut dims = Vec::new();
        let mut facts = Vec::new();
        let prepared = self.prepare(&batch, &mut dims, &mut facts);

        // Route to shards: a counting sort of the prepared spans by shard.
        let n = self.shards.len();
        let mut starts = vec![0u32; n + 1];
        let shard_of = |p: &Prepared| shard_index(&p.key, n);
        for p in &prepared {
            starts[shard_of(p) + 1] += 1;
        }
        for i in 0..n {
            starts[i + 1] += starts[i];
        }
        let mut order = vec![0u32; prepared.len()];
        let mut fill = starts.clone();
        for (i, p) in prepared.iter().enumerate() {
            let s = shard_of(p);
            order[fill[s] as usize] = i as u32;
            fill[s] += 1;
        }

        let mut tally = Tally::default();
        // About one edge per two spans; sized once rather than grown.
        let mut events = Events::default();
        events.edges.reserve(prepared.len() / 2 + 16);
        events.dims.reserve((prepared.len() / 2 + 16) * self.dims_per_side() * 2);
        // A shard another call holds is taken after the others: calls from
        // several threads then overtake each other instead of queueing shard
        // by shard behind the first one.
        let mut busy = Vec::new();
        for s in 0..n {
            let (a, b) = (starts[s] as usize, starts[s + 1] as usize);
            if a == b {
                continue;
            }
            let Some(shard) = try_lock(&self.shards[s]) else {
                busy.push(s);
                continue;
            };
            self.pair_all(shard, &order[a..b], &prepared, &dims, now_ns, &mut tally, &mut events);
        }
        for s in busy {
            let (a, b) = (starts[s] as usize, starts[s + 1] as usize);
            self.pair_all(lock(&self.shards[s]), &order[a..b], &prepared, &dims, now_ns, &mut tally, &mut events);
        }
        self.count(&events, &facts, now_ns);
        self.add_tally(&tally);
        drop(_ids);
        // A flood of distinct names between two expiries must not grow the
        // interner: it is compacted as soon as it is due, not only on expiry.
        self.compact_interner_if_due();
        Ok(ConsumeSummary { spans: prepared.len() as u64, dropped: tally.dropped })
    }

    /// Step 3 for one shard's spans of a call, under its lock.
    #[allow(clippy::too_many_arguments)]
    fn pair_all(
        &self,
        mut shard: MutexGuard<'_, Shard>,
        order: &[u32],
        prepared: &[Prepared],
        dims: &[u32],
        now_ns: u64,
        tally: &mut Tally,
        events: &mut Events,
    ) {
        tally.shard_base = shard.store.len();
        tally.waiting_base = self.waiting.load(Relaxed);
        for &i in order {
            self.pair(&mut shard, &prepared[i as usize], dims, now_ns, tally, events);
        }
        self.settle_waiting(tally.shard_base, shard.store.len());
    }

    /// Step 2: resolves each pairing span's strings to ids.
    fn prepare<'a>(&self, batch: &Batch<'a>, dims: &mut Vec<u32>, facts: &mut Vec<ResourceFacts<'a>>) -> Vec<Prepared> {
        let mut out = Vec::with_capacity(batch.spans.len());
        let mut r = Resolver::new(&self.interner, self.config.max_label_value_length);
        let services: Vec<u32> =
            batch.resources.iter().map(|res| res.service.map(|v| r.value(&v, self.es6())).unwrap_or(EMPTY)).collect();
        if self.graph.is_some() {
            let ks = &self.keys;
            for (i, &service) in services.iter().enumerate().filter(|(_, s)| **s != EMPTY) {
                let v = |k: usize| batch.resource_value(i as u32, k);
                let values = [
                    v(ks.version),
                    v(ks.environment[0]),
                    v(ks.environment[1]),
                    v(ks.namespace),
                    v(ks.k8s_namespace),
                    v(ks.owner),
                ];
                facts.push(ResourceFacts { service, values });
            }
        }
        let mut protocols = ProtocolCache::default();
        let d = self.dims_per_side();
        for span in &batch.spans {
            let client_side = matches!(span.kind, SpanKind::Client | SpanKind::Producer);
            let dims_at = dims.len() as u32;
            for &k in &self.keys.dimensions {
                let v = self.lookup(batch, span, k);
                dims.push(v.map(|v| r.value(&v, self.es6())).unwrap_or(EMPTY));
            }
            debug_assert_eq!(dims.len() - dims_at as usize, d);
            let peer = if client_side || self.config.peer_attributes_on_server_spans {
                self.keys
                    .peer
                    .iter()
                    .find_map(|&k| batch.span_value(span, k))
                    .map(|v| r.value(&v, self.es6()))
                    .unwrap_or(EMPTY)
            } else {
                EMPTY
            };
            let database = if client_side { self.database_name(batch, span, &mut r) } else { None };
            let protocol =
                if self.graph.is_some() { self.protocol(batch, span, &mut r, &mut protocols) } else { EMPTY };
            let side = SideWrite {
                kind: span.kind,
                service: services[span.resource as usize],
                start_ns: span.start_ns,
                end_ns: span.end_ns,
                error: span.error,
                multiplier: self.multiplier(batch, span),
                peer,
                database,
                root: !client_side && !span.has_parent,
                protocol,
            };
            let links = batch.span_links(span);
            if self.config.span_links && span.kind == SpanKind::Consumer && !links.is_empty() {
                for l in links {
                    let key = Key { trace_id: l.trace_id, span_id: l.span_id };
                    out.push(Prepared { side: SideWrite { root: false, ..side }, key, dims_at, linked: true });
                }
                continue;
            }
            let span_id = if client_side { span.span_id } else { span.parent_span_id };
            out.push(Prepared { side, key: Key { trace_id: span.trace_id, span_id }, dims_at, linked: false });
        }
        if r.truncated > 0 {
            self.counters.values_truncated.fetch_add(r.truncated, Relaxed);
        }
        out
    }

    /// Resource first, then span, as both peers look up dimensions.
    fn lookup<'a>(&self, batch: &Batch<'a>, span: &SpanRec, k: usize) -> Option<AttrValue<'a>> {
        batch.resource_value(span.resource, k).or_else(|| batch.span_value(span, k))
    }

    /// The id of the database node's name if this client span is a database call.
    fn database_name(&self, batch: &Batch<'_>, span: &SpanRec, r: &mut Resolver<'_>) -> Option<u32> {
        let db = self.keys.database.iter().find_map(|&k| self.lookup(batch, span, k))?;
        if self.config.database_naming == DatabaseNaming::AttributeValue {
            return Some(r.value(&db, self.es6()));
        }
        let ks = &self.keys;
        if let Some(v) =
            self.lookup(batch, span, ks.peer_service).or_else(|| self.lookup(batch, span, ks.server_address))
        {
            return Some(r.value(&v, self.es6()));
        }
        if let Some(addr) = self.lookup(batch, span, ks.network_peer_address) {
            return Some(match self.lookup(batch, span, ks.network_peer_port) {
                Some(port) => r.id(&format!("{}:{}", self.label(&addr), self.label(&port))),
                None => r.value(&addr, self.es6()),
            });
        }
        Some(r.value(&db, self.es6()))
    }

    /// An attribute value as a label, in the preset's number format.
    /// A value nested past the limit is cut, and counted.
    fn label<'a>(&self, v: &AttrValue<'a>) -> std::borrow::Cow<'a, str> {
        if v.is_too_deep() {
            self.counters.values_truncated.fetch_add(1, Relaxed);
        }
        v.to_label(self.es6())
    }

    /// Whether doubles are written as contrib writes them (see [`AttrValue::to_label`]).
    fn es6(&self) -> bool {
        self.config.compat == crate::config::Compat::Contrib
    }

    /// The protocol an edge speaks, from the span's attributes. The few
    /// distinct values of a batch are resolved once each, by their bytes.
    fn protocol<'a>(
        &self,
        batch: &Batch<'a>,
        span: &SpanRec,
        r: &mut Resolver<'_>,
        cache: &mut ProtocolCache<'a>,
    ) -> u32 {
        let ks = &self.keys;
        if let Some(v) = (span.mask & ks.protocol_mask != 0)
            .then(|| ks.protocol.iter().find_map(|&k| batch.span_value(span, k)))
            .flatten()
        {
            let AttrValue::Str(b) = v else { return r.value(&v, self.es6()) };
            if let Some(&(_, id)) = cache.values.iter().find(|(k, _)| crate::attributes::bytes_eq(k, b)) {
                return id;
            }
            let id = r.value(&v, self.es6());
            if cache.values.len() < ProtocolCache::MAX {
                cache.values.push((b, id));
            }
            return id;
        }
        if ks.http.iter().any(|&k| batch.span_has(span, k)) {
            return *cache.http.get_or_insert_with(|| r.id("http"));
        }
        EMPTY
    }

    /// `1/ratio` from the span multiplier attribute (span first, then resource).
    fn multiplier(&self, batch: &Batch<'_>, span: &SpanRec) -> f64 {
        let Some(k) = self.keys.multiplier else { return 1.0 };
        batch
            .span_value(span, k)
            .and_then(|v| v.as_positive_double())
            .or_else(|| batch.resource_value(span.resource, k).and_then(|v| v.as_positive_double()))
            .map(|ratio| 1.0 / ratio)
            .unwrap_or(1.0)
    }

    /// Step 3 for one span, under its shard's lock.
    fn pair(&self, shard: &mut Shard, p: &Prepared, dims: &[u32], now_ns: u64, t: &mut Tally, ev: &mut Events) {
        let d = self.dims_per_side();
        let side_dims = &dims[p.dims_at as usize..p.dims_at as usize + d];
        let client_side = p.side.is_client_side();
        let hash = shard.store.hash(&p.key);
        let found = shard.store.find(hash, &p.key);

        if p.linked {
            let producer = found.filter(|&s| shard.store.get(s).seen_client);
            let mut e = HalfEdge::default();
            e.write(&p.side);
            if let Some(slot) = producer {
                let prod = *shard.store.get(slot);
                e.take_client_from(&prod);
                shard.store.get_mut(slot).matched = true;
                let client_dims = slot_dims(&shard.dims, slot, d, false);
                self.emit(&e, client_dims, side_dims, Virtual::None, ev);
                t.edges_new += 1;
                t.completed += 1;
                return;
            }
            let seen = side_key(&e);
            if let Some(slot) = self.insert(shard, hash, p.key, e, now_ns, false, t, ev) {
                t.edges_new += 1;
                write_slot_dims(&mut shard.dims, slot, d, true, side_dims);
                shard.pending.entry(p.key).or_default().push(slot);
            } else {
                t.dropped += 1;
                ev.dropped.push(seen);
            }
            return;
        }

        let slot = match found {
            Some(slot) => {
                shard.store.get_mut(slot).write(&p.side);
                write_slot_dims(&mut shard.dims, slot, d, !client_side, side_dims);
                slot
            }
            None => {
                // A new edge counts once it is stored or completes; a dropped span is not one.
                let mut e = HalfEdge::default();
                e.write(&p.side);
                if e.is_complete() && !(client_side && shard.pending.contains_key(&p.key)) {
                    // A database call: complete on arrival, never stored.
                    let none = &self.no_dims[..];
                    let (c, s) = if client_side { (side_dims, none) } else { (none, side_dims) };
                    self.emit(&e, c, s, Virtual::None, ev);
                    t.edges_new += 1;
                    t.completed += 1;
                    return;
                }
                let seen = side_key(&e);
                match self.insert(shard, hash, p.key, e, now_ns, true, t, ev) {
                    Some(slot) => {
                        t.edges_new += 1;
                        write_slot_dims(&mut shard.dims, slot, d, !client_side, side_dims);
                        slot
                    }
                    None => {
                        t.dropped += 1;
                        ev.dropped.push(seen);
                        return;
                    }
                }
            }
        };
        if client_side {
            if let Some(waiting) = shard.pending.remove(&p.key) {
                self.serve_linked(shard, slot, waiting, t, ev);
            }
        }
        let e = *shard.store.get(slot);
        if e.is_complete() {
            let c = slot_dims(&shard.dims, slot, d, false);
            let s = slot_dims(&shard.dims, slot, d, true);
            self.emit(&e, c, s, Virtual::None, ev);
            t.completed += 1;
            shard.store.remove(slot);
        }
    }

    /// A producer arrived after consumers linked to it: complete each of them.
    /// The producer stays, to serve later consumers until it expires.
    fn serve_linked(&self, shard: &mut Shard, producer_slot: u32, waiting: Vec<u32>, t: &mut Tally, ev: &mut Events) {
        let d = self.dims_per_side();
        let prod = *shard.store.get(producer_slot);
        // Dimension values stay in place when a slot is removed (a slot is
        // cleared when it is reused), so they are read without copying.
        let client_dims = slot_dims(&shard.dims, producer_slot, d, false);
        for slot in waiting {
            let server_dims = slot_dims(&shard.dims, slot, d, true);
            let mut e = shard.store.remove(slot);
            e.take_client_from(&prod);
            self.emit(&e, client_dims, server_dims, Virtual::None, ev);
            t.completed += 1;
        }
        shard.store.get_mut(producer_slot).matched = true;
    }

    /// Inserts a half-edge; when the store is full, first expires its head if
    /// that is due. Returns None when the span has to be dropped.
    #[allow(clippy::too_many_arguments)]
    fn insert(
        &self,
        shard: &mut Shard,
        hash: u64,
        key: Key,
        e: HalfEdge,
        now_ns: u64,
        indexed: bool,
        t: &mut Tally,
        ev: &mut Events,
    ) -> Option<u32> {
        // Waiting across all shards: the total settled when this visit began
        // plus what the visit has changed so far. Near the limit the settled
        // total is read again, so other calls' settlements since count too.
        let base = t.shard_base;
        let total = |waiting: usize, shard: &Shard| (waiting + shard.store.len()).saturating_sub(base);
        if total(t.waiting_base, shard) >= self.config.max_items {
            t.waiting_base = self.waiting.load(Relaxed);
            if total(t.waiting_base, shard) >= self.config.max_items {
                if let Some(head) = shard.store.expired_head(now_ns, false) {
                    self.expire_slot(shard, head, t, ev);
                }
                if total(t.waiting_base, shard) >= self.config.max_items {
                    return None;
                }
            }
        }
        let slot = shard.store.insert(hash, key, e, now_ns.saturating_add(self.wait_ns), indexed).ok()?;
        let d = self.dims_per_side();
        let need = (slot as usize + 1) * 2 * d;
        if shard.dims.len() < need {
            shard.dims.resize(need, EMPTY);
        }
        // A reused slot must not show its previous occupant's dimensions.
        shard.dims[slot as usize * 2 * d..need].fill(EMPTY);
        Some(slot)
    }

    /// Adds a shard visit's change in waiting half-edges to the total.
    fn settle_waiting(&self, before: usize, after: usize) {
        if after >= before {
            self.waiting.fetch_add(after - before, Relaxed);
        } else {
            self.waiting.fetch_sub(before - after, Relaxed);
        }
    }

    /// Builds the series event of a completed or virtual edge.
    fn emit(&self, e: &HalfEdge, client_dims: &[u32], server_dims: &[u32], side: Virtual, ev: &mut Events) {
        let dims_at = ev.dims.len() as u32;
        if self.config.enable_client_server_prefix {
            for (c, s) in client_dims.iter().zip(server_dims) {
                ev.dims.push(*c);
                ev.dims.push(*s);
            }
        } else {
            for (c, s) in client_dims.iter().zip(server_dims) {
                let (last, other) = if e.server_last { (*s, *c) } else { (*c, *s) };
                ev.dims.push(if last != EMPTY { last } else { other });
            }
        }
        let conn = if side == Virtual::None { e.conn } else { ConnType::VirtualNode };
        let messaging_s = (conn == ConnType::MessagingSystem && self.config.enable_messaging_system_latency_histogram)
            .then(|| (e.server_start_ns as i128 - e.client_end_ns as i128) as f64 / 1e9)
            .filter(|&v| v > 0.0);
        ev.edges.push(EdgeEvent {
            client: e.client,
            server: e.server,
            conn,
            failed: e.failed,
            virtual_side: if self.config.enable_virtual_node_label { side } else { Virtual::None },
            inferred: side,
            protocol: e.protocol,
            dims_at,
            multiplier: e.multiplier,
            client_s: e.client_dur_ns as f64 / 1e9,
            server_s: e.server_dur_ns as f64 / 1e9,
            messaging_s,
        });
    }

    /// Removes an expired entry and writes what it becomes.
    fn expire_slot(&self, shard: &mut Shard, slot: u32, t: &mut Tally, ev: &mut Events) {
        let d = self.dims_per_side();
        let key = shard.store.key(slot);
        let c = slot_dims(&shard.dims, slot, d, false);
        let s = slot_dims(&shard.dims, slot, d, true);
        let mut e = shard.store.remove(slot);
        if let Some(list) = shard.pending.get_mut(&key) {
            list.retain(|&x| x != slot);
            if list.is_empty() {
                shard.pending.remove(&key);
            }
        }
        let count_expired = |t: &mut Tally, ev: &mut Events, e: &HalfEdge| {
            t.expired += 1;
            t.expired_by_kind[e.last_kind as usize] += 1;
            ev.unpaired.push(side_key(e));
        };
        match self.rules.decide(&e, self.user) {
            Expiry::Virtual { client, server, side, counted } => {
                if counted {
                    count_expired(t, ev, &e);
                }
                e.client = client;
                e.server = server;
                self.emit(&e, c, s, side, ev);
                t.virtual_edges += 1;
            }
            Expiry::Unmatched { counted } => {
                if counted {
                    count_expired(t, ev, &e);
                }
            }
        }
    }

    /// Expires half-edges whose wait has passed, and removes idle series.
    pub fn expire(&self, now_ns: u64) {
        self.expire_inner(now_ns, false);
    }

    /// Expires every waiting half-edge, whatever its deadline.
    pub fn expire_all(&self, now_ns: u64) {
        self.expire_inner(now_ns, true);
    }

    fn expire_inner(&self, now_ns: u64, all: bool) {
        self.note_now(now_ns);
        {
            let _ids = self.ids.read().unwrap_or_else(|p| p.into_inner());
            let mut tally = Tally::default();
            let mut events = Events::default();
            for shard in self.shards.iter() {
                let mut shard = lock(shard);
                let before = shard.store.len();
                while let Some(slot) = shard.store.expired_head(now_ns, all) {
                    self.expire_slot(&mut shard, slot, &mut tally, &mut events);
                }
                self.settle_waiting(before, shard.store.len());
            }
            self.count(&events, &[], now_ns);
            let idle = self.config.series_idle_timeout.as_nanos().min(u64::MAX as u128) as u64;
            lock(&self.series).remove_idle(now_ns, idle);
            self.add_tally(&tally);
        }
        self.compact_interner_if_due();
        if let Some(g) = &self.graph {
            let mut g = lock(g);
            g.graph.remove_idle(now_ns, self.config.series_idle_timeout);
            if g.history.due(now_ns) {
                let view = g.graph.view_with(now_ns, &self.config.catalog, false);
                g.history.push(history::Snapshot::of(&view));
            }
        }
    }

    /// Label strings no waiting edge or series refers to any more are dropped,
    /// so a flood of distinct values cannot grow memory without bound.
    fn compact_interner_if_due(&self) {
        let (len, bytes) = {
            let i = self.interner.read().unwrap_or_else(|p| p.into_inner());
            (i.len(), i.string_bytes())
        };
        let mut at = lock(&self.compact_at);
        if len < at.0 && bytes < at.1 {
            return;
        }
        // No call holds ids across locks from here on. Then the lock order:
        // shards, series, graph, interner (consumers never hold the interner
        // while waiting for a shard).
        let _ids = self.ids.write().unwrap_or_else(|p| p.into_inner());
        let mut shards: Vec<MutexGuard<'_, Shard>> = self.shards.iter().map(lock).collect();
        let mut series = lock(&self.series);
        let mut graph = self.graph.as_ref().map(lock);
        let mut interner = self.interner.write().unwrap_or_else(|p| p.into_inner());
        if let Some(g) = graph.as_mut() {
            // Cached ids are about to change.
            g.cache.clear();
            g.facts.clear();
        }
        let old = std::mem::take(&mut *interner);
        let mut fresh = Interner::default();
        let mut map = vec![u32::MAX; old.len()];
        map[EMPTY as usize] = EMPTY;
        let mut remap = |id: u32| -> u32 {
            let m = &mut map[id as usize];
            if *m == u32::MAX {
                *m = fresh.insert(old.get(id));
            }
            *m
        };
        // Fixed names first, in the order `new` interned them, so their ids stay.
        let user = remap(self.user);
        let fallback = remap(self.rules.server_fallback);
        debug_assert_eq!((user, fallback), (self.user, self.rules.server_fallback));
        let d = self.dims_per_side();
        for shard in shards.iter_mut() {
            let Shard { store, dims, .. } = &mut **shard;
            store.for_each_mut(|slot, e| {
                e.client = remap(e.client);
                e.server = remap(e.server);
                e.peer = remap(e.peer);
                e.protocol = remap(e.protocol);
                for v in &mut dims[slot as usize * 2 * d..(slot as usize + 1) * 2 * d] {
                    *v = remap(*v);
                }
            });
        }
        series.remap(&mut remap);
        *interner = fresh;
        *at = (2 * interner.len() + COMPACT_SLACK_STRINGS, 2 * interner.string_bytes() + COMPACT_SLACK_BYTES);
    }

    /// Step 4: applies a call's events to the series table and the map.
    /// They do not depend on each other, so a call that finds the series
    /// table busy feeds the map first: two calls finishing together then
    /// work side by side instead of one waiting for the other.
    fn count(&self, events: &Events, facts: &[ResourceFacts<'_>], now_ns: u64) {
        let series = |t: &mut SeriesTable| t.apply(events, self.dims_per_series(), self.config.failed_label, now_ns);
        let graph = self.graph.as_ref().filter(|_| !events.edges.is_empty() || !facts.is_empty());
        let map = |g: &Mutex<GraphState>| self.feed_graph(&mut lock(g), events, facts, now_ns);
        match (events.is_empty(), graph) {
            (true, None) => {}
            (true, Some(g)) => map(g),
            (false, None) => series(&mut lock(&self.series)),
            (false, Some(g)) => match try_lock(&self.series) {
                Some(mut t) => {
                    series(&mut t);
                    drop(t);
                    map(g);
                }
                None => {
                    map(g);
                    series(&mut lock(&self.series));
                }
            },
        }
    }

    /// Adds a call's edges and resource facts to the map. Edge indexes are
    /// cached by id pair, so a known edge costs no name lookup.
    fn feed_graph(&self, g: &mut GraphState, events: &Events, facts: &[ResourceFacts<'_>], now_ns: u64) {
        let names = self.interner.read().unwrap_or_else(|p| p.into_inner());
        g.sync_generation();
        // The facts last seen per service are a cache: cleared rather than
        // grown past the number of nodes the map may hold.
        if g.facts.len() + facts.len() > self.config.max_graph_nodes {
            g.facts.clear();
        }
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
                v.map(|v| crate::intern::truncate(&self.label(&v), max).to_string()).unwrap_or_default()
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
                    g.facts.insert(f.service, KnownFacts { raw, facts: new.clone() });
                }
            }
            if report {
                g.graph.report_service(names.get(f.service), new, now_ns);
                g.sync_generation();
            }
        }
        let GraphState { graph, cache, generation, .. } = g;
        let tick = graph.tick(now_ns);
        for e in &events.edges {
            let key = EdgeCache::key(e.client, e.server);
            let i = match cache.get(key) {
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
                    let Some(i) = graph.edge_index(&o, now_ns) else { continue };
                    if graph.generation() != *generation {
                        // Room was made: cached indexes moved.
                        cache.clear();
                        *generation = graph.generation();
                    }
                    cache.insert(key, i);
                    i
                }
            };
            let sample = Sample {
                conn: e.conn,
                count: e.multiplier,
                errors: if e.failed { e.multiplier } else { 0.0 },
                // The server's view, except where the server was inferred.
                latency_s: if e.inferred == Virtual::Server { e.client_s } else { e.server_s },
            };
            graph.add(i, &sample, || names.get(e.protocol), tick);
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
        let parsed = crate::graph::parse_edge_lines(jsonl)?;
        let mut g = lock(g);
        for p in &parsed {
            g.graph.observe(&p.observation(), now_ns);
        }
        Ok(parsed.len())
    }

    /// The incident answer for `service` at `now_ns` (None when the map is off).
    pub fn impact(&self, service: &str, now_ns: u64) -> Option<query::Impact> {
        let g = lock(self.graph.as_ref()?);
        let view = g.graph.view_with(now_ns, &self.config.catalog, false);
        Some(query::impact(&view, &g.history, &self.config.catalog, service))
    }

    /// The service map at `now_ns`, with health.
    pub fn graph_view(&self, now_ns: u64) -> Option<View> {
        self.graph.as_ref().map(|g| lock(g).graph.view(now_ns, &self.config.catalog))
    }

    /// Answers a query given as JSON: `{"query":"impact","service":NAME}`,
    /// `{"query":"root_causes"}`, `{"query":"recovery_order"}`,
    /// `{"query":"diff","from":UNIX_NANO,"to":UNIX_NANO}` (`to` defaults to
    /// now) or `{"query":"history"}`.
    pub fn query(&self, request: &[u8], now_ns: u64) -> Result<serde_json::Value, Error> {
        use serde_json::{Value, json};
        let bad = |m: &str| Error::Argument(format!("query: {m}"));
        let req: Value = serde_json::from_slice(request).map_err(|e| bad(&format!("not valid JSON: {e}")))?;
        let Some(g) = &self.graph else {
            return Err(Error::Argument("the service map is disabled (config key `graph`)".into()));
        };
        let g = lock(g);
        let view = || g.graph.view_with(now_ns, &self.config.catalog, false);
        let time = |k: &str| -> Result<Option<u64>, Error> {
            match req.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v.as_u64().map(Some).ok_or_else(|| bad(&format!("`{k}` must be unix nanoseconds"))),
            }
        };
        match req.get("query").and_then(Value::as_str) {
            Some("impact") => {
                let service = req.get("service").and_then(Value::as_str).ok_or_else(|| bad("`service` is required"))?;
                let view = g.graph.view_with(now_ns, &self.config.catalog, false);
                Ok(export::impact_json(&query::impact(&view, &g.history, &self.config.catalog, service)))
            }
            Some("root_causes") => Ok(json!({"root_causes": query::root_causes(&view())})),
            Some("recovery_order") => {
                let steps = query::recovery_order(&view());
                let flat: Vec<String> = steps.iter().flat_map(|s| s.services.clone()).collect();
                Ok(json!({"recovery_order": flat, "recovery_steps": export::steps_json(&steps)}))
            }
            Some("history") => Ok(json!({"snapshots_unix_nano": g.history.times()})),
            Some("diff") => {
                let from = time("from")?.ok_or_else(|| bad("`from` is required"))?;
                let a = g.history.at(from).cloned().ok_or_else(|| bad("no snapshot has been taken yet"))?;
                let b = match time("to")? {
                    Some(t) if t < now_ns => g.history.at(t).cloned().unwrap_or_default(),
                    _ => history::Snapshot::of(&view()),
                };
                Ok(export::diff_json(&history::diff(&a, &b)))
            }
            _ => Err(bad("`query` must be one of impact, root_causes, recovery_order, diff, history")),
        }
    }

    fn add_tally(&self, t: &Tally) {
        let c = &self.counters;
        c.spans_dropped.fetch_add(t.dropped, Relaxed);
        c.edges_new.fetch_add(t.edges_new, Relaxed);
        c.edges_completed.fetch_add(t.completed, Relaxed);
        c.edges_virtual.fetch_add(t.virtual_edges, Relaxed);
        c.edges_expired.fetch_add(t.expired, Relaxed);
        for (a, b) in c.expired_by_kind.iter().zip(t.expired_by_kind) {
            a.fetch_add(b, Relaxed);
        }
    }

    /// Renders the current state. A read: what it shows depends on the data
    /// and `now_ns` only, never on what was rendered before.
    pub fn render(&self, format: Format, now_ns: u64) -> Vec<u8> {
        match format {
            Format::Prometheus | Format::OpenMetrics => {
                let snap = self.snapshot(now_ns, self.config.initial_zero);
                exposition::render(&snap, format == Format::OpenMetrics).into_bytes()
            }
            Format::OtlpMetrics => {
                let snap = self.snapshot(now_ns, false);
                let start = snap.started_ns;
                let offset = self.config.metrics_timestamp_offset.as_nanos().min(now_ns as u128) as u64;
                otlp_metrics::encode(&snap, start, now_ns - offset)
            }
            Format::StatsJson => {
                let mut s = serde_json::to_vec_pretty(&self.stats().to_json()).unwrap_or_default();
                s.push(b'\n');
                s
            }
            Format::GraphJson | Format::GraphDot | Format::GraphMermaid => {
                let Some(view) = self.graph_view(now_ns) else { return Vec::new() };
                match format {
                    Format::GraphJson => export::graph_json(&view),
                    Format::GraphDot => export::dot(&view).into_bytes(),
                    _ => export::mermaid(&view).into_bytes(),
                }
            }
        }
    }

    /// A copy of every series at `now_ns` with label strings resolved, edges
    /// in the order of their label values. With `hold_new`, series created
    /// less than `initial_zero_hold` before `now_ns` read as zero.
    pub fn snapshot(&self, now_ns: u64, hold_new: bool) -> Snapshot {
        let ids = self.ids.read().unwrap_or_else(|p| p.into_inner());
        let (entries, unpaired, dropped, side_overflow, bounds) = {
            let t = lock(&self.series);
            let hold_ns = self.config.initial_zero_hold.as_nanos().min(u64::MAX as u128) as u64;
            let entries = t.snapshot(hold_new.then_some((now_ns, hold_ns)));
            let sides = &t.sides;
            let unpaired: Vec<_> = sides.unpaired.iter().map(|(k, v)| (*k, *v)).collect();
            let dropped: Vec<_> = sides.dropped.iter().map(|(k, v)| (*k, *v)).collect();
            let overflow = (sides.unpaired_overflow, sides.dropped_overflow);
            (entries, unpaired, dropped, overflow, t.bounds().to_vec())
        };
        let caps = self.overflow();
        // Each distinct label value is resolved once, to one shared copy and
        // its rank in string order, so that sorting compares integers. An
        // edge's key is [client, server, connection type, failed, dims...],
        // label values as slots in `strings`, then as ranks in `ranks`.
        let stride = 4 + self.dim_labels.raw.len();
        let mut strings = Strings::default();
        let mut slots = Vec::with_capacity(entries.len() * stride);
        for x in &entries {
            let k = &x.key;
            slots.extend([strings.slot(k.client), strings.slot(k.server), k.conn as u32, u32::from(k.failed)]);
            slots.extend(k.dims.iter().map(|&id| strings.slot(id)));
        }
        let names = self.interner.read().unwrap_or_else(|p| p.into_inner());
        let (shared, rank) = strings.resolve(&names);
        let side = |(k, v): (SideKey, SideCount)| SideSeries {
            client: names.get(k.client).into(),
            server: names.get(k.server).into(),
            conn: k.conn,
            value: v.value,
            created_ns: v.created_ns,
            overflow: false,
        };
        let mut unpaired: Vec<SideSeries> = unpaired.into_iter().map(side).collect();
        let mut dropped: Vec<SideSeries> = dropped.into_iter().map(side).collect();
        drop(names);
        drop(ids);
        let is_string = |i: usize| i % stride < 2 || i % stride >= 4;
        let ranks: Vec<u32> =
            slots.iter().enumerate().map(|(i, &s)| if is_string(i) { rank[s as usize] } else { s }).collect();
        let key = |i: usize| &ranks[i * stride..(i + 1) * stride];
        let order: Vec<usize> = match packed_keys(&ranks, stride, rank.len()) {
            Some((mut packed, index_bits)) => {
                packed.sort_unstable();
                packed.into_iter().map(|k| (k & ((1 << index_bits) - 1)) as usize).collect()
            }
            None => {
                let mut order: Vec<usize> = (0..entries.len()).collect();
                order.sort_by(|&a, &b| key(a).cmp(key(b)));
                order
            }
        };
        let mut entries: Vec<Option<Entry>> = entries.into_iter().map(Some).collect();
        let edges = order
            .into_iter()
            .map(|i| {
                let x = entries[i].take().expect("each entry is taken once");
                let s = &slots[i * stride..(i + 1) * stride];
                EdgeSeries {
                    client: shared[s[0] as usize].clone(),
                    server: shared[s[1] as usize].clone(),
                    conn: x.key.conn,
                    failed: x.key.failed,
                    virtual_side: x.key.virtual_side,
                    dims: s[4..].iter().map(|&slot| shared[slot as usize].clone()).collect(),
                    values: x.values,
                }
            })
            .collect();
        unpaired.sort_by(|a, b| (&a.client, &a.server).cmp(&(&b.client, &b.server)));
        dropped.sort_by(|a, b| (&a.client, &a.server).cmp(&(&b.client, &b.server)));
        for (list, count) in [(&mut unpaired, side_overflow.0), (&mut dropped, side_overflow.1)] {
            if count.value > 0.0 {
                list.push(SideSeries::overflow(count.value, count.created_ns));
            }
        }
        Snapshot {
            compat: self.config.compat,
            failed_label: self.config.failed_label,
            virtual_label: self.config.enable_virtual_node_label,
            connection_info: self.config.enable_connection_info,
            messaging: self.config.enable_messaging_system_latency_histogram,
            weighted: self.config.span_multiplier_key.is_some(),
            bounds,
            dim_labels: self.dim_labels.clone(),
            edges,
            unpaired,
            dropped,
            overflow: caps,
            started_ns: match self.counters.first_now_ns.load(Relaxed) {
                0 => now_ns,
                t => t,
            },
        }
    }

    /// What each cap refused or removed so far, by option name.
    fn overflow(&self) -> [(&'static str, u64); 5] {
        let (refused, unpaired_series) = {
            let t = lock(&self.series);
            (t.refused, t.sides.overflowed)
        };
        let mut o = Overflow { unpaired_series, ..Default::default() };
        if let Some(g) = &self.graph {
            let g = lock(g);
            (o.graph_nodes, o.graph_edges, o.history_snapshots) =
                (g.graph.evicted_nodes, g.graph.evicted_edges, g.history.evicted);
        }
        o.by_option(refused)
    }

    /// The self-report.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        let mut waiting = 0;
        let mut store_bytes = 0;
        for shard in self.shards.iter() {
            let shard = lock(shard);
            waiting += shard.store.len();
            store_bytes += shard.store.heap_bytes() + shard.dims.capacity() * 4;
        }
        let (active_series, series_refused, unpaired_overflow) = {
            let t = lock(&self.series);
            (t.len(), t.refused, t.sides.overflowed)
        };
        let (graph_nodes, graph_edges, graph_overflow) = match &self.graph {
            Some(g) => {
                let g = lock(g);
                let gr = &g.graph;
                (gr.node_count(), gr.edge_count(), (gr.evicted_nodes, gr.evicted_edges, g.history.evicted))
            }
            None => (0, 0, (0, 0, 0)),
        };
        let kinds = [SpanKind::Server, SpanKind::Client, SpanKind::Producer, SpanKind::Consumer];
        Stats {
            batches_accepted: c.batches_accepted.load(Relaxed),
            batches_rejected: c.batches_rejected.load(Relaxed),
            spans_received: c.spans_received.load(Relaxed),
            spans_ignored: c.spans_ignored.load(Relaxed),
            spans_unnamed: c.spans_unnamed.load(Relaxed),
            spans_dropped: c.spans_dropped.load(Relaxed),
            edges_new: c.edges_new.load(Relaxed),
            edges_completed: c.edges_completed.load(Relaxed),
            edges_virtual: c.edges_virtual.load(Relaxed),
            edges_expired: c.edges_expired.load(Relaxed),
            expired_by_kind: kinds
                .iter()
                .map(|k| (k.otel_name(), c.expired_by_kind[*k as usize].load(Relaxed)))
                .collect(),
            waiting: waiting as u64,
            active_series: active_series as u64,
            series_refused,
            store_bytes: store_bytes as u64,
            interned_strings: self.interner.read().unwrap_or_else(|p| p.into_inner()).len() as u64,
            graph_nodes: graph_nodes as u64,
            graph_edges: graph_edges as u64,
            values_truncated: c.values_truncated.load(Relaxed),
            overflow: Overflow {
                unpaired_series: unpaired_overflow,
                graph_nodes: graph_overflow.0,
                graph_edges: graph_overflow.1,
                history_snapshots: graph_overflow.2,
            },
        }
    }
}

/// Spans of one trace always land in the same shard.
#[inline]
fn shard_index(key: &Key, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let t = &key.trace_id;
    let x = u64::from_le_bytes(t[8..16].try_into().unwrap()) ^ u64::from_le_bytes(t[0..8].try_into().unwrap());
    // The multiply carries every bit of `x` into the product's high bits; the
    // shard is taken from those (a multiply-high reduction), never from the
    // low bits, which depend only on the low bits of the trace ID.
    let h = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((h as u128 * n as u128) >> 64) as usize
}

fn slot_dims(dims: &[u32], slot: u32, d: usize, server: bool) -> &[u32] {
    if d == 0 {
        return &[];
    }
    let at = slot as usize * 2 * d + if server { d } else { 0 };
    &dims[at..at + d]
}

/// Writes a side's dimension values; a dimension the span does not have
/// keeps the value an earlier span of the same side gave it (both peers merge).
fn write_slot_dims(dims: &mut [u32], slot: u32, d: usize, server: bool, values: &[u32]) {
    if d == 0 {
        return;
    }
    let at = slot as usize * 2 * d + if server { d } else { 0 };
    for (old, &new) in dims[at..at + d].iter_mut().zip(values) {
        if new != EMPTY {
            *old = new;
        }
    }
}

fn side_key(e: &HalfEdge) -> SideKey {
    if e.seen_client {
        SideKey { client: e.client, server: EMPTY, conn: e.conn }
    } else {
        SideKey { client: EMPTY, server: e.server, conn: e.conn }
    }
}

/// Prometheus label name rules: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn sanitize_label(name: &str) -> String {
    let mut s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

fn dim_labels(config: &Config) -> DimLabels {
    let raw = config.dimension_labels();
    let prometheus = raw.iter().map(|r| sanitize_label(r)).collect();
    DimLabels { raw, prometheus }
}

/// The distinct label values of a snapshot, by interned id.
#[derive(Default)]
struct Strings {
    slot: HashMap<u32, u32>,
    ids: Vec<u32>,
}

impl Strings {
    /// `id`'s index among the distinct values seen so far.
    fn slot(&mut self, id: u32) -> u32 {
        *self.slot.entry(id).or_insert_with(|| {
            self.ids.push(id);
            self.ids.len() as u32 - 1
        })
    }

    /// Each slot's string, shared, and its rank in string order (equal
    /// strings, equal ranks).
    fn resolve(&self, names: &Interner) -> (Vec<Arc<str>>, Vec<u32>) {
        let shared: Vec<Arc<str>> = self.ids.iter().map(|&id| Arc::from(names.get(id))).collect();
        let mut by_string: Vec<u32> = (0..shared.len() as u32).collect();
        by_string.sort_unstable_by(|&a, &b| shared[a as usize].cmp(&shared[b as usize]));
        let mut rank = vec![0; shared.len()];
        let mut r = 0;
        for (n, w) in by_string.iter().enumerate() {
            if n > 0 && shared[*w as usize] != shared[by_string[n - 1] as usize] {
                r += 1;
            }
            rank[*w as usize] = r;
        }
        (shared, rank)
    }
}

/// Each edge's sort key `[client, server, connection type, failed, dims...]`
/// (label values as ranks) packed into one word, most significant first,
/// with the edge's index below it, when all of it fits in 64 bits: sorting
/// words instead of comparing slices takes most of the sorting out of a
/// render, and the index makes equal keys keep their order. Returns the
/// words and the index's width, or None when they do not fit.
fn packed_keys(ranks: &[u32], stride: usize, distinct: usize) -> Option<(Vec<u64>, u32)> {
    let width = |n: usize| usize::BITS - n.max(1).leading_zeros();
    // A rank below `distinct`; the connection type and the failed flag in 2 and 1.
    let (bits, index_bits) = (width(distinct), width(ranks.len() / stride));
    if bits as usize * (stride - 2) + 3 + index_bits as usize > 64 {
        return None;
    }
    let field = |f: usize| match f {
        2 => 2,
        3 => 1,
        _ => bits,
    };
    let packed = ranks
        .chunks_exact(stride)
        .enumerate()
        .map(|(i, k)| {
            let key = k.iter().enumerate().fold(0u64, |acc, (f, &v)| acc << field(f) | v as u64);
            key << index_bits | i as u64
        })
        .collect();
    Some((packed, index_bits))
}

/// One edge series with its labels resolved. Label values are shared
/// between the series of a snapshot.
#[derive(Debug, Clone)]
pub struct EdgeSeries {
    pub client: Arc<str>,
    pub server: Arc<str>,
    pub conn: ConnType,
    pub failed: bool,
    pub virtual_side: Virtual,
    /// Values of [`Snapshot::dim_labels`], "" where absent.
    pub dims: Vec<Arc<str>>,
    pub values: crate::series::Values,
}

/// One unpaired or dropped span counter.
#[derive(Debug, Clone)]
pub struct SideSeries {
    pub client: Arc<str>,
    pub server: Arc<str>,
    pub conn: ConnType,
    pub value: f64,
    pub created_ns: u64,
    /// The counts of sides beyond `max_unpaired_series`, labelled
    /// `otel_metric_overflow="true"` and nothing else.
    pub overflow: bool,
}

impl SideSeries {
    pub fn overflow(value: f64, created_ns: u64) -> SideSeries {
        SideSeries { client: "".into(), server: "".into(), conn: ConnType::Plain, value, created_ns, overflow: true }
    }
}

/// Everything a renderer needs, detached from the engine's locks.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub compat: crate::config::Compat,
    pub failed_label: bool,
    pub virtual_label: bool,
    pub connection_info: bool,
    pub messaging: bool,
    /// Counts are weighted by a span multiplier, so may not be whole numbers.
    pub weighted: bool,
    pub bounds: Vec<f64>,
    pub dim_labels: DimLabels,
    pub edges: Vec<EdgeSeries>,
    pub unpaired: Vec<SideSeries>,
    pub dropped: Vec<SideSeries>,
    /// What each cap refused or removed, by option name (see [`Overflow`]).
    pub overflow: [(&'static str, u64); 5],
    /// When the engine was first fed: the start of the counters that have
    /// no creation time of their own.
    pub started_ns: u64,
}

/// The engine's self-report: what a user needs to size it before sending
/// anything anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub batches_accepted: u64,
    pub batches_rejected: u64,
    pub spans_received: u64,
    pub spans_ignored: u64,
    pub spans_unnamed: u64,
    pub spans_dropped: u64,
    pub edges_new: u64,
    pub edges_completed: u64,
    pub edges_virtual: u64,
    pub edges_expired: u64,
    pub expired_by_kind: Vec<(&'static str, u64)>,
    pub waiting: u64,
    pub active_series: u64,
    pub series_refused: u64,
    pub store_bytes: u64,
    pub interned_strings: u64,
    pub graph_nodes: u64,
    pub graph_edges: u64,
    /// Attribute values whose string form was cut at the nesting limit.
    pub values_truncated: u64,
    pub overflow: Overflow,
}

/// What each cap turned away or removed to make room, since the start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overflow {
    /// Unpaired or dropped spans counted in the overflow counter
    /// (`max_unpaired_series`).
    pub unpaired_series: u64,
    /// Map nodes removed to make room (`max_graph_nodes`).
    pub graph_nodes: u64,
    /// Map edges removed to make room (`max_graph_edges`, or with their node).
    pub graph_edges: u64,
    /// History snapshots dropped before their time (`max_history_entries`).
    pub history_snapshots: u64,
}

impl Overflow {
    /// Each cap's count with the option that sets it, as the exposition
    /// labels them (`series_refused` counts `max_series`).
    pub fn by_option(&self, series_refused: u64) -> [(&'static str, u64); 5] {
        [
            ("max_series", series_refused),
            ("max_unpaired_series", self.unpaired_series),
            ("max_graph_nodes", self.graph_nodes),
            ("max_graph_edges", self.graph_edges),
            ("max_history_entries", self.history_snapshots),
        ]
    }
}

impl Stats {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "batches_accepted": self.batches_accepted,
            "batches_rejected": self.batches_rejected,
            "spans_received": self.spans_received,
            "spans_ignored": self.spans_ignored,
            "spans_unnamed": self.spans_unnamed,
            "spans_dropped": self.spans_dropped,
            "edges_new": self.edges_new,
            "edges_completed": self.edges_completed,
            "edges_virtual": self.edges_virtual,
            "edges_expired": self.edges_expired,
            "expired_by_kind": self.expired_by_kind.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
            "waiting": self.waiting,
            "active_series": self.active_series,
            "series_refused": self.series_refused,
            "store_bytes": self.store_bytes,
            "interned_strings": self.interned_strings,
            "graph_nodes": self.graph_nodes,
            "graph_edges": self.graph_edges,
            "values_truncated": self.values_truncated,
            "overflow": {
                "unpaired_series": self.overflow.unpaired_series,
                "graph_nodes": self.overflow.graph_nodes,
                "graph_edges": self.overflow.graph_edges,
                "history_snapshots": self.overflow.history_snapshots,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_keys_sort_as_the_keys_do() {
        let mut seed = 7u64;
        let mut next = |n: u32| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) % n as u64) as u32
        };
        for (stride, distinct) in [(4, 1), (4, 3), (4, 1000), (4, 70_000), (6, 300), (7, 40)] {
            let ranks: Vec<u32> = (0..500 * stride)
                .map(|i| match i % stride {
                    2 => next(4),
                    3 => next(2),
                    _ => next(distinct),
                })
                .collect();
            let (packed, index_bits) = packed_keys(&ranks, stride, distinct as usize).unwrap();
            let key = |i: usize| &ranks[i * stride..(i + 1) * stride];
            for (i, &p) in packed.iter().enumerate() {
                assert_eq!(p & ((1 << index_bits) - 1), i as u64);
            }
            // Equal keys order by index, as a stable sort leaves them.
            for a in 0..500 {
                for b in (0..500).step_by(7) {
                    assert_eq!(packed[a].cmp(&packed[b]), key(a).cmp(key(b)).then(a.cmp(&b)), "{stride} {distinct}");
                }
            }
        }
        // Four ranks of 16 bits, the flags and an index do not fit; the caller compares slices then.
        assert!(packed_keys(&[0; 6 * 100], 6, 40_000).is_none());
    }

    #[test]
    fn edge_cache_finds_every_edge_it_was_given() {
        let mut c = EdgeCache::new();
        assert_eq!(c.get(EdgeCache::key(1, 2)), None);
        // More pairs than recent slots, so many share one and fall back to the map.
        let pairs: Vec<(u32, u32)> = (0..3000u32).map(|i| (i % 97, i)).collect();
        for (i, &(a, b)) in pairs.iter().enumerate() {
            c.insert(EdgeCache::key(a, b), i);
        }
        for _ in 0..2 {
            for (i, &(a, b)) in pairs.iter().enumerate().rev() {
                assert_eq!(c.get(EdgeCache::key(a, b)), Some(i));
            }
        }
        assert_eq!(c.get(EdgeCache::key(2, 1)), None);
        c.clear();
        assert_eq!(c.get(EdgeCache::key(pairs[5].0, pairs[5].1)), None);
    }

    #[test]
    fn wanted_keys_are_the_wire_readers_keys() {
        let mut c = Config::preset(crate::config::Compat::Tempo);
        c.dimensions = vec!["http.route".into(), "service.name".into()];
        c.span_multiplier_key = Some("sample.ratio".into());
        let keys =
            |e: &Engine, side: &str| -> Vec<String> { serde_json::from_value(e.wanted_keys()[side].clone()).unwrap() };
        let e = Engine::new(c.clone());
        let span = keys(&e, "span");
        assert_eq!(span, e.keys.keys().collect::<Vec<_>>(), "service.name is a dimension, so wanted on spans");
        assert!(span.iter().any(|k| k == "sample.ratio") && span.iter().any(|k| k == "rpc.system"));
        let resource = keys(&e, "resource");
        assert_eq!(resource[0], "service.name", "first, and only once");
        assert_eq!(resource[1..], span.iter().filter(|k| *k != "service.name").cloned().collect::<Vec<_>>()[..]);
        c.dimensions.pop();
        c.graph = false;
        let e = Engine::new(c);
        let span = keys(&e, "span");
        assert!(!span.iter().any(|k| k == "rpc.system" || k == "service.name"));
        assert_eq!(keys(&e, "resource")[0], "service.name");
        assert_eq!(keys(&e, "resource")[1..], span[..]);
    }

    #[test]
    fn every_trace_id_byte_chooses_the_shard() {
        // Trace IDs that differ only in their last byte still spread over the shards.
        let mut seen = [0u32; 16];
        for b in 0..=255u8 {
            let mut trace_id = [0x5a; 16];
            trace_id[15] = b;
            seen[shard_index(&Key { trace_id, span_id: [0; 8] }, 16)] += 1;
        }
        assert!(seen.iter().all(|&c| c >= 4), "uneven spread: {seen:?}");
    }
}
