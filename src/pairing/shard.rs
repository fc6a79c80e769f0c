//! One shard of the pairing store, and how spans and their dimension values
//! are placed in shards and slots.

use super::dropped::DroppedSides;
use super::store::Full;
use super::waiting::{Indexes, Waiting};
use super::{HalfEdge, Key, Store};
use crate::series::{SideKey, intern::EMPTY};
use hashbrown::HashMap;

/// One shard of the pairing store.
#[derive(Debug)]
pub(crate) struct Shard {
    /// Waiting edges, one side each; go through [`Shard::edge`] and the
    /// methods beside it, which know where a whole edge is kept.
    pub(crate) store: Store<Waiting>,
    /// Slot → the edges in the store that do not fit one side (see
    /// [`Waiting`]: both sides held, as a database call holds them while its
    /// linked consumers are served, a duration past 40 bits, a full table of
    /// indexes): too rare to widen every slot for.
    pub(crate) whole: HashMap<u32, HalfEdge>,
    /// The multipliers and protocols the waiting sides hold by index.
    pub(crate) indexes: Indexes,
    /// Dimension values per store slot: the client side's, then the server side's.
    pub(crate) dims: Vec<u32>,
    /// Per store slot, the time of the side waiting in it (the client's end
    /// or the server's start), kept only when the messaging-latency
    /// histogram, its one reader, is on (`None` otherwise).
    pub(crate) times: Option<Vec<u64>>,
    /// Producer key → slots of linked consumers waiting for that producer.
    pub(crate) pending: HashMap<Key, Vec<u32>>,
    /// Sides a filter policy dropped, whose other side is dropped on arrival.
    pub(crate) dropped: DroppedSides,
}

impl Shard {
    /// The edge waiting in `slot`.
    #[inline]
    pub(crate) fn edge(&self, slot: u32) -> HalfEdge {
        let w = self.store.get(slot);
        if w.is_whole() {
            return self.whole[&slot];
        }
        let mut e = w.edge(&self.indexes);
        if let Some(times) = &self.times {
            let t = times[slot as usize];
            if e.seen_client { e.client_end_ns = t } else { e.server_start_ns = t }
        }
        e
    }

    /// Replaces the edge waiting in `slot`.
    pub(crate) fn set_edge(&mut self, slot: u32, e: &HalfEdge) {
        // The old side's indexes go first, so that the new one can take
        // them when every index is held.
        let old = *self.store.get(slot);
        self.indexes.release(&old);
        let new = self.place(slot, e);
        *self.store.get_mut(slot) = new;
    }

    /// Stores `e` (see [`Store::insert`]).
    pub(crate) fn insert_edge(
        &mut self,
        hash: u64,
        key: Key,
        e: &HalfEdge,
        expires_ns: u64,
        indexed: bool,
    ) -> Result<u32, Full> {
        match Waiting::one_side(e, &mut self.indexes) {
            Some(w) => {
                let slot =
                    self.store.insert(hash, key, w, expires_ns, indexed).inspect_err(|_| self.indexes.release(&w))?;
                self.keep_time(slot, e);
                Ok(slot)
            }
            None => {
                let slot = self.store.insert(hash, key, Waiting::whole(), expires_ns, indexed)?;
                self.whole.insert(slot, *e);
                Ok(slot)
            }
        }
    }

    /// Removes the edge in `slot`, unread; `hash` as [`Store::remove`] takes it.
    pub(crate) fn discard(&mut self, slot: u32, hash: Option<u64>) {
        let w = self.store.remove(slot, hash);
        if w.is_whole() {
            self.whole.remove(&slot);
        }
        self.indexes.release(&w);
    }

    /// Removes the edge in `slot` and returns it.
    pub(crate) fn remove_edge(&mut self, slot: u32) -> HalfEdge {
        let e = self.edge(slot);
        self.discard(slot, None);
        e
    }

    /// Keeps the time of the one side `e` holds, if times are kept.
    #[inline]
    fn keep_time(&mut self, slot: u32, e: &HalfEdge) {
        if let Some(times) = &mut self.times {
            let at = slot as usize;
            if times.len() <= at {
                times.resize(at + 1, 0);
            }
            times[at] = if e.seen_client { e.client_end_ns } else { e.server_start_ns };
        }
    }

    /// `e` as it waits in `slot`: one side in the slot, or the whole edge
    /// apart and a marker in the slot.
    fn place(&mut self, slot: u32, e: &HalfEdge) -> Waiting {
        match Waiting::one_side(e, &mut self.indexes) {
            Some(w) => {
                if !self.whole.is_empty() {
                    self.whole.remove(&slot);
                }
                self.keep_time(slot, e);
                w
            }
            None => {
                self.whole.insert(slot, *e);
                Waiting::whole()
            }
        }
    }
}

/// Spans of one trace always land in the same shard.
#[inline]
pub(crate) fn shard_index(key: &Key, n: usize) -> usize {
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

pub(crate) fn slot_dims(dims: &[u32], slot: u32, d: usize, server: bool) -> &[u32] {
    if d == 0 {
        return &[];
    }
    let at = slot as usize * 2 * d + if server { d } else { 0 };
    &dims[at..at + d]
}

/// Writes a side's dimension values; a dimension the span does not have
/// keeps the value an earlier span of the same side gave it (both peers merge).
pub(crate) fn write_slot_dims(dims: &mut [u32], slot: u32, d: usize, server: bool, values: &[u32]) {
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

pub(crate) fn side_key(e: &HalfEdge) -> SideKey {
    if e.seen_client {
        SideKey { client: e.client, server: EMPTY, conn: e.conn }
    } else {
        SideKey { client: EMPTY, server: e.server, conn: e.conn }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pairing::SideWrite;
    use crate::pairing::edge::tests::client;
    use crate::wire::SpanKind;

    fn shard() -> Shard {
        Shard {
            store: Store::new(8),
            whole: HashMap::new(),
            indexes: Default::default(),
            dims: Vec::new(),
            times: Some(Vec::new()),
            pending: HashMap::new(),
            dropped: Default::default(),
        }
    }

    /// One side waits in its slot; an edge that does not fit one side (a
    /// database call kept while linked consumers are served) waits whole,
    /// apart, and leaves nothing behind.
    #[test]
    fn edges_wait_in_one_side_or_whole() {
        let mut sh = shard();
        let side = SideWrite {
            kind: SpanKind::Client,
            service: 5,
            start_ns: 10,
            end_ns: 40,
            error: true,
            multiplier: 1.0,
            peer: EMPTY,
            database: None,
            root: false,
            protocol: EMPTY,
        };
        let mut one = HalfEdge::default();
        one.write(&side);
        let mut db = HalfEdge::default();
        db.write(&SideWrite { database: Some(7), ..side });
        let key = |n: u8| Key { trace_id: [n; 16], span_id: [n; 8] };
        let a = sh.insert_edge(sh.store.hash(&key(1)), key(1), &one, 100, true).unwrap();
        let b = sh.insert_edge(sh.store.hash(&key(2)), key(2), &db, 100, true).unwrap();
        assert_eq!((sh.edge(a), sh.edge(b)), (one, db));
        assert_eq!(sh.whole.len(), 1);
        // Written over with one side, the whole copy goes.
        sh.set_edge(b, &one);
        assert!(sh.whole.is_empty());
        sh.set_edge(b, &db);
        assert_eq!(sh.remove_edge(b), db);
        assert!(sh.whole.is_empty());
        sh.discard(a, None);
        assert!(sh.store.is_empty());
    }

    /// A side's time waits beside the store when times are kept and is
    /// left out when not; a duration past 40 bits waits whole, time and all.
    #[test]
    fn times_wait_beside_the_store_when_kept() {
        let (mut kept, mut timeless) = (shard(), Shard { times: None, ..shard() });
        let write = |kind: SpanKind, end_ns: u64| {
            let mut e = HalfEdge::default();
            e.write(&SideWrite { kind, end_ns, ..client(5, EMPTY) });
            e
        };
        let key = |n: u8| Key { trace_id: [n; 16], span_id: [n; 8] };
        let (client, server, long) =
            (write(SpanKind::Producer, 40), write(SpanKind::Consumer, 40), write(SpanKind::Client, 11 << 40));
        assert_eq!((client.client_end_ns, server.server_start_ns), (40, 10));
        for (n, e) in [(1, client), (2, server), (3, long)] {
            let a = kept.insert_edge(kept.store.hash(&key(n)), key(n), &e, 100, true).unwrap();
            let b = timeless.insert_edge(timeless.store.hash(&key(n)), key(n), &e, 100, true).unwrap();
            assert_eq!(kept.edge(a), e);
            let left_out = if n == 3 { e } else { HalfEdge { client_end_ns: 0, server_start_ns: 0, ..e } };
            assert_eq!(timeless.edge(b), left_out);
            assert_eq!(kept.remove_edge(a), e);
        }
        assert_eq!((kept.whole.len(), timeless.whole.len()), (0, 1));
        assert_eq!(kept.times.as_ref().map(Vec::len), Some(1), "one slot, reused");
        // Written over, the slot keeps the new side's time, and the protocol
        // index the old side held is free again.
        let a =
            kept.insert_edge(kept.store.hash(&key(4)), key(4), &HalfEdge { protocol: 7, ..client }, 100, true).unwrap();
        assert_eq!(kept.indexes.protocols.in_use(), 1);
        kept.set_edge(a, &server);
        assert_eq!((kept.edge(a), kept.indexes.protocols.in_use()), (server, 0));
    }

    /// A side's multiplier other than 1 waits as an index, comes back
    /// exactly, and frees its index whichever way the side leaves; with
    /// every index held, a side with a new multiplier waits whole.
    #[test]
    fn multipliers_wait_by_index_and_free_it_on_leaving() {
        let mut sh = shard();
        let side = |m: f64| {
            let mut e = HalfEdge::default();
            e.write(&SideWrite {
                kind: SpanKind::Server,
                service: 6,
                start_ns: 10,
                end_ns: 40,
                error: false,
                multiplier: m,
                peer: EMPTY,
                database: None,
                root: false,
                protocol: EMPTY,
            });
            e
        };
        let key = |n: u8| Key { trace_id: [n; 16], span_id: [n; 8] };
        let (third, ten) = (side(1.0 / 3.0), side(10.0));
        let a = sh.insert_edge(sh.store.hash(&key(1)), key(1), &third, 100, true).unwrap();
        let b = sh.insert_edge(sh.store.hash(&key(2)), key(2), &third, 100, true).unwrap();
        assert_eq!((sh.edge(a), sh.edge(b)), (third, third));
        assert_eq!(sh.indexes.multipliers.in_use(), 1);
        sh.set_edge(b, &ten);
        assert_eq!((sh.edge(a), sh.edge(b)), (third, ten));
        assert_eq!(sh.indexes.multipliers.in_use(), 2);
        assert_eq!(sh.remove_edge(a), third);
        assert_eq!(sh.indexes.multipliers.in_use(), 1);
        sh.discard(b, None);
        assert_eq!(sh.indexes.multipliers.in_use(), 0);
        assert!(sh.whole.is_empty());
        // A full store refuses the side and keeps no index for it.
        let mut small = Shard { store: Store::new(1), ..shard() };
        small.insert_edge(small.store.hash(&key(1)), key(1), &third, 100, true).unwrap();
        assert!(small.insert_edge(small.store.hash(&key(2)), key(2), &ten, 100, true).is_err());
        assert_eq!(small.indexes.multipliers.in_use(), 1);
        // Every index held: the next new multiplier waits whole.
        for i in 0..255u8 {
            assert!(sh.indexes.multipliers.acquire((2.0 + f64::from(i)).to_bits()).is_some());
        }
        let c = sh.insert_edge(sh.store.hash(&key(3)), key(3), &third, 100, true).unwrap();
        assert_eq!((sh.edge(c), sh.whole.len()), (third, 1));
    }
}
