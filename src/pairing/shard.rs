//! One shard of the pairing store, and how spans and their dimension values
//! are placed in shards and slots.

use super::dropped::DroppedSides;
use super::{HalfEdge, Key, Store};
use crate::series::{SideKey, intern::EMPTY};
use hashbrown::HashMap;

/// One shard of the pairing store.
#[derive(Debug)]
pub(crate) struct Shard {
    pub(crate) store: Store<HalfEdge>,
    /// Dimension values per store slot: the client side's, then the server side's.
    pub(crate) dims: Vec<u32>,
    /// Producer key → slots of linked consumers waiting for that producer.
    pub(crate) pending: HashMap<Key, Vec<u32>>,
    /// Sides a filter policy dropped, whose other side is dropped on arrival.
    pub(crate) dropped: DroppedSides,
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
