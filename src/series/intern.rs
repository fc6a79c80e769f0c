//! Label values (service names, dimension values, peer names) stored once and
//! referred to by a 4-byte id, so waiting edges and series keys stay small
//! and compare as integers. Id 0 is the empty string, which the peers treat
//! as "absent" (an empty label is omitted, an empty service never pairs).

use crate::wire::attributes::AttrValue;
use foldhash::fast::RandomState;
use hashbrown::HashTable;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{RwLock, RwLockReadGuard};

/// The empty string's id.
pub(crate) const EMPTY: u32 = 0;

#[derive(Debug)]
pub struct Interner {
    strings: Vec<Box<str>>,
    table: HashTable<Entry>,
    hasher: RandomState,
    bytes: usize,
    /// Unique to this interner (see [`EPOCHS`]): a compaction replaces the
    /// interner and renumbers the ids, which [`Recent`] checks.
    epoch: u64,
}

/// A table entry: the id and, for strings of at most 16 bytes, the whole
/// string packed into two words, so that a look-up of a short value (most
/// label values: methods, status codes, service names) compares integers
/// and never follows the id to the string.
#[derive(Debug, Clone, Copy)]
struct Entry {
    id: u32,
    len: u32,
    head: u64,
    tail: u64,
}

/// Where each new interner's epoch comes from; [`Recent::default`] holds
/// `u64::MAX`, which no interner reaches.
static EPOCHS: AtomicU64 = AtomicU64::new(0);

/// At most this many bytes are packed into an [`Entry`].
const PACKED: usize = 16;

/// Two words that, with its length, determine a string of at most 16
/// bytes: overlapping loads rather than a copy, so no call to `memcpy`.
/// Longer strings get their first and sixteenth-from-last eight bytes,
/// which are never compared alone.
#[inline(always)]
fn pack(b: &[u8]) -> (u64, u64) {
    let n = b.len();
    let load8 = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let load4 = |at: usize| u64::from(u32::from_le_bytes(b[at..at + 4].try_into().unwrap()));
    match n {
        0 => (0, 0),
        1..4 => (u64::from(b[0]) | u64::from(b[n / 2]) << 8 | u64::from(b[n - 1]) << 16, 0),
        4..8 => (load4(0) | load4(n - 4) << 32, 0),
        8..=PACKED => (load8(0), load8(n - 8)),
        _ => (load8(0), load8(PACKED - 8)),
    }
}

impl Entry {
    #[inline]
    fn new(id: u32, b: &[u8]) -> Entry {
        let (head, tail) = pack(b);
        Entry { id, len: b.len() as u32, head, tail }
    }
}

impl Default for Interner {
    fn default() -> Self {
        let mut i = Interner {
            strings: Vec::new(),
            table: HashTable::new(),
            hasher: RandomState::default(),
            bytes: 0,
            epoch: EPOCHS.fetch_add(1, Relaxed),
        };
        i.push("");
        i
    }
}

impl Interner {
    /// The hash of a string: of its packed words when it fits in an entry
    /// (three word writes rather than a pass over its bytes), of its bytes
    /// otherwise. Seeded at random either way, so chosen values cannot
    /// collide on purpose.
    #[inline]
    fn hash(hasher: &RandomState, b: &[u8]) -> u64 {
        if b.len() <= PACKED { Self::hash_packed(hasher, pack(b), b.len()) } else { hasher.hash_one(b) }
    }

    #[inline]
    fn hash_packed(hasher: &RandomState, (head, tail): (u64, u64), len: usize) -> u64 {
        hasher.hash_one((head, tail, len))
    }

    pub fn lookup(&self, s: &str) -> Option<u32> {
        self.lookup_bytes(s.as_bytes())
    }

    /// Looks a string up by its bytes: a match is valid UTF-8, since every
    /// string held is, so callers can skip checking the bytes first.
    #[inline]
    pub fn lookup_bytes(&self, b: &[u8]) -> Option<u32> {
        let len = b.len();
        if len <= PACKED {
            let (head, tail) = pack(b);
            return self.lookup_packed(head, tail, len);
        }
        let h = self.hasher.hash_one(b);
        self.table.find(h, |e| e.len as usize == len && self.strings[e.id as usize].as_bytes() == b).map(|e| e.id)
    }

    /// Looks up a string of at most [`PACKED`] bytes by its packed words.
    #[inline]
    fn lookup_packed(&self, head: u64, tail: u64, len: usize) -> Option<u32> {
        let h = Self::hash_packed(&self.hasher, (head, tail), len);
        self.table.find(h, |e| e.len as usize == len && e.head == head && e.tail == tail).map(|e| e.id)
    }

    fn push(&mut self, s: &str) -> u32 {
        let id = self.strings.len() as u32;
        self.bytes += s.len();
        self.strings.push(s.into());
        let (strings, hasher) = (&self.strings, &self.hasher);
        self.table.insert_unique(Self::hash(hasher, s.as_bytes()), Entry::new(id, s.as_bytes()), |e| {
            Self::hash(hasher, strings[e.id as usize].as_bytes())
        });
        id
    }

    pub fn insert(&mut self, s: &str) -> u32 {
        match self.lookup(s) {
            Some(id) => id,
            None => self.push(s),
        }
    }

    #[inline]
    pub fn get(&self, id: u32) -> &str {
        &self.strings[id as usize]
    }

    pub fn len(&self) -> usize {
        self.strings.len()
    }

    /// Total bytes of the strings held.
    pub fn string_bytes(&self) -> usize {
        self.bytes
    }
}

/// Truncates `s` to at most `max` bytes at a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The short values resolved last, direct-mapped by their packed words, kept
/// from call to call: batches repeat a few values (methods, peers) on many
/// spans, and a hit here costs a fraction of the table's look-up. Chosen
/// values can only make it miss. An entry of length 0 is empty (an empty
/// value never gets here).
#[derive(Debug, Clone)]
pub struct Recent {
    /// The [`Interner::epoch`] whose ids the entries hold.
    epoch: u64,
    entries: [Entry; RECENT],
}

/// Entries in a [`Recent`].
const RECENT: usize = 64;

impl Entry {
    /// An entry of length 0: empty, since no string of length 0 is looked up.
    const NONE: Entry = Entry { id: 0, len: 0, head: 0, tail: 0 };
}

impl Default for Recent {
    fn default() -> Self {
        Recent { epoch: u64::MAX, entries: [Entry::NONE; RECENT] }
    }
}

/// Resolves many strings under one read lock, taking the write lock only for
/// strings not seen before. Never hold a `Resolver` while taking a shard lock.
pub struct Resolver<'a> {
    lock: &'a RwLock<Interner>,
    guard: Option<RwLockReadGuard<'a, Interner>>,
    max_len: usize,
    recent: &'a mut Recent,
    /// Values whose string form was cut at the nesting limit, for the
    /// self-report's `values_truncated`.
    pub truncated: u64,
}

impl<'a> Resolver<'a> {
    pub fn new(lock: &'a RwLock<Interner>, max_len: usize, recent: &'a mut Recent) -> Self {
        let guard = lock.read().unwrap_or_else(|p| p.into_inner());
        if recent.epoch != guard.epoch {
            *recent = Recent { epoch: guard.epoch, entries: [Entry::NONE; RECENT] };
        }
        Resolver { lock, guard: Some(guard), max_len, recent, truncated: 0 }
    }

    /// The id of a held string of at most [`PACKED`] bytes, through
    /// [`Resolver::recent`].
    #[inline]
    fn lookup_short(&mut self, b: &[u8]) -> Option<u32> {
        let (head, tail) = pack(b);
        let len = b.len() as u32;
        let h = (head ^ tail.rotate_left(32) ^ u64::from(len)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let e = &mut self.recent.entries[(h >> (64 - RECENT.trailing_zeros())) as usize & (RECENT - 1)];
        if e.len == len && e.head == head && e.tail == tail {
            return Some(e.id);
        }
        let id = self.guard.as_ref()?.lookup_packed(head, tail, b.len())?;
        *e = Entry { id, len, head, tail };
        Some(id)
    }

    #[inline]
    pub fn id(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            return EMPTY;
        }
        let s = truncate(s, self.max_len);
        if let Some(id) = self.guard.as_ref().and_then(|g| g.lookup(s)) {
            return id;
        }
        self.guard = None;
        let id = self.lock.write().unwrap_or_else(|p| p.into_inner()).insert(s);
        self.guard = Some(self.lock.read().unwrap_or_else(|p| p.into_inner()));
        id
    }

    /// The id of an attribute value written as a label (doubles as
    /// JavaScript writes them when `es6`). A string already held is found by
    /// its bytes, without the UTF-8 check and copy that writing it costs.
    #[inline]
    pub fn value(&mut self, v: &AttrValue<'_>, es6: bool) -> u32 {
        if let AttrValue::Str(b) = *v {
            if b.is_empty() {
                return EMPTY;
            }
            if b.len() <= self.max_len {
                let found = if b.len() <= PACKED {
                    self.lookup_short(b)
                } else {
                    self.guard.as_ref().and_then(|g| g.lookup_bytes(b))
                };
                if let Some(id) = found {
                    return id;
                }
            }
        }
        // Not a string held already: the slow path, where nested values are.
        self.truncated += u64::from(v.is_too_deep());
        self.id(&v.to_label(es6))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_empty_is_zero() {
        let mut i = Interner::default();
        assert_eq!(i.lookup(""), Some(EMPTY));
        let a = i.insert("checkout");
        let b = i.insert("payment");
        assert_ne!(a, b);
        assert_eq!(i.insert("checkout"), a);
        assert_eq!(i.get(b), "payment");
    }

    #[test]
    fn strings_differing_in_one_byte_or_in_length_are_told_apart() {
        // Every length around the packed forms' limits, each byte position
        // changed in turn, plus zero bytes that packing pads with.
        let mut i = Interner::default();
        let mut all = Vec::new();
        for n in 0..=20usize {
            let base: Vec<u8> = (0..n as u8).map(|k| b'a' + k).collect();
            all.push(base.clone());
            for at in 0..n {
                for b in [0u8, b'z'] {
                    let mut v = base.clone();
                    v[at] = b;
                    all.push(v);
                }
            }
        }
        all.sort();
        all.dedup();
        let ids: Vec<u32> = all.iter().map(|v| i.insert(std::str::from_utf8(v).unwrap())).collect();
        assert_eq!(i.len(), all.len(), "one id per distinct string, the empty one included");
        for (v, &id) in all.iter().zip(&ids) {
            assert_eq!(i.lookup_bytes(v), Some(id));
            assert_eq!(i.get(id).as_bytes(), v.as_slice());
        }
        assert_eq!(i.lookup_bytes(b"abcdefghijklmnopqrstu"), None);
        assert_eq!(i.lookup_bytes(b"ab\0\0\0"), None, "three bytes changed: not held");
    }

    #[test]
    fn recent_values_give_the_current_ids_across_calls_and_compactions() {
        let lock = RwLock::new(Interner::default());
        let mut recent = Recent::default();
        // Values that pack alike and differ only in length, and more short
        // values than entries, so that they displace each other.
        let mut values: Vec<String> = ["a", "aa", "aaa", "v1", "v11", "v111"].map(String::from).to_vec();
        values.extend((0..200).map(|n| format!("value-{n}")));
        let resolve = |lock: &RwLock<Interner>, recent: &mut Recent| -> Vec<u32> {
            let mut r = Resolver::new(lock, 64, recent);
            // Each value twice in a row: the second is found in its entry.
            values
                .iter()
                .map(|v| {
                    let first = r.value(&AttrValue::Str(v.as_bytes()), false);
                    assert_eq!(r.value(&AttrValue::Str(v.as_bytes()), false), first, "{v}");
                    first
                })
                .collect()
        };
        let first = resolve(&lock, &mut recent);
        for _ in 0..2 {
            assert_eq!(resolve(&lock, &mut recent), first);
        }
        for (v, &id) in values.iter().zip(&first) {
            assert_eq!(lock.read().unwrap().get(id), v);
        }
        // A compaction renumbers: the same strings in a new interner, in
        // another order. The values resolved last are checked first, while
        // their old ids are still in the entries.
        let mut next = Interner::default();
        for v in values.iter().rev() {
            next.insert(v);
        }
        let want: Vec<u32> = values.iter().rev().map(|v| next.lookup(v).unwrap()).collect();
        *lock.write().unwrap() = next;
        let mut r = Resolver::new(&lock, 64, &mut recent);
        let got: Vec<u32> = values.iter().rev().map(|v| r.value(&AttrValue::Str(v.as_bytes()), false)).collect();
        assert_eq!(got, want);
        assert_ne!(want.last(), first.first(), "the ids did change");
    }

    #[test]
    fn values_are_found_by_their_bytes_or_written_first() {
        let lock = RwLock::new(Interner::default());
        let mut recent = Recent::default();
        let mut r = Resolver::new(&lock, 8, &mut recent);
        let a = r.value(&AttrValue::Str(b"checkout"), false);
        assert_eq!(r.id("checkout"), a);
        assert_eq!(r.value(&AttrValue::Str(b"checkout"), false), a);
        let long = r.value(&AttrValue::Str(b"checkout-v2"), false);
        assert_eq!(long, a, "truncated to the same eight bytes");
        let bad = r.value(&AttrValue::Str(b"a\xffb"), false);
        assert_eq!(r.value(&AttrValue::Str("a\u{fffd}b".as_bytes()), false), bad);
        assert_eq!(r.value(&AttrValue::Str(b""), false), EMPTY);
        let double = r.value(&AttrValue::Double(1e21), true);
        assert_eq!(r.id("1e+21"), double);
        drop(r);
        assert_eq!(lock.read().unwrap().get(bad), "a\u{fffd}b");
    }

    #[test]
    fn resolver_truncates_long_values() {
        let lock = RwLock::new(Interner::default());
        let mut recent = Recent::default();
        let mut r = Resolver::new(&lock, 4, &mut recent);
        let id = r.id("ünïcode");
        drop(r);
        assert_eq!(lock.read().unwrap().get(id), "ün");
    }
}
