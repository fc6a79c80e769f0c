//! Sides dropped by a filter policy, remembered for as long as an edge
//! waits, so that their other side is dropped too instead of waiting alone
//! and expiring as an unpaired request or a virtual node that never was.
//!
//! A marker is the pairing key and the side filtered out. Markers wait the
//! store's `wait`; marking the same side again starts its wait anew. Like
//! every entry, they expire in insertion order: a FIFO of (key, side,
//! deadline) where an entry whose marker was refreshed since is skipped.

use super::Key;
use hashbrown::HashMap;
use std::collections::VecDeque;

/// The markers of one shard.
#[derive(Debug, Default)]
pub(crate) struct DroppedSides {
    /// (key, server side?) → deadline.
    deadlines: HashMap<(Key, bool), u64>,
    order: VecDeque<(Key, bool, u64)>,
}

impl DroppedSides {
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.deadlines.len()
    }

    /// Whether the side of `key` opposite to `server` was filtered out.
    #[inline]
    pub(crate) fn has_counterpart(&self, key: &Key, server: bool) -> bool {
        !self.deadlines.is_empty() && self.deadlines.contains_key(&(*key, !server))
    }

    /// Refreshes a marker's deadline; false when there is none.
    pub(crate) fn refresh(&mut self, key: Key, server: bool, deadline: u64) -> bool {
        match self.deadlines.get_mut(&(key, server)) {
            Some(d) => {
                *d = deadline;
                self.order.push_back((key, server, deadline));
                true
            }
            None => false,
        }
    }

    /// Adds a marker the caller has room for (see [`DroppedSides::refresh`]).
    pub(crate) fn insert(&mut self, key: Key, server: bool, deadline: u64) {
        self.deadlines.insert((key, server), deadline);
        self.order.push_back((key, server, deadline));
    }

    /// Removes the markers due at `now_ns` (all of them with `all`); returns
    /// how many were removed.
    pub(crate) fn expire(&mut self, now_ns: u64, all: bool) -> usize {
        let before = self.deadlines.len();
        while let Some(&(key, server, deadline)) = self.order.front() {
            if !all && deadline > now_ns {
                break;
            }
            self.order.pop_front();
            // A refreshed marker has a later entry of its own in the FIFO.
            if self.deadlines.get(&(key, server)) == Some(&deadline) {
                self.deadlines.remove(&(key, server));
            }
        }
        // Refreshes can leave stale entries behind live ones; they go when
        // the FIFO holds more than twice the markers.
        if self.order.len() > 2 * self.deadlines.len() + 64 {
            let live = &self.deadlines;
            self.order.retain(|(k, s, d)| live.get(&(*k, *s)) == Some(d));
        }
        if self.deadlines.is_empty() {
            self.deadlines.shrink_to(64);
            self.order.shrink_to(64);
        }
        before - self.deadlines.len()
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.deadlines.allocation_size() + self.order.capacity() * std::mem::size_of::<(Key, bool, u64)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Key {
        Key { trace_id: [n; 16], span_id: [n; 8] }
    }

    #[test]
    fn a_marker_names_the_other_side_until_its_deadline() {
        let mut d = DroppedSides::default();
        d.insert(key(1), false, 100);
        assert!(d.has_counterpart(&key(1), true), "a server finds its filtered client");
        assert!(!d.has_counterpart(&key(1), false), "another client does not");
        assert!(!d.has_counterpart(&key(2), true));
        assert_eq!(d.expire(99, false), 0);
        assert_eq!(d.expire(100, false), 1);
        assert!(!d.has_counterpart(&key(1), true));
    }

    #[test]
    fn a_refreshed_marker_waits_from_its_refresh() {
        let mut d = DroppedSides::default();
        d.insert(key(1), true, 100);
        d.insert(key(2), true, 150);
        assert!(d.refresh(key(1), true, 200));
        assert!(!d.refresh(key(3), true, 200));
        assert_eq!(d.expire(160, false), 1, "key 2 is due; key 1 was refreshed");
        assert!(d.has_counterpart(&key(1), false));
        assert_eq!(d.expire(200, false), 1);
        assert_eq!(d.len(), 0);
    }
}
