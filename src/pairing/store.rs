//! The pairing store: half-built edges waiting for their other side.
//!
//! Entries live in a slab, threaded on a doubly linked list in insertion
//! order. Every entry waits the same time, so insertion order is expiry
//! order and expiring is popping from the head. A hash table of slab indexes
//! (4 bytes an entry) finds an entry by its key; the key itself is kept once,
//! in the slab. Removing a completed entry is O(1) and frees its slot for
//! reuse, so memory follows the number of waiting entries, bounded by
//! `max_items`. An entry's expiry is kept to the millisecond, rounded up (it
//! never leaves early), in 32 bits counted from the store's epoch.

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use std::hash::BuildHasher;

/// Where two sides meet: the trace ID and the client span's ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Key {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

const NIL: u32 = u32::MAX;

const NS_PER_MS: u64 = 1_000_000;

/// Slots per chunk of the slab.
const CHUNK_SHIFT: u32 = 10;
const CHUNK: usize = 1 << CHUNK_SHIFT;

/// A vector in fixed-size chunks: it grows one chunk at a time and never
/// moves or doubles, so the memory held follows the number of slots (a
/// doubling `Vec` can hold twice what it uses). Each chunk is an array of
/// exactly `CHUNK` slots, so a slot's place in its chunk needs no bounds
/// check; slots past `len` hold defaults, and a chunk's memory is written
/// (and resident) from the moment it is added.
#[derive(Debug)]
struct Slab<N> {
    chunks: Vec<Box<[N; CHUNK]>>,
    len: usize,
}

impl<N: Default> Slab<N> {
    fn new() -> Self {
        Slab { chunks: Vec::new(), len: 0 }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn push(&mut self, n: N) {
        if self.len % CHUNK == 0 {
            let chunk: Box<[N]> = (0..CHUNK).map(|_| N::default()).collect();
            self.chunks.push(chunk.try_into().ok().expect("CHUNK slots"));
        }
        self.chunks.last_mut().expect("a chunk with room")[self.len & (CHUNK - 1)] = n;
        self.len += 1;
    }

    fn capacity(&self) -> usize {
        self.chunks.len() * CHUNK
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut N> {
        let len = self.len;
        self.chunks.iter_mut().flat_map(|c| c.iter_mut()).take(len)
    }
}

impl<N> std::ops::Index<usize> for Slab<N> {
    type Output = N;
    #[inline]
    fn index(&self, i: usize) -> &N {
        debug_assert!(i < self.len, "slot {i} past the slab's {} slots", self.len);
        &self.chunks[i >> CHUNK_SHIFT][i & (CHUNK - 1)]
    }
}

impl<N> std::ops::IndexMut<usize> for Slab<N> {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut N {
        debug_assert!(i < self.len, "slot {i} past the slab's {} slots", self.len);
        &mut self.chunks[i >> CHUNK_SHIFT][i & (CHUNK - 1)]
    }
}

#[derive(Debug, Default)]
struct Node<T> {
    key: Key,
    prev: u32,
    next: u32,
    /// When the entry expires, in whole milliseconds after the store's epoch.
    expires: u32,
    value: T,
}

/// One bit per slot, beside the slab: a flag in the node would take 8 bytes
/// of alignment padding.
#[derive(Debug, Default)]
struct Bits(Vec<u64>);

impl Bits {
    #[inline]
    fn get(&self, i: u32) -> bool {
        self.0.get(i as usize / 64).is_some_and(|w| w >> (i % 64) & 1 == 1)
    }

    #[inline]
    fn set(&mut self, i: u32, on: bool) {
        let w = i as usize / 64;
        if w >= self.0.len() {
            self.0.resize(w + 1, 0);
        }
        let bit = 1u64 << (i % 64);
        if on { self.0[w] |= bit } else { self.0[w] &= !bit }
    }

    fn bytes(&self) -> usize {
        self.0.capacity() * 8
    }
}

/// The store is full: a new entry was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

#[derive(Debug)]
pub struct Store<T> {
    nodes: Slab<Node<T>>,
    /// Slots holding an entry.
    live: Bits,
    /// Slots whose key is in the table (linked consumers are not: several
    /// may share their producer's key, and they are found through their
    /// producer).
    indexed: Bits,
    table: HashTable<u32>,
    hasher: RandomState,
    head: u32,
    tail: u32,
    free: u32,
    len: usize,
    max_items: usize,
    /// What the nodes' expiry times count from, in milliseconds.
    epoch_ms: u64,
}

impl<T: Default> Store<T> {
    pub fn new(max_items: usize) -> Store<T> {
        Store {
            nodes: Slab::new(),
            live: Bits::default(),
            indexed: Bits::default(),
            table: HashTable::new(),
            hasher: RandomState::default(),
            head: NIL,
            tail: NIL,
            free: NIL,
            len: 0,
            max_items,
            epoch_ms: 0,
        }
    }

    #[inline]
    pub fn hash(&self, key: &Key) -> u64 {
        self.hasher.hash_one(key)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len >= self.max_items
    }

    /// The slot holding `key`, if any.
    #[inline]
    pub fn find(&self, hash: u64, key: &Key) -> Option<u32> {
        let nodes = &self.nodes;
        self.table.find(hash, |&s| nodes[s as usize].key == *key).copied()
    }

    #[inline]
    pub fn get_mut(&mut self, slot: u32) -> &mut T {
        &mut self.nodes[slot as usize].value
    }

    #[inline]
    pub fn get(&self, slot: u32) -> &T {
        &self.nodes[slot as usize].value
    }

    pub fn key(&self, slot: u32) -> Key {
        self.nodes[slot as usize].key
    }

    /// Appends an entry that expires at `expires_ns`. With `indexed`, it can
    /// be found by `find`; the caller guarantees the key is not present yet.
    pub fn insert(&mut self, hash: u64, key: Key, value: T, expires_ns: u64, indexed: bool) -> Result<u32, Full> {
        if self.is_full() {
            return Err(Full);
        }
        let expires = self.expiry(expires_ns);
        let slot = if self.free != NIL {
            let s = self.free;
            self.free = self.nodes[s as usize].next;
            let n = &mut self.nodes[s as usize];
            n.key = key;
            n.value = value;
            n.expires = expires;
            s
        } else {
            let s = self.nodes.len() as u32;
            self.nodes.push(Node { key, prev: NIL, next: NIL, expires, value });
            s
        };
        self.live.set(slot, true);
        self.indexed.set(slot, indexed);
        // Link at the tail.
        self.nodes[slot as usize].prev = self.tail;
        self.nodes[slot as usize].next = NIL;
        if self.tail != NIL {
            self.nodes[self.tail as usize].next = slot;
        } else {
            self.head = slot;
        }
        self.tail = slot;
        if indexed {
            let (nodes, hasher) = (&self.nodes, &self.hasher);
            self.table.insert_unique(hash, slot, |&s| hasher.hash_one(nodes[s as usize].key));
        }
        self.len += 1;
        Ok(slot)
    }

    /// Removes the entry in `slot` and returns its value. `hash` is its
    /// key's hash when the caller has it at hand (it found the entry), to
    /// save hashing the key again.
    pub fn remove(&mut self, slot: u32, hash: Option<u64>) -> T {
        debug_assert!(self.live.get(slot));
        let indexed = self.indexed.get(slot);
        let (prev, next) = {
            let n = &self.nodes[slot as usize];
            (n.prev, n.next)
        };
        if indexed {
            let hash = hash.unwrap_or_else(|| self.hash(&self.nodes[slot as usize].key));
            debug_assert_eq!(hash, self.hash(&self.nodes[slot as usize].key));
            if let Ok(entry) = self.table.find_entry(hash, |&s| s == slot) {
                entry.remove();
            }
        }
        if prev != NIL {
            self.nodes[prev as usize].next = next;
        } else {
            self.head = next;
        }
        if next != NIL {
            self.nodes[next as usize].prev = prev;
        } else {
            self.tail = prev;
        }
        self.live.set(slot, false);
        self.indexed.set(slot, false);
        let n = &mut self.nodes[slot as usize];
        n.next = self.free;
        n.prev = NIL;
        self.free = slot;
        self.len -= 1;
        std::mem::take(&mut n.value)
    }

    /// The oldest entry if it has expired at `now_ns` (or unconditionally with `all`).
    pub fn expired_head(&self, now_ns: u64, all: bool) -> Option<u32> {
        if self.head == NIL {
            return None;
        }
        let n = &self.nodes[self.head as usize];
        (all || self.epoch_ms + u64::from(n.expires) <= now_ns / NS_PER_MS).then_some(self.head)
    }

    /// `expires_ns` as a node keeps it: rounded up to the millisecond and
    /// counted from the epoch. An empty store starts its epoch at the first
    /// expiry. A time before the epoch (the caller's clock went back) moves
    /// the epoch back to it; a time past what 32 bits count from the epoch
    /// (about 49.7 days) moves it forward, to the head's time or half that
    /// range behind the new one, whichever is later, so that the next move
    /// is at least 24.8 days of clock away.
    #[inline]
    fn expiry(&mut self, expires_ns: u64) -> u32 {
        let ms = expires_ns.div_ceil(NS_PER_MS);
        if self.len == 0 {
            self.epoch_ms = ms;
        } else if ms < self.epoch_ms {
            self.move_epoch(ms);
        } else if ms - self.epoch_ms > u64::from(u32::MAX) {
            let head = self.epoch_ms + u64::from(self.nodes[self.head as usize].expires);
            self.move_epoch(head.max(ms - u64::from(u32::MAX / 2)).min(ms));
        }
        (ms - self.epoch_ms) as u32
    }

    /// Counts every waiting entry's expiry from `epoch_ms`. An entry due
    /// before a later epoch becomes due at it, and one due more than 32 bits
    /// of milliseconds after an earlier epoch at the end of that range. With
    /// a clock that moves forward and a wait of at most 24 days
    /// ([`crate::config::MAX_WAIT`]), neither changes when anything leaves:
    /// the entries due before a forward move's epoch are due already (that
    /// epoch is at most the newest time less 24.8 days, before now), and the
    /// waiting entries' times never lie 49.7 days apart.
    #[cold]
    fn move_epoch(&mut self, epoch_ms: u64) {
        let mut at = self.head;
        while at != NIL {
            let n = &mut self.nodes[at as usize];
            let due = self.epoch_ms + u64::from(n.expires);
            n.expires = due.saturating_sub(epoch_ms).min(u64::from(u32::MAX)) as u32;
            at = n.next;
        }
        self.epoch_ms = epoch_ms;
    }

    /// Bytes held per slot, for the memory self-report.
    pub fn bytes_per_slot() -> usize {
        std::mem::size_of::<Node<T>>()
    }

    /// Approximate bytes held by the store's own structures.
    pub fn heap_bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Node<T>>()
            + self.live.bytes()
            + self.indexed.bytes()
            + self.table.allocation_size()
    }

    pub fn slot_capacity(&self) -> usize {
        self.nodes.len()
    }

    /// Calls `f` on every waiting entry with its slot.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(u32, &mut T)) {
        let live = &self.live;
        for (i, n) in self.nodes.iter_mut().enumerate() {
            if live.get(i as u32) {
                f(i as u32, &mut n.value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Key {
        Key { trace_id: [n; 16], span_id: [n; 8] }
    }

    const MS: u64 = NS_PER_MS;

    fn put(s: &mut Store<u32>, n: u8, expires_ns: u64) -> Result<u32, Full> {
        let k = key(n);
        let h = s.hash(&k);
        s.insert(h, k, n as u32, expires_ns, true)
    }

    #[test]
    fn insert_find_remove_reuses_slots() {
        let mut s = Store::<u32>::new(10);
        let a = put(&mut s, 1, 100 * MS).unwrap();
        let b = put(&mut s, 2, 200 * MS).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.find(s.hash(&key(1)), &key(1)), Some(a));
        assert_eq!(s.remove(a, None), 1);
        assert_eq!(s.find(s.hash(&key(1)), &key(1)), None);
        let c = put(&mut s, 3, 300 * MS).unwrap();
        assert_eq!(c, a, "freed slot is reused");
        assert_eq!(s.slot_capacity(), 2);
        // Expiry order stays insertion order: 2 then 3.
        assert_eq!(s.expired_head(1000 * MS, false), Some(b));
        s.remove(b, Some(s.hash(&key(2))));
        assert_eq!(s.expired_head(1000 * MS, false), Some(c));
    }

    #[test]
    fn expiry_pops_only_expired_heads() {
        let mut s = Store::<u32>::new(10);
        put(&mut s, 1, 100 * MS).unwrap();
        put(&mut s, 2, 200 * MS).unwrap();
        assert_eq!(s.expired_head(100 * MS - 1, false), None);
        let h = s.expired_head(100 * MS, false).unwrap();
        assert_eq!(s.remove(h, None), 1);
        assert_eq!(s.expired_head(150 * MS, false), None);
        assert!(s.expired_head(150 * MS, true).is_some());
    }

    /// Expiry is kept to the millisecond, rounded up: an entry leaves at the
    /// first millisecond at or after its time, never before it.
    #[test]
    fn expiry_rounds_up_to_the_millisecond() {
        let mut s = Store::<u32>::new(10);
        let a = put(&mut s, 1, 7 * MS + 1).unwrap();
        let b = put(&mut s, 2, 9 * MS).unwrap();
        assert_eq!(s.expired_head(7 * MS + 1, false), None);
        assert_eq!(s.expired_head(8 * MS - 1, false), None);
        assert_eq!(s.expired_head(8 * MS, false), Some(a));
        s.remove(a, None);
        assert_eq!(s.expired_head(9 * MS - 1, false), None);
        assert_eq!(s.expired_head(9 * MS, false), Some(b));
    }

    /// The caller's clock went back: the epoch follows it and every entry
    /// keeps its time. It jumped past what 32 bits of milliseconds count:
    /// the epoch moves forward to half that range behind the new entry, the
    /// entries due before it (already due) due at it, and the next entries
    /// find room without moving it again.
    #[test]
    fn the_epoch_follows_clocks_that_go_back_or_jump_far() {
        let mut s = Store::<u32>::new(10);
        let day = 86_400_000 * MS;
        let a = put(&mut s, 1, 100 * day).unwrap();
        let b = put(&mut s, 2, 99 * day).unwrap();
        assert_eq!(s.epoch_ms * MS, 99 * day);
        assert_eq!(s.expired_head(100 * day - 1, false), None);
        assert_eq!(s.expired_head(100 * day, false), Some(a));
        let c = put(&mut s, 3, 160 * day).unwrap();
        let moved = (160 * day) / MS - u64::from(u32::MAX / 2);
        assert_eq!(s.epoch_ms, moved);
        // a and b were due at days 100 and 99, before the new epoch (about
        // day 135.1): now due at it.
        assert_eq!(s.expired_head(moved * MS - 1, false), None);
        assert_eq!(s.expired_head(moved * MS, false), Some(a));
        s.remove(a, None);
        assert_eq!(s.expired_head(moved * MS, false), Some(b));
        s.remove(b, None);
        // Room for 24 more days of entries without a move.
        let d = put(&mut s, 4, 184 * day).unwrap();
        assert_eq!(s.epoch_ms, moved);
        assert_eq!(s.expired_head(160 * day - 1, false), None);
        assert_eq!(s.expired_head(160 * day, false), Some(c));
        s.remove(c, None);
        assert_eq!(s.expired_head(184 * day - 1, false), None);
        assert_eq!(s.expired_head(184 * day, false), Some(d));
        s.remove(d, None);
        // One entry from a clock far ahead does not hold up the ones after
        // it once it has gone.
        let far = put(&mut s, 5, 1000 * day).unwrap();
        let e = put(&mut s, 6, 3 * MS).unwrap();
        s.remove(far, None);
        assert_eq!(s.expired_head(3 * MS - 1, false), None);
        assert_eq!(s.expired_head(3 * MS, false), Some(e));
    }

    #[test]
    fn full_store_refuses_new_entries() {
        let mut s = Store::<u32>::new(2);
        put(&mut s, 1, MS).unwrap();
        put(&mut s, 2, MS).unwrap();
        assert_eq!(put(&mut s, 3, MS), Err(Full));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn unindexed_entries_expire_but_are_not_found() {
        let mut s = Store::<u32>::new(4);
        let k = key(7);
        let h = s.hash(&k);
        let slot = s.insert(h, k, 7, 5 * MS, false).unwrap();
        assert_eq!(s.find(h, &k), None);
        assert_eq!(s.expired_head(5 * MS, false), Some(slot));
        assert_eq!(s.remove(slot, Some(h)), 7);
        assert!(s.is_empty());
    }
}
