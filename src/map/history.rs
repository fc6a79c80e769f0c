//! Topology history: snapshots of which nodes and edges carried traffic, and
//! their health, taken at an interval into a bounded ring; and the diff
//! between two times ("what changed since yesterday").

use super::{Health, View};
use std::collections::{BTreeMap, VecDeque};

/// Which nodes and edges were live at one time, with their health.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    pub at_ns: u64,
    pub nodes: BTreeMap<String, Health>,
    pub edges: BTreeMap<(String, String), Health>,
    /// Requests per second into each live node and along each live edge:
    /// the baselines a surge is measured against.
    pub node_rates: BTreeMap<String, f64>,
    pub edge_rates: BTreeMap<(String, String), f64>,
}

impl Snapshot {
    /// A node or edge is live when it carried traffic within the window.
    pub fn of(view: &View) -> Snapshot {
        let mut s = Snapshot { at_ns: view.at_ns, ..Default::default() };
        let window_ns = (view.window_s * 1e9) as u64;
        for e in view.edges.iter().filter(|e| e.rate > 0.0) {
            s.edges.insert((e.client.clone(), e.server.clone()), e.health);
            s.edge_rates.insert((e.client.clone(), e.server.clone()), e.rate);
        }
        for n in &view.nodes {
            let live = n.last_seen_ns.saturating_add(window_ns) >= view.at_ns
                || s.edges.keys().any(|(c, sv)| *c == n.name || *sv == n.name);
            if live {
                s.nodes.insert(n.name.clone(), n.health);
                s.node_rates.insert(n.name.clone(), n.rate);
            }
        }
        s
    }
}

/// A bounded ring of snapshots.
#[derive(Debug, Clone)]
pub struct History {
    interval_ns: u64,
    capacity: usize,
    /// Nodes and edges summed over the ring at most.
    max_entries: usize,
    entries: usize,
    ring: VecDeque<Snapshot>,
    /// Snapshots dropped before their time because of `max_entries`.
    pub evicted: u64,
}

impl History {
    pub fn new(interval_ns: u64, capacity: usize) -> History {
        History::with_max_entries(interval_ns, capacity, usize::MAX)
    }

    /// A ring of at most `capacity` snapshots holding at most `max_entries`
    /// nodes and edges in all: the oldest go first, the newest always stays.
    pub fn with_max_entries(interval_ns: u64, capacity: usize, max_entries: usize) -> History {
        History {
            interval_ns: interval_ns.max(1),
            capacity: capacity.max(1),
            max_entries,
            entries: 0,
            ring: VecDeque::new(),
            evicted: 0,
        }
    }

    /// Whether a snapshot is due at `now_ns`.
    pub fn due(&self, now_ns: u64) -> bool {
        self.ring.back().is_none_or(|s| now_ns >= s.at_ns.saturating_add(self.interval_ns))
    }

    pub fn push(&mut self, s: Snapshot) {
        let size = |s: &Snapshot| s.nodes.len() + s.edges.len();
        if self.ring.len() == self.capacity {
            if let Some(old) = self.ring.pop_front() {
                self.entries -= size(&old);
            }
        }
        self.entries += size(&s);
        self.ring.push_back(s);
        while self.entries > self.max_entries && self.ring.len() > 1 {
            if let Some(old) = self.ring.pop_front() {
                self.entries -= size(&old);
                self.evicted += 1;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// The latest snapshot taken at or before `at_ns` (the oldest one if all are later).
    pub fn at(&self, at_ns: u64) -> Option<&Snapshot> {
        self.ring.iter().rev().find(|s| s.at_ns <= at_ns).or(self.ring.front())
    }

    pub fn times(&self) -> Vec<u64> {
        self.ring.iter().map(|s| s.at_ns).collect()
    }

    /// The usual value of something a snapshot records (`pick`; absent
    /// counts as 0): the median over the snapshots taken at or before
    /// `until_ns`, when there are at least three of them.
    pub fn baseline(&self, until_ns: u64, pick: impl Fn(&Snapshot) -> Option<f64>) -> Option<f64> {
        let mut v: Vec<f64> =
            self.ring.iter().filter(|s| s.at_ns <= until_ns).map(|s| pick(s).unwrap_or(0.0)).collect();
        if v.len() < 3 {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(v[v.len() / 2])
    }
}

/// A change of health between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthChange {
    /// `service name` or `client -> server`.
    pub what: String,
    pub from: Health,
    pub to: Health,
}

/// What changed between two snapshots.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Diff {
    pub from_ns: u64,
    pub to_ns: u64,
    pub nodes_added: Vec<String>,
    pub nodes_removed: Vec<String>,
    pub edges_added: Vec<(String, String)>,
    pub edges_removed: Vec<(String, String)>,
    pub health_changes: Vec<HealthChange>,
}

pub fn diff(a: &Snapshot, b: &Snapshot) -> Diff {
    let mut d = Diff { from_ns: a.at_ns, to_ns: b.at_ns, ..Default::default() };
    d.nodes_added = b.nodes.keys().filter(|k| !a.nodes.contains_key(*k)).cloned().collect();
    d.nodes_removed = a.nodes.keys().filter(|k| !b.nodes.contains_key(*k)).cloned().collect();
    d.edges_added = b.edges.keys().filter(|k| !a.edges.contains_key(*k)).cloned().collect();
    d.edges_removed = a.edges.keys().filter(|k| !b.edges.contains_key(*k)).cloned().collect();
    for (name, h) in &b.nodes {
        if let Some(old) = a.nodes.get(name).filter(|old| *old != h) {
            d.health_changes.push(HealthChange { what: name.clone(), from: *old, to: *h });
        }
    }
    for ((c, s), h) in &b.edges {
        if let Some(old) = a.edges.get(&(c.clone(), s.clone())).filter(|old| *old != h) {
            d.health_changes.push(HealthChange { what: format!("{c} -> {s}"), from: *old, to: *h });
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(at: u64, nodes: &[(&str, Health)], edges: &[(&str, &str, Health)]) -> Snapshot {
        Snapshot {
            at_ns: at,
            nodes: nodes.iter().map(|(n, h)| (n.to_string(), *h)).collect(),
            edges: edges.iter().map(|(c, s, h)| ((c.to_string(), s.to_string()), *h)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn ring_is_bounded_and_finds_by_time() {
        let mut h = History::new(10, 3);
        for t in [0, 10, 20, 30] {
            assert!(h.due(t));
            h.push(snap(t, &[], &[]));
            assert!(!h.due(t + 9));
        }
        assert_eq!(h.times(), [10, 20, 30]);
        assert_eq!(h.at(25).unwrap().at_ns, 20);
        assert_eq!(h.at(5).unwrap().at_ns, 10);
    }

    #[test]
    fn diff_lists_appeared_vanished_and_health_changes() {
        use Health::*;
        let a = snap(1, &[("a", Green), ("b", Green), ("old", Green)], &[("a", "b", Green), ("a", "old", Green)]);
        let b = snap(2, &[("a", Green), ("b", Red), ("new", Green)], &[("a", "b", Red), ("a", "new", Green)]);
        let d = diff(&a, &b);
        assert_eq!(d.nodes_added, ["new"]);
        assert_eq!(d.nodes_removed, ["old"]);
        assert_eq!(d.edges_added, [("a".to_string(), "new".to_string())]);
        assert_eq!(d.edges_removed, [("a".to_string(), "old".to_string())]);
        assert_eq!(
            d.health_changes,
            [
                HealthChange { what: "b".into(), from: Green, to: Red },
                HealthChange { what: "a -> b".into(), from: Green, to: Red },
            ]
        );
    }
}
