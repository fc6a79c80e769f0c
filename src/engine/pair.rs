//! Pairing in a shard: a span's side meets the other side waiting in the
//! store, or waits for it; what waits too long expires by the preset's rules.

use super::*;

impl Engine {
    /// Step 3 for one span, under its shard's lock.
    pub(super) fn pair(
        &self,
        shard: &mut Shard,
        p: &Prepared,
        dims: &[u32],
        now_ns: u64,
        t: &mut Tally,
        ev: &mut Events,
    ) {
        let client_side = p.side.is_client_side();
        let hash = shard.store.hash(&p.key);
        let found = shard.store.find(hash, &p.key);
        if p.filtered {
            self.drop_side(shard, p, found.map(|slot| (slot, hash)), now_ns, t);
            return;
        }
        let d = self.dims_per_side();
        let side_dims = &dims[p.dims_at as usize..p.dims_at as usize + d];

        if p.linked {
            let producer = found.filter(|&s| shard.edge(s).seen_client);
            let mut e = HalfEdge::default();
            e.write(&p.side);
            if let Some(slot) = producer {
                let mut prod = shard.edge(slot);
                e.take_client_from(&prod);
                prod.matched = true;
                shard.set_edge(slot, &prod);
                let client_dims = slot_dims(&shard.dims, slot, d, false);
                self.emit(&p.key, &e, client_dims, side_dims, Virtual::None, ev);
                t.edges_new += 1;
                t.completed += 1;
                return;
            }
            if shard.dropped.has_counterpart(&p.key, true) {
                t.dropped_by_filter += 1;
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

        let (slot, mut e) = match found {
            Some(slot) => {
                let mut e = shard.edge(slot);
                e.write(&p.side);
                write_slot_dims(&mut shard.dims, slot, d, !client_side, side_dims);
                (slot, e)
            }
            None => {
                // The other side was filtered out: this one goes with it.
                if shard.dropped.has_counterpart(&p.key, !client_side) {
                    t.dropped_by_filter += 1;
                    return;
                }
                // A new edge counts once it is stored or completes; a dropped span is not one.
                let mut e = HalfEdge::default();
                e.write(&p.side);
                if e.is_complete() && !(client_side && shard.pending.contains_key(&p.key)) {
                    // A database call: complete on arrival, never stored.
                    let none = &self.no_dims[..];
                    let (c, s) = if client_side { (side_dims, none) } else { (none, side_dims) };
                    self.emit(&p.key, &e, c, s, Virtual::None, ev);
                    t.edges_new += 1;
                    t.completed += 1;
                    return;
                }
                let seen = side_key(&e);
                match self.insert(shard, hash, p.key, e, now_ns, true, t, ev) {
                    Some(slot) => {
                        t.edges_new += 1;
                        write_slot_dims(&mut shard.dims, slot, d, !client_side, side_dims);
                        (slot, e)
                    }
                    None => {
                        t.dropped += 1;
                        ev.dropped.push(seen);
                        return;
                    }
                }
            }
        };
        // Consumers linked to a producer are rare: most shards wait with none,
        // and `remove` hashes the key even in an empty map.
        if client_side && !shard.pending.is_empty() {
            if let Some(waiting) = shard.pending.remove(&p.key) {
                self.serve_linked(shard, slot, &mut e, waiting, t, ev);
            }
        }
        if e.is_complete() {
            let c = slot_dims(&shard.dims, slot, d, false);
            let s = slot_dims(&shard.dims, slot, d, true);
            self.emit(&p.key, &e, c, s, Virtual::None, ev);
            t.completed += 1;
            shard.discard(slot, Some(hash));
        } else if found.is_some() || e.matched {
            shard.set_edge(slot, &e);
        }
    }

    /// A span a filter policy left out. The other side of its request, if
    /// waiting, is dropped now (a producer that already served a linked
    /// consumer stays, for the others); otherwise a marker drops it when it
    /// comes, for as long as an edge waits. The markers share `max_items`'
    /// bound; one that finds them all taken is counted and not kept.
    /// `found` is the waiting slot of the span's key, with the key's hash.
    fn drop_side(&self, shard: &mut Shard, p: &Prepared, found: Option<(u32, u64)>, now_ns: u64, t: &mut Tally) {
        let server = !p.side.is_client_side();
        if let Some((slot, hash)) = found {
            let e = shard.edge(slot);
            if !e.is_complete() && e.seen_server != server && !e.matched {
                shard.discard(slot, Some(hash));
                t.dropped_by_filter += 1;
            }
        }
        if !server {
            // Linked consumers waiting for this producer.
            for slot in shard.pending.remove(&p.key).unwrap_or_default() {
                shard.discard(slot, None);
                t.dropped_by_filter += 1;
            }
        }
        let deadline = now_ns.saturating_add(self.wait_ns);
        if shard.dropped.refresh(p.key, server, deadline) {
            return;
        }
        let max = self.config.max_items;
        if self.dropped_sides.fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1)).is_ok() {
            shard.dropped.insert(p.key, server, deadline);
        } else {
            self.counters.dropped_sides_overflow.fetch_add(1, Relaxed);
        }
    }

    /// A producer arrived after consumers linked to it: complete each of them.
    /// The producer stays, to serve later consumers until it expires; the
    /// caller stores `prod`, now marked as matched.
    pub(super) fn serve_linked(
        &self,
        shard: &mut Shard,
        producer_slot: u32,
        prod: &mut HalfEdge,
        waiting: Vec<u32>,
        t: &mut Tally,
        ev: &mut Events,
    ) {
        let d = self.dims_per_side();
        let key = shard.store.key(producer_slot);
        for slot in waiting {
            // Dimension values stay in place when a slot is removed (a slot
            // is cleared when it is reused), so they are read after.
            let mut e = shard.remove_edge(slot);
            e.take_client_from(prod);
            let client_dims = slot_dims(&shard.dims, producer_slot, d, false);
            let server_dims = slot_dims(&shard.dims, slot, d, true);
            self.emit(&key, &e, client_dims, server_dims, Virtual::None, ev);
            t.completed += 1;
        }
        prod.matched = true;
    }

    /// Inserts a half-edge; when the store is full, first expires its head if
    /// that is due. Returns None when the span has to be dropped.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn insert(
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
        let slot = shard.insert_edge(hash, key, &e, now_ns.saturating_add(self.wait_ns), indexed).ok()?;
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
    pub(super) fn settle_waiting(&self, before: usize, after: usize) {
        if after >= before {
            self.waiting.fetch_add(after - before, Relaxed);
        } else {
            self.waiting.fetch_sub(before - after, Relaxed);
        }
    }

    /// Builds the series event of a completed or virtual edge.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn emit(
        &self,
        key: &Key,
        e: &HalfEdge,
        client_dims: &[u32],
        server_dims: &[u32],
        side: Virtual,
        ev: &mut Events,
    ) {
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
            client_only_failure: e.failed
                && !e.server_failed
                && e.seen_client
                && e.seen_server
                && side == Virtual::None,
            virtual_side: if self.config.enable_virtual_node_label { side } else { Virtual::None },
            inferred: side,
            protocol: e.protocol,
            dims_at,
            multiplier: e.multiplier,
            client_s: e.client_dur_ns as f64 / 1e9,
            server_s: e.server_dur_ns as f64 / 1e9,
            messaging_s,
            trace_id: key.trace_id,
            span_id: key.span_id,
        });
    }

    /// Removes an expired entry and writes what it becomes.
    pub(super) fn expire_slot(&self, shard: &mut Shard, slot: u32, t: &mut Tally, ev: &mut Events) {
        let d = self.dims_per_side();
        let key = shard.store.key(slot);
        // Dimension values stay in place when a slot is removed.
        let mut e = shard.remove_edge(slot);
        let c = slot_dims(&shard.dims, slot, d, false);
        let s = slot_dims(&shard.dims, slot, d, true);
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
                self.emit(&key, &e, c, s, side, ev);
                t.virtual_edges += 1;
            }
            Expiry::Unmatched { counted } => {
                if counted {
                    count_expired(t, ev, &e);
                }
                // A root server span is a request from outside, series or not.
                if e.root && e.client == EMPTY && e.server != EMPTY && e.conn != ConnType::MessagingSystem {
                    ev.entries.push(EdgeEvent {
                        client: self.user,
                        server: e.server,
                        conn: ConnType::VirtualNode,
                        failed: e.failed,
                        client_only_failure: false,
                        virtual_side: Virtual::None,
                        inferred: Virtual::Client,
                        protocol: e.protocol,
                        dims_at: 0,
                        multiplier: e.multiplier,
                        client_s: e.server_dur_ns as f64 / 1e9,
                        server_s: e.server_dur_ns as f64 / 1e9,
                        messaging_s: None,
                        trace_id: key.trace_id,
                        span_id: key.span_id,
                    });
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

    pub(super) fn expire_inner(&self, now_ns: u64, all: bool) {
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
                let markers = shard.dropped.expire(now_ns, all);
                if markers > 0 {
                    self.dropped_sides.fetch_sub(markers, Relaxed);
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
                g.history.push(map::history::Snapshot::of(&view));
            }
        }
    }

    /// Step 4: applies a call's events to the series table and the map.
    /// They do not depend on each other, so a call that finds the series
    /// table busy feeds the map first: two calls finishing together then
    /// work side by side instead of one waiting for the other.
    pub(super) fn count(&self, events: &Events, facts: &[ResourceFacts<'_>], now_ns: u64) {
        let series = |t: &mut SeriesTable| t.apply(events, self.dims_per_series(), self.config.failed_label, now_ns);
        let graph =
            self.graph.as_ref().filter(|_| !events.edges.is_empty() || !events.entries.is_empty() || !facts.is_empty());
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
}
