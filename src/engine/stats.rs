//! The engine's self-report: counters updated once per call, and the caps'
//! overflow counts.

use super::*;

/// Counters for the self-report, updated once per call.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) batches_accepted: AtomicU64,
    pub(super) batches_rejected: AtomicU64,
    pub(super) spans_received: AtomicU64,
    pub(super) spans_ignored: AtomicU64,
    pub(super) spans_unnamed: AtomicU64,
    pub(super) spans_dropped: AtomicU64,
    /// Spans a filter policy left out.
    pub(super) spans_filtered: AtomicU64,
    /// Edges dropped because one of their sides was filtered out.
    pub(super) edges_dropped_by_filter: AtomicU64,
    /// Dropped-side markers not kept because `max_items` of them were.
    pub(super) dropped_sides_overflow: AtomicU64,
    pub(super) edges_new: AtomicU64,
    pub(super) edges_completed: AtomicU64,
    pub(super) edges_virtual: AtomicU64,
    pub(super) edges_expired: AtomicU64,
    pub(super) expired_by_kind: [AtomicU64; 6],
    pub(super) first_now_ns: AtomicU64,
    /// Attribute values cut at [`crate::wire::attributes::MAX_VALUE_DEPTH`].
    pub(super) values_truncated: AtomicU64,
}

/// Per-call tallies, added to [`Counters`] at the end of the call.
#[derive(Debug, Default)]
pub(super) struct Tally {
    /// The shard's store size when this call took its lock.
    pub(super) shard_base: usize,
    /// Waiting across all shards when this call took the shard's lock.
    pub(super) waiting_base: usize,
    pub(super) dropped: u64,
    pub(super) dropped_by_filter: u64,
    pub(super) edges_new: u64,
    pub(super) completed: u64,
    pub(super) virtual_edges: u64,
    pub(super) expired: u64,
    pub(super) expired_by_kind: [u64; 6],
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
    pub spans_filtered: u64,
    pub edges_dropped_by_filter: u64,
    /// Dropped-side markers held now (see `filter_policies`).
    pub dropped_sides: u64,
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
    /// Dropped-side markers not kept: `max_items` of them were held.
    pub dropped_sides: u64,
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
            "spans_filtered": self.spans_filtered,
            "edges_dropped_by_filter": self.edges_dropped_by_filter,
            "dropped_sides": self.dropped_sides,
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
                "dropped_sides": self.overflow.dropped_sides,
            },
        })
    }
}

impl Engine {
    pub(super) fn add_tally(&self, t: &Tally) {
        let c = &self.counters;
        c.spans_dropped.fetch_add(t.dropped, Relaxed);
        c.edges_dropped_by_filter.fetch_add(t.dropped_by_filter, Relaxed);
        c.edges_new.fetch_add(t.edges_new, Relaxed);
        c.edges_completed.fetch_add(t.completed, Relaxed);
        c.edges_virtual.fetch_add(t.virtual_edges, Relaxed);
        c.edges_expired.fetch_add(t.expired, Relaxed);
        for (a, b) in c.expired_by_kind.iter().zip(t.expired_by_kind) {
            a.fetch_add(b, Relaxed);
        }
    }

    /// What each cap refused or removed so far, by option name.
    pub(super) fn overflow(&self) -> [(&'static str, u64); 5] {
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
            store_bytes += shard.store.heap_bytes()
                + shard.whole.allocation_size()
                + shard.dims.capacity() * 4
                + shard.times.as_ref().map_or(0, |t| t.capacity() * 8)
                + shard.dropped.heap_bytes();
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
            spans_filtered: c.spans_filtered.load(Relaxed),
            edges_dropped_by_filter: c.edges_dropped_by_filter.load(Relaxed),
            dropped_sides: self.dropped_sides.load(Relaxed) as u64,
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
                dropped_sides: c.dropped_sides_overflow.load(Relaxed),
            },
        }
    }
}
