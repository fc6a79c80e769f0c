//! Reading a batch and preparing its spans: the attribute values each span
//! needs become interned ids, its side of the edge and its pairing key.

use super::*;

/// A resource's service id and its fact attributes as read: version, the
/// two spellings of the environment, namespace, Kubernetes namespace, owner.
/// They become strings only when they differ from what the map last saw.
#[derive(Debug, Clone, Copy)]
pub(super) struct ResourceFacts<'a> {
    pub(super) service: u32,
    pub(super) values: [Option<AttrValue<'a>>; 6],
}

/// The protocol values of one batch resolved so far, by their bytes.
#[derive(Default)]
pub(super) struct ProtocolCache<'a> {
    pub(super) values: Vec<(&'a [u8], u32)>,
    pub(super) http: Option<u32>,
}

impl ProtocolCache<'_> {
    const MAX: usize = 16;
}

/// A slot of [`Scratch::resource_dims`] not asked yet. A dimension's value on
/// a resource wins over the span's, so a resource's string value there is
/// resolved once, at its first span that asks, for every span of it. (Both
/// markers are beyond any interned id: ids index the interner's strings.)
const DIM_UNSET: u32 = u32::MAX;
/// A slot whose resource holds no string for the dimension: each span looks
/// for itself, as [`Engine::lookup`] does.
const DIM_PER_SPAN: u32 = u32::MAX - 1;

/// A span ready to pair: its side, the key it pairs on, its dimension values.
#[derive(Debug, Clone, Copy)]
pub(super) struct Prepared {
    pub(super) side: SideWrite,
    pub(super) key: Key,
    pub(super) dims_at: u32,
    /// Pairs with the producer named by a span link, not with its parent.
    pub(super) linked: bool,
    /// Left out by a filter policy: its other side is to be dropped too.
    pub(super) filtered: bool,
}

impl Engine {
    /// Feeds one OTLP traces batch. A malformed batch is rejected whole:
    /// nothing from it is applied and it is counted.
    pub fn consume(&self, data: &[u8], now_ns: u64) -> Result<ConsumeSummary, Error> {
        let mut s = self.scratch.take();
        let mut b = s.borrowed();
        let result = self.read_and_pair(data, now_ns, &mut b, &mut s);
        s.give_back(b);
        self.scratch.give(s);
        result
    }

    /// [`Engine::consume`] in a call's scratch buffers.
    fn read_and_pair<'a>(
        &self,
        data: &'a [u8],
        now_ns: u64,
        b: &mut Borrowed<'a>,
        s: &mut Scratch,
    ) -> Result<ConsumeSummary, Error> {
        let _ids = self.ids.read().unwrap_or_else(|p| p.into_inner());
        self.note_now(now_ns);
        let read = if data.len() > self.config.max_batch_bytes {
            Err(DecodeError {
                offset: 0,
                path: "ExportTraceServiceRequest",
                reason: "batch is larger than max_batch_bytes",
            })
        } else {
            wire::read_batch(data, &self.keys, &mut b.batch)
        };
        if let Err(e) = read {
            self.counters.batches_rejected.fetch_add(1, Relaxed);
            return Err(e.into());
        }
        let batch = &b.batch;
        let c = &self.counters;
        c.batches_accepted.fetch_add(1, Relaxed);
        c.spans_received.fetch_add(batch.spans.len() as u64 + batch.ignored_spans + batch.unnamed_spans, Relaxed);
        c.spans_ignored.fetch_add(batch.ignored_spans, Relaxed);
        c.spans_unnamed.fetch_add(batch.unnamed_spans, Relaxed);

        let filtered = self.prepare(b, s);
        if filtered > 0 {
            c.spans_filtered.fetch_add(filtered, Relaxed);
        }
        let Scratch { prepared, dims, starts, fill, order, busy, events, .. } = s;

        // Route to shards: a counting sort of the prepared spans by shard.
        let n = self.shards.len();
        let shard_of = |p: &Prepared| shard_index(&p.key, n);
        starts.clear();
        starts.resize(n + 1, 0);
        for p in prepared.iter() {
            starts[shard_of(p) + 1] += 1;
        }
        for i in 0..n {
            starts[i + 1] += starts[i];
        }
        order.clear();
        order.resize(prepared.len(), 0);
        fill.clear();
        fill.extend_from_slice(starts);
        for (i, p) in prepared.iter().enumerate() {
            let s = shard_of(p);
            order[fill[s] as usize] = i as u32;
            fill[s] += 1;
        }

        let mut tally = Tally::default();
        // About one edge per two spans; sized once rather than grown.
        events.clear();
        events.edges.reserve(prepared.len() / 2 + 16);
        events.dims.reserve((prepared.len() / 2 + 16) * self.dims_per_side() * 2);
        // A shard another call holds is taken after the others: calls from
        // several threads then overtake each other instead of queueing shard
        // by shard behind the first one.
        busy.clear();
        for s in 0..n {
            let (a, b) = (starts[s] as usize, starts[s + 1] as usize);
            if a == b {
                continue;
            }
            let Some(shard) = try_lock(&self.shards[s]) else {
                busy.push(s);
                continue;
            };
            self.pair_all(shard, &order[a..b], prepared, dims, now_ns, &mut tally, events);
        }
        for &s in busy.iter() {
            let (a, b) = (starts[s] as usize, starts[s + 1] as usize);
            self.pair_all(lock(&self.shards[s]), &order[a..b], prepared, dims, now_ns, &mut tally, events);
        }
        self.count(events, &b.facts, now_ns);
        self.add_tally(&tally);
        drop(_ids);
        // A flood of distinct names between two expiries must not grow the
        // interner: it is compacted as soon as it is due, not only on expiry.
        self.compact_interner_if_due();
        let spans = if filtered == 0 { prepared.len() } else { prepared.iter().filter(|p| !p.filtered).count() };
        let spans = spans as u64;
        Ok(ConsumeSummary { spans, dropped: tally.dropped })
    }

    /// Step 3 for one shard's spans of a call, under its lock.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn pair_all(
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

    /// Step 2: resolves each pairing span's strings to ids, into
    /// `s.prepared` and `s.dims` (and the resources' facts into `b.facts`,
    /// which like `b.protocols` comes empty from [`Scratch::borrowed`]).
    /// Spans the filter policies leave out keep only their key and side
    /// (nothing of theirs is interned); the value returned counts them.
    pub(super) fn prepare<'a>(&self, b: &mut Borrowed<'a>, s: &mut Scratch) -> u64 {
        let Borrowed { batch, facts, protocols } = b;
        let Scratch { prepared: out, dims, services, resource_dims, recent, .. } = s;
        out.clear();
        dims.clear();
        let mut filtered = 0;
        out.reserve(batch.spans.len());
        let mut r = Resolver::new(&self.interner, self.config.max_label_value_length, recent);
        services.clear();
        services
            .extend(batch.resources.iter().map(|res| res.service.map(|v| r.value(&v, self.es6())).unwrap_or(EMPTY)));
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
        let d = self.dims_per_side();
        resource_dims.clear();
        resource_dims.resize(batch.resources.len() * d, DIM_UNSET);
        for span in &batch.spans {
            let client_side = matches!(span.kind, SpanKind::Client | SpanKind::Producer);
            if !self.filter.is_empty() && !self.filter.keeps(batch, span) {
                filtered += 1;
                self.prepare_filtered(batch, span, client_side, out);
                continue;
            }
            let dims_at = dims.len() as u32;
            let per_span = |k: usize, r: &mut Resolver<'_>| {
                self.lookup(batch, span, k).map(|v| r.value(&v, self.es6())).unwrap_or(EMPTY)
            };
            // Only a resource whose key mask may hold a dimension has its slots
            // read; the other resources' spans look each value up. (One loop
            // for both costs spans without resource dimensions 1% more.)
            if batch.resources[span.resource as usize].mask & self.keys.dimensions_mask != 0 {
                let slots = &mut resource_dims[span.resource as usize * d..][..d];
                for (&k, slot) in self.keys.dimensions.iter().zip(slots) {
                    if *slot == DIM_UNSET {
                        *slot = match batch.resource_value(span.resource, k) {
                            Some(v @ AttrValue::Str(_)) => r.value(&v, self.es6()),
                            _ => DIM_PER_SPAN,
                        };
                    }
                    dims.push(if *slot == DIM_PER_SPAN { per_span(k, &mut r) } else { *slot });
                }
            } else {
                for &k in &self.keys.dimensions {
                    dims.push(per_span(k, &mut r));
                }
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
            let protocol = if self.graph.is_some() { self.protocol(batch, span, &mut r, protocols) } else { EMPTY };
            let side = SideWrite {
                kind: span.kind,
                service: services[span.resource as usize],
                start_ns: span.start_ns,
                end_ns: span.end_ns,
                error: span.is_error(),
                multiplier: self.multiplier(batch, span),
                peer,
                database,
                root: !client_side && !span.has_parent,
                protocol,
            };
            self.pairing_keys(batch, span, client_side, |key, linked| {
                let side = if linked { SideWrite { root: false, ..side } } else { side };
                out.push(Prepared { side, key, dims_at, linked, filtered: false });
            });
        }
        if r.truncated > 0 {
            self.counters.values_truncated.fetch_add(r.truncated, Relaxed);
        }
        filtered
    }

    /// The keys a filtered-out span would have paired on, marked filtered.
    /// A root server span waits for no one, so it leaves nothing behind.
    fn prepare_filtered(&self, batch: &Batch<'_>, span: &SpanRec, client_side: bool, out: &mut Vec<Prepared>) {
        let side = SideWrite {
            kind: span.kind,
            service: EMPTY,
            start_ns: 0,
            end_ns: 0,
            error: false,
            multiplier: 1.0,
            peer: EMPTY,
            database: None,
            root: false,
            protocol: EMPTY,
        };
        self.pairing_keys(batch, span, client_side, |key, linked| {
            if linked || client_side || span.has_parent {
                out.push(Prepared { side, key, dims_at: 0, linked, filtered: true });
            }
        });
    }

    /// The keys a span pairs on, each with whether it is a link: a consumer
    /// that pairs through its span links has one per link; any other span
    /// its trace ID with its own span ID (client side) or its parent's.
    fn pairing_keys(&self, batch: &Batch<'_>, span: &SpanRec, client_side: bool, mut push: impl FnMut(Key, bool)) {
        let links = batch.span_links(span);
        if self.config.span_links && span.kind == SpanKind::Consumer && !links.is_empty() {
            for l in links {
                push(Key { trace_id: l.trace_id, span_id: l.span_id }, true);
            }
        } else {
            let span_id = if client_side { span.span_id } else { span.parent_span_id };
            push(Key { trace_id: span.trace_id, span_id }, false);
        }
    }

    /// Resource first, then span, as both peers look up dimensions.
    pub(super) fn lookup<'a>(&self, batch: &Batch<'a>, span: &SpanRec, k: usize) -> Option<AttrValue<'a>> {
        batch.resource_value(span.resource, k).or_else(|| batch.span_value(span, k))
    }

    /// The id of the database node's name if this client span is a database call.
    pub(super) fn database_name(&self, batch: &Batch<'_>, span: &SpanRec, r: &mut Resolver<'_>) -> Option<u32> {
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
    pub(super) fn label<'a>(&self, v: &AttrValue<'a>) -> std::borrow::Cow<'a, str> {
        if v.is_too_deep() {
            self.counters.values_truncated.fetch_add(1, Relaxed);
        }
        v.to_label(self.es6())
    }

    /// Whether doubles are written as contrib writes them (see [`AttrValue::to_label`]).
    pub(super) fn es6(&self) -> bool {
        self.config.compat == crate::config::Compat::Contrib
    }

    /// The protocol an edge speaks, from the span's attributes. The few
    /// distinct values of a batch are resolved once each, by their bytes.
    pub(super) fn protocol<'a>(
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
            if let Some(&(_, id)) = cache.values.iter().find(|(k, _)| crate::wire::attributes::bytes_eq(k, b)) {
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
    pub(super) fn multiplier(&self, batch: &Batch<'_>, span: &SpanRec) -> f64 {
        let Some(k) = self.keys.multiplier else { return 1.0 };
        batch
            .span_value(span, k)
            .and_then(|v| v.as_positive_double())
            .or_else(|| batch.resource_value(span.resource, k).and_then(|v| v.as_positive_double()))
            .map(|ratio| 1.0 / ratio)
            .unwrap_or(1.0)
    }
}
