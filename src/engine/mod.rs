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

use crate::config::{Config, DatabaseNaming};
use crate::error::{DecodeError, Error};
use crate::exposition;
use crate::map::{self, Facts, Graph, History, Limits, Observation, Sample, View, Window};
use crate::pairing::shard::{Shard, shard_index, side_key, slot_dims, write_slot_dims};
use crate::pairing::{Expiry, ExpiryRules, HalfEdge, Key, SideWrite, Store};
use crate::series::intern::{EMPTY, Interner, Recent, Resolver};
use crate::series::native;
use crate::series::{
    ConnType, DimLabels, EdgeEvent, EdgeSeries, Events, Kept, SeriesTable, SideCount, SideKey, SideSeries, Snapshot,
    Virtual,
};
use crate::wire::attributes::{AttrValue, KeySet};
use crate::wire::{self, Batch, SpanKind, SpanRec};
use compact::{COMPACT_SLACK_BYTES, COMPACT_SLACK_STRINGS};
use consume::{Prepared, ProtocolCache, ResourceFacts};
use filter::SpanFilter;
use hashbrown::HashMap;
use map_feed::{EdgeCache, GraphState};
use scratch::{Borrowed, Scratch, ScratchPool};
use stats::{Counters, Tally};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, TryLockError};

mod compact;
mod consume;
mod filter;
mod map_feed;
mod pair;
mod scratch;
mod snapshot;
mod stats;

pub use stats::{Overflow, Stats};

/// Output formats of [`Engine::render`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text exposition 0.0.4.
    Prometheus,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
    /// OTLP `ExportMetricsServiceRequest` protobuf, cumulative.
    OtlpMetrics,
    /// Prometheus protobuf exposition: length-delimited `MetricFamily`
    /// messages, the format that carries native histograms.
    PrometheusProtobuf,
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
    /// The filter policies, compiled against `keys`.
    filter: SpanFilter,
    /// Dropped-side markers across all shards; also capped at `max_items`.
    dropped_sides: AtomicUsize,
    /// Consume calls' buffers, kept for the next calls.
    scratch: ScratchPool,
    /// The last render's largest buffers, kept for the next.
    spare: snapshot::Spare,
}

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
            .map(|_| {
                Mutex::new(Shard {
                    store: Store::new(usize::MAX),
                    whole: HashMap::new(),
                    indexes: Default::default(),
                    dims: Vec::new(),
                    times: config.enable_messaging_system_latency_histogram.then(Vec::new),
                    pending: HashMap::new(),
                    dropped: Default::default(),
                })
            })
            .collect();
        let series = Mutex::new(
            SeriesTable::new(
                &config.histogram_buckets,
                config.enable_messaging_system_latency_histogram,
                config.max_series,
                config.max_unpaired_series,
            )
            .with_exemplars(config.exemplars)
            .with_native(config.histograms.native().then(|| native_settings(&config))),
        );
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
        let filter = SpanFilter::new(&config.filter_policies, &keys);
        Engine {
            filter,
            dropped_sides: AtomicUsize::new(0),
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
            scratch: ScratchPool::default(),
            spare: snapshot::Spare::default(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The attribute keys the wire reader keeps, as
    /// `{"resource":[...],"span":[...],"span_name":bool}`: a batch holding
    /// only the attributes with these keys (and the span fields pairing
    /// reads, with names when `span_name`) gives the same result as the
    /// whole batch. Resources also need `service.name`.
    pub fn wanted_keys(&self) -> serde_json::Value {
        let span: Vec<&str> = self.keys.span_keys().collect();
        let mut resource: Vec<&str> = self.keys.keys().filter(|&k| k != "service.name").collect();
        resource.insert(0, "service.name");
        serde_json::json!({ "resource": resource, "span": span, "span_name": self.keys.span_name })
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
}

fn dim_labels(config: &Config) -> DimLabels {
    let raw = config.dimension_labels();
    let prometheus = raw.iter().map(|r| crate::config::sanitize_label(r)).collect();
    DimLabels { raw, prometheus }
}

#[cfg(test)]
mod tests;

/// The native histograms' settings the options give: contrib's kind when
/// its size is set, else Tempo's.
fn native_settings(config: &Config) -> native::Settings {
    if config.exponential_histogram_max_size != 0 {
        return native::Settings::contrib(config.exponential_histogram_max_size.min(u32::MAX as usize) as u32);
    }
    native::Settings {
        schema: native::schema_for_factor(config.native_histogram_bucket_factor),
        budget: native::Budget::Populated {
            max_buckets: config.native_histogram_max_bucket_number as u32,
            min_reset_ns: config.native_histogram_min_reset_duration.as_nanos() as u64,
        },
    }
}
