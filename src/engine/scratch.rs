//! Buffers a consume call works in, kept between calls: allocating and
//! freeing some fifteen of them cost a small batch more than its spans did.

use super::*;

/// Scratch sets kept for the next calls; a call that finds none makes one.
/// One per call at a time, so more than this only when more calls run at
/// once, and the extra ones are freed when they end.
const POOL_MAX: usize = 4;

/// A buffer whose allocation is larger than this is freed rather than kept,
/// so that a rare huge batch does not pin its memory. A set takes about 320
/// bytes a span in all (span records 88, prepared spans 80, attribute values
/// 32 each, routing and events), its largest buffer under 100: batches of
/// the batch processor's default 8,192 spans (about 2.6 MB a set) keep
/// theirs, which saves them about 5% of their instructions (callgrind,
/// `examples/curve --batch 8192`: 2,932 per span with a bound of 256 KiB,
/// 2,792 with this one).
const KEEP_BYTES: usize = 4 << 20;

/// What a consume call works in. The buffers that hold borrowed values keep
/// the `'static` lifetime between calls: a call uses them at its own
/// lifetime (they are covariant) and gives them back empty via [`recycle`].
#[derive(Debug, Default)]
pub(super) struct Scratch {
    pub(super) batch: Batch<'static>,
    pub(super) prepared: Vec<Prepared>,
    pub(super) dims: Vec<u32>,
    pub(super) facts: Vec<ResourceFacts<'static>>,
    pub(super) services: Vec<u32>,
    /// Per resource and dimension, the value's id once resolved (see
    /// `consume::DIM_UNSET`).
    pub(super) resource_dims: Vec<u32>,
    /// Label values resolved by earlier calls (see [`Recent`]).
    pub(super) recent: Recent,
    pub(super) protocols: Vec<(&'static [u8], u32)>,
    /// The routing's counting sort: where each shard's spans start, the
    /// next free place per shard, the spans in shard order.
    pub(super) starts: Vec<u32>,
    pub(super) fill: Vec<u32>,
    pub(super) order: Vec<u32>,
    pub(super) busy: Vec<usize>,
    pub(super) events: Events,
}

/// The scratch buffers that hold values borrowed from a call's batch, at
/// that call's lifetime.
pub(super) struct Borrowed<'a> {
    pub(super) batch: Batch<'a>,
    pub(super) facts: Vec<ResourceFacts<'a>>,
    pub(super) protocols: ProtocolCache<'a>,
}

impl Scratch {
    /// The buffers that borrow from the batch, taken out for one call.
    pub(super) fn borrowed<'a>(&mut self) -> Borrowed<'a> {
        Borrowed {
            batch: std::mem::take(&mut self.batch),
            facts: std::mem::take(&mut self.facts),
            protocols: ProtocolCache { values: std::mem::take(&mut self.protocols), http: None },
        }
    }

    /// Takes back what [`Scratch::borrowed`] gave, emptied.
    pub(super) fn give_back(&mut self, b: Borrowed<'_>) {
        self.batch = recycle_batch(b.batch);
        self.facts = recycle(b.facts);
        self.protocols = recycle(b.protocols.values);
    }

    /// Frees the buffers grown past [`KEEP_BYTES`]; the others are left as
    /// they are (each call clears what it uses).
    fn trim(&mut self) {
        let Scratch {
            batch,
            prepared,
            dims,
            facts,
            services,
            resource_dims,
            recent: _,
            protocols,
            starts,
            fill,
            order,
            busy,
            events,
        } = self;
        let Batch { resources, spans, values, links, names, .. } = batch;
        trim(resources);
        trim(spans);
        trim(values);
        trim(links);
        trim(names);
        trim(prepared);
        trim(dims);
        trim(facts);
        trim(services);
        trim(resource_dims);
        trim(protocols);
        trim(starts);
        trim(fill);
        trim(order);
        trim(busy);
        let Events { edges, dims, unpaired, dropped, entries } = events;
        trim(edges);
        trim(dims);
        trim(unpaired);
        trim(dropped);
        trim(entries);
    }
}

fn trim<T>(v: &mut Vec<T>) {
    if v.capacity() * size_of::<T>() > KEEP_BYTES {
        *v = Vec::new();
    }
}

/// A vector's allocation, emptied, as a vector of another type of the same
/// size and alignment: here the same type at another lifetime. The standard
/// library collects a vector's own iterator in place, so this allocates
/// nothing (a test checks it).
pub(super) fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().map(|_| unreachable!("the vector is empty")).collect()
}

/// A batch's buffers, emptied, for the next call's batch.
pub(super) fn recycle_batch(b: Batch<'_>) -> Batch<'static> {
    let Batch { resources, mut spans, values, mut links, names, .. } = b;
    spans.clear();
    links.clear();
    Batch {
        resources: recycle(resources),
        spans,
        values: recycle(values),
        links,
        names: recycle(names),
        ignored_spans: 0,
        unnamed_spans: 0,
    }
}

/// The scratch sets not in use, boxed: a set is about twenty vectors and a
/// [`Recent`] of 1.5 KB, and moving it by value in and out of the pool
/// copied it each call (the 470 bytes it had before the [`Recent`] cost
/// about 230 instructions, 5% of a one-span call).
#[derive(Debug, Default)]
#[expect(clippy::vec_box, reason = "a set moves by pointer, not by value")]
pub(super) struct ScratchPool(Mutex<Vec<Box<Scratch>>>);

impl ScratchPool {
    pub(super) fn take(&self) -> Box<Scratch> {
        lock(&self.0).pop().unwrap_or_default()
    }

    pub(super) fn give(&self, mut s: Box<Scratch>) {
        s.trim();
        let mut pool = lock(&self.0);
        if pool.len() < POOL_MAX {
            pool.push(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycling_keeps_the_allocation() {
        let data = vec![1u8; 64];
        let mut v: Vec<(&[u8], u32)> = Vec::with_capacity(100);
        v.push((&data[..], 1));
        let (ptr, cap) = (v.as_ptr() as usize, v.capacity());
        let w: Vec<(&'static [u8], u32)> = recycle(v);
        assert_eq!((w.as_ptr() as usize, w.capacity(), w.len()), (ptr, cap, 0));

        let mut b = Batch::default();
        b.values.reserve(50);
        b.resources.reserve(5);
        b.names.reserve(7);
        b.values.push((0, AttrValue::Str(&data)));
        let at = |b: &Batch<'_>| [b.values.as_ptr() as usize, b.resources.as_ptr() as usize, b.names.as_ptr() as usize];
        let caps = |b: &Batch<'_>| [b.values.capacity(), b.resources.capacity(), b.names.capacity()];
        let (p, c) = (at(&b), caps(&b));
        let b = recycle_batch(b);
        assert_eq!((at(&b), caps(&b)), (p, c));
        assert!(b.values.is_empty());

        let mut facts: Vec<ResourceFacts<'_>> = Vec::with_capacity(9);
        facts.push(ResourceFacts { service: 1, values: [Some(AttrValue::Str(&data)); 6] });
        let (ptr, cap) = (facts.as_ptr() as usize, facts.capacity());
        let facts: Vec<ResourceFacts<'static>> = recycle(facts);
        assert_eq!((facts.as_ptr() as usize, facts.capacity()), (ptr, cap));
    }

    #[test]
    fn the_pool_is_bounded() {
        let pool = ScratchPool::default();
        let sets: Vec<Box<Scratch>> = (0..POOL_MAX + 3).map(|_| pool.take()).collect();
        for mut s in sets {
            s.order.reserve(KEEP_BYTES);
            s.dims.reserve(10);
            pool.give(s);
        }
        let kept = lock(&pool.0);
        assert_eq!(kept.len(), POOL_MAX);
        assert!(kept.iter().all(|s| s.order.capacity() == 0 && s.dims.capacity() >= 10));
    }
}
