//! Label values (service names, dimension values, peer names) stored once and
//! referred to by a 4-byte id, so waiting edges and series keys stay small
//! and compare as integers. Id 0 is the empty string, which the peers treat
//! as "absent" (an empty label is omitted, an empty service never pairs).

use crate::wire::attributes::AttrValue;
use foldhash::fast::RandomState;
use hashbrown::HashTable;
use std::hash::BuildHasher;
use std::sync::{RwLock, RwLockReadGuard};

/// The empty string's id.
pub(crate) const EMPTY: u32 = 0;

#[derive(Debug)]
pub struct Interner {
    strings: Vec<Box<str>>,
    table: HashTable<u32>,
    hasher: RandomState,
    bytes: usize,
}

impl Default for Interner {
    fn default() -> Self {
        let hasher = RandomState::default();
        let mut table = HashTable::new();
        let strings: Vec<Box<str>> = vec!["".into()];
        table.insert_unique(hasher.hash_one(b""), 0, |&i| hasher.hash_one(strings[i as usize].as_bytes()));
        Interner { strings, table, hasher, bytes: 0 }
    }
}

impl Interner {
    pub fn lookup(&self, s: &str) -> Option<u32> {
        self.lookup_bytes(s.as_bytes())
    }

    /// Looks a string up by its bytes: a match is valid UTF-8, since every
    /// string held is, so callers can skip checking the bytes first.
    #[inline]
    pub fn lookup_bytes(&self, b: &[u8]) -> Option<u32> {
        let h = self.hasher.hash_one(b);
        self.table.find(h, |&i| self.strings[i as usize].as_bytes() == b).copied()
    }

    pub fn insert(&mut self, s: &str) -> u32 {
        if let Some(id) = self.lookup(s) {
            return id;
        }
        let id = self.strings.len() as u32;
        self.bytes += s.len();
        self.strings.push(s.into());
        let (strings, hasher) = (&self.strings, &self.hasher);
        self.table
            .insert_unique(hasher.hash_one(s.as_bytes()), id, |&i| hasher.hash_one(strings[i as usize].as_bytes()));
        id
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

/// Resolves many strings under one read lock, taking the write lock only for
/// strings not seen before. Never hold a `Resolver` while taking a shard lock.
pub struct Resolver<'a> {
    lock: &'a RwLock<Interner>,
    guard: Option<RwLockReadGuard<'a, Interner>>,
    max_len: usize,
    /// Values whose string form was cut at the nesting limit, for the
    /// self-report's `values_truncated`.
    pub truncated: u64,
}

impl<'a> Resolver<'a> {
    pub fn new(lock: &'a RwLock<Interner>, max_len: usize) -> Self {
        Resolver { lock, guard: Some(lock.read().unwrap_or_else(|p| p.into_inner())), max_len, truncated: 0 }
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
                if let Some(id) = self.guard.as_ref().and_then(|g| g.lookup_bytes(b)) {
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
    fn values_are_found_by_their_bytes_or_written_first() {
        let lock = RwLock::new(Interner::default());
        let mut r = Resolver::new(&lock, 8);
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
        let mut r = Resolver::new(&lock, 4);
        let id = r.id("ünïcode");
        drop(r);
        assert_eq!(lock.read().unwrap().get(id), "ün");
    }
}
