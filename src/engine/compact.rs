//! Interner compaction: label strings no waiting edge, series or map entry
//! uses any more are dropped and the live ones renumbered.

use super::*;

/// The interner is compacted once it holds this many strings more than
/// twice the live ones (and this many bytes more than twice the live bytes).
pub(super) const COMPACT_SLACK_STRINGS: usize = 4096;
pub(super) const COMPACT_SLACK_BYTES: usize = 4 << 20;

impl Engine {
    /// Label strings no waiting edge or series refers to any more are dropped,
    /// so a flood of distinct values cannot grow memory without bound.
    pub(super) fn compact_interner_if_due(&self) {
        let (len, bytes) = {
            let i = self.interner.read().unwrap_or_else(|p| p.into_inner());
            (i.len(), i.string_bytes())
        };
        let mut at = lock(&self.compact_at);
        if len < at.0 && bytes < at.1 {
            return;
        }
        // No call holds ids across locks from here on. Then the lock order:
        // shards, series, graph, interner (consumers never hold the interner
        // while waiting for a shard).
        let _ids = self.ids.write().unwrap_or_else(|p| p.into_inner());
        let mut shards: Vec<MutexGuard<'_, Shard>> = self.shards.iter().map(lock).collect();
        let mut series = lock(&self.series);
        let mut graph = self.graph.as_ref().map(lock);
        let mut interner = self.interner.write().unwrap_or_else(|p| p.into_inner());
        if let Some(g) = graph.as_mut() {
            // Cached ids are about to change.
            g.cache.clear();
            g.facts.clear();
        }
        let old = std::mem::take(&mut *interner);
        let mut fresh = Interner::default();
        let mut map = vec![u32::MAX; old.len()];
        map[EMPTY as usize] = EMPTY;
        let mut remap = |id: u32| -> u32 {
            let m = &mut map[id as usize];
            if *m == u32::MAX {
                *m = fresh.insert(old.get(id));
            }
            *m
        };
        // Fixed names first, in the order `new` interned them, so their ids stay.
        let user = remap(self.user);
        let fallback = remap(self.rules.server_fallback);
        debug_assert_eq!((user, fallback), (self.user, self.rules.server_fallback));
        let d = self.dims_per_side();
        for shard in shards.iter_mut() {
            let Shard { store, whole, dims, indexes, .. } = &mut **shard;
            store.for_each_mut(|slot, w| {
                for id in w.ids_mut() {
                    *id = remap(*id);
                }
                for v in &mut dims[slot as usize * 2 * d..(slot as usize + 1) * 2 * d] {
                    *v = remap(*v);
                }
            });
            for id in indexes.protocols.values_mut() {
                *id = u64::from(remap(*id as u32));
            }
            for e in whole.values_mut() {
                for id in [&mut e.client, &mut e.server, &mut e.peer, &mut e.protocol] {
                    *id = remap(*id);
                }
            }
        }
        series.remap(&mut remap);
        *interner = fresh;
        *at = (2 * interner.len() + COMPACT_SLACK_STRINGS, 2 * interner.string_bytes() + COMPACT_SLACK_BYTES);
    }
}
