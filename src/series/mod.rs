//! The series that completed edges feed: request and failure counters and
//! latency histograms per label set, plus the unpaired and dropped span
//! counters. One table for the whole engine, so the series cap counts real
//! label sets; consumers update it once per batch with the events they
//! collected, not once per span.

pub mod exemplar;
mod hist;
pub mod intern;
mod kind;
pub mod native;
pub mod snapshot;

pub use exemplar::{Exemplar, Exemplars, Family, Kept, Row, Rows};
pub use hist::Hist;
pub use kind::{ConnType, Virtual};
pub use snapshot::{DimLabels, EdgeSeries, SideSeries, Snapshot};

use foldhash::fast::RandomState;
use hashbrown::{HashMap, HashTable};
use std::hash::{BuildHasher, Hash, Hasher};

/// A completed (or virtual) edge, ready to be counted.
#[derive(Debug, Clone, Copy)]
pub struct EdgeEvent {
    pub client: u32,
    pub server: u32,
    pub conn: ConnType,
    pub failed: bool,
    /// Failed on the client side only: both sides were seen and the server's
    /// span reported no error (the map tells these apart; the series do not).
    pub client_only_failure: bool,
    /// The `virtual_node` label value (None unless that label is enabled).
    pub virtual_side: Virtual,
    /// Which side was inferred, whatever the labels say.
    pub inferred: Virtual,
    pub protocol: u32,
    /// Range of the final dimension label values in the event buffer's `dims`.
    pub dims_at: u32,
    pub multiplier: f64,
    pub client_s: f64,
    pub server_s: f64,
    /// Consumer start minus producer end, when positive.
    pub messaging_s: Option<f64>,
    /// The request's trace and client span, for exemplars.
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

/// Events gathered during one call, applied under one lock.
#[derive(Debug, Default)]
pub struct Events {
    pub edges: Vec<EdgeEvent>,
    pub dims: Vec<u32>,
    pub unpaired: Vec<SideKey>,
    pub dropped: Vec<SideKey>,
    /// For the map only: requests entering from `user` (root server spans)
    /// that make no series because the preset's virtual nodes are off.
    pub entries: Vec<EdgeEvent>,
}

impl Events {
    pub fn clear(&mut self) {
        self.edges.clear();
        self.dims.clear();
        self.unpaired.clear();
        self.dropped.clear();
        self.entries.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.edges.is_empty() && self.unpaired.is_empty() && self.dropped.is_empty()
    }
}

/// Labels of the unpaired/dropped span counters: the side that was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SideKey {
    pub client: u32,
    pub server: u32,
    pub conn: ConnType,
}

/// The label set of a series, in ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeriesKey {
    pub client: u32,
    pub server: u32,
    pub conn: ConnType,
    pub failed: bool,
    pub virtual_side: Virtual,
    /// Dimension label values, in the order of [`crate::engine`]'s dimension labels.
    pub dims: Box<[u32]>,
}

#[derive(Debug, Clone)]
pub struct Values {
    pub request: f64,
    pub failed: f64,
    pub server: Hist,
    pub client: Hist,
    /// Boxed: most edges are not messaging edges.
    pub messaging: Option<Box<Hist>>,
    /// When the series was created: the request counter's and the latency
    /// histograms' start.
    pub created_ns: u64,
    pub updated_ns: u64,
    /// When the failure counter and the messaging histogram, which appear
    /// with their first observation, were created (0: not yet).
    pub failed_since_ns: u64,
    pub messaging_since_ns: u64,
    /// The last request of each bucket (None when exemplars are off). Always
    /// None in a snapshot, whose edges find their set exemplars through
    /// [`EdgeSeries::exemplars`].
    pub exemplars: Option<Exemplars>,
}

impl Values {
    /// Whether the failure counter exists yet (it appears with the first failure).
    pub fn has_failed(&self) -> bool {
        self.failed > 0.0 || self.failed_since_ns != 0
    }

    /// Whether the messaging histogram exists yet (it appears with the first observation).
    pub fn has_messaging(&self) -> bool {
        self.messaging.as_ref().is_some_and(|h| h.count > 0.0) || self.messaging_since_ns != 0
    }
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub key: SeriesKey,
    pub values: Values,
    /// Created by an edge with an inferred side (a virtual node).
    pub inferred: bool,
}

impl Values {
    /// A copy without the exemplars, which are most of a series' bytes: a
    /// snapshot copies only the set ones, into one list (see [`Rows`]).
    fn without_exemplars(&self) -> Values {
        Values {
            request: self.request,
            failed: self.failed,
            server: self.server.clone(),
            client: self.client.clone(),
            messaging: self.messaging.clone(),
            created_ns: self.created_ns,
            updated_ns: self.updated_ns,
            failed_since_ns: self.failed_since_ns,
            messaging_since_ns: self.messaging_since_ns,
            exemplars: None,
        }
    }
}

fn hash_parts(
    h: &RandomState,
    client: u32,
    server: u32,
    conn: ConnType,
    failed: bool,
    v: Virtual,
    dims: &[u32],
) -> u64 {
    let mut h = h.build_hasher();
    (client, server, conn, failed, v).hash(&mut h);
    dims.hash(&mut h);
    h.finish()
}

fn hash_key(h: &RandomState, k: &SeriesKey) -> u64 {
    hash_parts(h, k.client, k.server, k.conn, k.failed, k.virtual_side, &k.dims)
}

/// One unpaired or dropped span counter.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SideCount {
    pub value: f64,
    pub created_ns: u64,
    pub updated_ns: u64,
}

/// The unpaired and dropped span counters: one per side seen, up to their own
/// budget (so that a flood of names that never pair cannot use up the
/// request series' budget), then one overflow counter each.
#[derive(Debug, Default)]
pub struct SideCounters {
    pub unpaired: HashMap<SideKey, SideCount>,
    pub dropped: HashMap<SideKey, SideCount>,
    /// Counts of sides that found the budget full, labelled
    /// `otel_metric_overflow="true"` as the OpenTelemetry SDKs' cardinality
    /// limit labels them.
    pub unpaired_overflow: SideCount,
    pub dropped_overflow: SideCount,
    /// Spans counted in an overflow counter.
    pub overflowed: u64,
    max: usize,
}

impl SideCounters {
    fn len(&self) -> usize {
        self.unpaired.len() + self.dropped.len()
    }

    fn add(&mut self, dropped: bool, k: &SideKey, now_ns: u64) {
        let full = self.len() >= self.max;
        let (map, overflow) = if dropped {
            (&mut self.dropped, &mut self.dropped_overflow)
        } else {
            (&mut self.unpaired, &mut self.unpaired_overflow)
        };
        let c = match map.get_mut(k) {
            Some(c) => c,
            None if !full => map.entry(*k).or_insert(SideCount { value: 0.0, created_ns: now_ns, updated_ns: now_ns }),
            None => {
                self.overflowed += 1;
                if overflow.created_ns == 0 {
                    overflow.created_ns = now_ns;
                }
                overflow
            }
        };
        c.value += 1.0;
        c.updated_ns = c.updated_ns.max(now_ns);
    }
}

#[derive(Debug)]
pub struct SeriesTable {
    table: HashTable<Entry>,
    hasher: RandomState,
    pub sides: SideCounters,
    bounds: Box<[f64]>,
    messaging: bool,
    max_series: usize,
    /// Series created by edges with an inferred side. They may take at most
    /// half of `max_series`: spans that never pair (a flood of made-up names)
    /// then cannot keep the edges both sides report from being counted.
    inferred: usize,
    /// Edges not counted because the series cap was reached.
    pub refused: u64,
    /// Keep an exemplar per histogram bucket.
    exemplars: bool,
    /// Keep native buckets in every latency histogram, with these settings.
    native: Option<native::Settings>,
}

impl SeriesTable {
    /// A table of at most `max_series` request series and, apart from them,
    /// `max_side` unpaired and dropped span counters.
    pub fn new(bounds: &[f64], messaging: bool, max_series: usize, max_side: usize) -> SeriesTable {
        SeriesTable {
            table: HashTable::new(),
            hasher: RandomState::default(),
            sides: SideCounters { max: max_side, ..Default::default() },
            bounds: bounds.into(),
            messaging,
            max_series,
            inferred: 0,
            refused: 0,
            exemplars: false,
            native: None,
        }
    }

    /// The same table, keeping native buckets in its latency histograms (or not).
    pub fn with_native(mut self, native: Option<native::Settings>) -> SeriesTable {
        self.native = native;
        self
    }

    /// The same table, keeping (or not) the last request of each histogram
    /// bucket as its exemplar.
    pub fn with_exemplars(mut self, on: bool) -> SeriesTable {
        self.exemplars = on;
        self
    }

    fn hash_parts(&self, e: &EdgeEvent, failed: bool, dims: &[u32]) -> u64 {
        hash_parts(&self.hasher, e.client, e.server, e.conn, failed, e.virtual_side, dims)
    }

    /// Number of active label sets, counting the span counters too.
    pub fn len(&self) -> usize {
        self.table.len() + self.sides.len()
    }

    /// Applies a call's events. `failed_label` puts the failure flag in the key.
    pub fn apply(&mut self, ev: &Events, dims_per_edge: usize, failed_label: bool, now_ns: u64) {
        for e in &ev.edges {
            let dims = &ev.dims[e.dims_at as usize..e.dims_at as usize + dims_per_edge];
            self.record(e, dims, failed_label, now_ns);
        }
        for k in &ev.unpaired {
            self.sides.add(false, k, now_ns);
        }
        for k in &ev.dropped {
            self.sides.add(true, k, now_ns);
        }
    }

    fn record(&mut self, e: &EdgeEvent, dims: &[u32], failed_label: bool, now_ns: u64) {
        let failed_key = failed_label && e.failed;
        let hash = self.hash_parts(e, failed_key, dims);
        let found = self.table.find_mut(hash, |x| {
            x.key.client == e.client
                && x.key.server == e.server
                && x.key.conn == e.conn
                && x.key.failed == failed_key
                && x.key.virtual_side == e.virtual_side
                && *x.key.dims == *dims
        });
        let values = match found {
            Some(entry) => &mut entry.values,
            None => {
                let inferred = e.inferred != Virtual::None;
                if self.table.len() >= self.max_series || (inferred && self.inferred >= self.max_series / 2) {
                    self.refused += 1;
                    return;
                }
                let key = SeriesKey {
                    client: e.client,
                    server: e.server,
                    conn: e.conn,
                    failed: failed_key,
                    virtual_side: e.virtual_side,
                    dims: dims.into(),
                };
                let values = Values {
                    request: 0.0,
                    failed: 0.0,
                    server: Hist::with_native(self.bounds.len(), self.native.as_ref(), now_ns),
                    client: Hist::with_native(self.bounds.len(), self.native.as_ref(), now_ns),
                    messaging: self
                        .messaging
                        .then(|| Box::new(Hist::with_native(self.bounds.len(), self.native.as_ref(), now_ns))),
                    created_ns: now_ns,
                    updated_ns: now_ns,
                    failed_since_ns: 0,
                    messaging_since_ns: 0,
                    exemplars: self
                        .exemplars
                        .then(|| Exemplars::new(2 + usize::from(self.messaging), self.bounds.len() + 1)),
                };
                self.inferred += usize::from(inferred);
                let hasher = &self.hasher;
                let entry =
                    self.table.insert_unique(hash, Entry { key, values, inferred }, |x| hash_key(hasher, &x.key));
                &mut entry.into_mut().values
            }
        };
        let w = e.multiplier;
        values.request += w;
        if e.failed {
            values.failed += w;
            if values.failed_since_ns == 0 {
                values.failed_since_ns = now_ns.max(1);
            }
        }
        let native = self.native.as_ref();
        let server = values.server.observe_all(&self.bounds, native, e.server_s, w, now_ns);
        let client = values.client.observe_all(&self.bounds, native, e.client_s, w, now_ns);
        let example = |value| Exemplar { value, at_ns: now_ns.max(1), trace_id: e.trace_id, span_id: e.span_id };
        if let Some(x) = values.exemplars.as_mut() {
            x.set(Family::Server, server, example(e.server_s));
            x.set(Family::Client, client, example(e.client_s));
        }
        if let (Some(h), Some(m)) = (values.messaging.as_mut(), e.messaging_s) {
            let bucket = h.observe_all(&self.bounds, native, m, w, now_ns);
            if let Some(x) = values.exemplars.as_mut() {
                x.set(Family::Messaging, bucket, example(m));
            }
            if values.messaging_since_ns == 0 {
                values.messaging_since_ns = now_ns.max(1);
            }
        }
        values.updated_ns = values.updated_ns.max(now_ns);
    }

    /// Removes series and span counters not updated for `idle_ns`; returns
    /// how many.
    pub fn remove_idle(&mut self, now_ns: u64, idle_ns: u64) -> usize {
        let live = |t: u64| t.saturating_add(idle_ns) >= now_ns;
        let before = self.len();
        let mut gone_inferred = 0;
        self.table.retain(|x| {
            let keep = live(x.values.updated_ns);
            gone_inferred += usize::from(!keep && x.inferred);
            keep
        });
        self.inferred -= gone_inferred;
        self.sides.unpaired.retain(|_, c| live(c.updated_ns));
        self.sides.dropped.retain(|_, c| live(c.updated_ns));
        before - self.len()
    }

    /// Copies every series' values out, each handed to `f` beside the entry
    /// it was copied from (for its key). With a `hold` of `(now, hold_ns)`,
    /// what was created less than `hold_ns` before `now` is copied as zeros:
    /// every scraper then sees a new series at zero before its first value
    /// (so that `rate()` counts its first requests, as Tempo writes a 0
    /// sample first), and sees the same as any other scraper, whoever came
    /// first. The failure counter and the messaging histogram are held from
    /// their own creation. With `exemplars`, each series' set exemplars are
    /// appended to it and the rows handed to `f` say where. A read: nothing
    /// changes.
    pub fn snapshot_each(
        &self,
        hold: Option<(u64, u64)>,
        mut exemplars: Option<&mut Vec<Kept>>,
        mut f: impl FnMut(&Entry, Values, Rows),
    ) {
        if let Some(list) = exemplars.as_deref_mut() {
            // Most series hold one exemplar in each of their two histograms.
            list.reserve(2 * self.table.len());
        }
        for x in self.table.iter() {
            let mut c = x.values.without_exemplars();
            // A histogram read as zero has no exemplars either.
            let mut held_families = [false; 3];
            if let Some((now, hold_ns)) = hold {
                let held = |since: u64| since != 0 && now < since.saturating_add(hold_ns);
                if held(c.created_ns.max(1)) {
                    c.request = 0.0;
                    c.server = c.server.zeroed();
                    c.client = c.client.zeroed();
                    held_families[Family::Server as usize] = true;
                    held_families[Family::Client as usize] = true;
                }
                if held(c.failed_since_ns) {
                    c.failed = 0.0;
                }
                if held(c.messaging_since_ns) {
                    c.messaging = c.messaging.as_ref().map(|h| Box::new(h.zeroed()));
                    held_families[Family::Messaging as usize] = true;
                }
            }
            let rows = match (exemplars.as_deref_mut(), &x.values.exemplars) {
                (Some(list), Some(kept)) => kept.keep_set(held_families, list),
                (Some(list), None) => Rows([list.len() as u32; 4]),
                (None, _) => Rows::default(),
            };
            f(x, c, rows);
        }
    }

    /// [`SeriesTable::snapshot_each`] collected, with each series' key.
    #[cfg(test)]
    pub fn snapshot(&self, hold: Option<(u64, u64)>, exemplars: Option<&mut Vec<Kept>>) -> Vec<(Entry, Rows)> {
        let mut out = Vec::with_capacity(self.table.len());
        self.snapshot_each(hold, exemplars, |x, values, rows| {
            out.push((Entry { key: x.key.clone(), values, inferred: x.inferred }, rows));
        });
        out
    }

    /// Rewrites every interned id through `f` (after the interner was compacted).
    pub fn remap(&mut self, f: &mut impl FnMut(u32) -> u32) {
        let entries: Vec<Entry> = self.table.drain().collect();
        for mut x in entries {
            x.key.client = f(x.key.client);
            x.key.server = f(x.key.server);
            for d in x.key.dims.iter_mut() {
                *d = f(*d);
            }
            let hash = self.hash_key(&x.key);
            let hasher = &self.hasher;
            self.table.insert_unique(hash, x, |y| hash_key(hasher, &y.key));
        }
        let mut side = |m: &mut HashMap<SideKey, SideCount>| {
            *m = m
                .drain()
                .map(|(k, v)| (SideKey { client: f(k.client), server: f(k.server), conn: k.conn }, v))
                .collect();
        };
        side(&mut self.sides.unpaired);
        side(&mut self.sides.dropped);
    }

    fn hash_key(&self, k: &SeriesKey) -> u64 {
        hash_key(&self.hasher, k)
    }

    pub fn bounds(&self) -> &[f64] {
        &self.bounds
    }

    #[cfg(test)]
    pub fn edge_series(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests;
