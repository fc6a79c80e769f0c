//! A latency histogram: classic buckets kept in place when they are few,
//! and the native buckets of the same observations when those are on.

use super::native::{self, Native};

/// Bucket weights: in place up to 17 buckets, which both
/// peers' default bounds fit, so a series and each copy a render takes of it
/// need no allocation of their own; on the heap beyond.
#[derive(Clone, PartialEq)]
pub enum Buckets {
    Inline { len: u8, weights: [f64; INLINE_BUCKETS] },
    Heap(Box<[f64]>),
}

/// Contrib's default bounds are 16, plus +Inf.
pub(super) const INLINE_BUCKETS: usize = 17;

impl Buckets {
    fn zeros(n: usize) -> Buckets {
        if n <= INLINE_BUCKETS {
            Buckets::Inline { len: n as u8, weights: [0.0; INLINE_BUCKETS] }
        } else {
            Buckets::Heap(vec![0.0; n].into_boxed_slice())
        }
    }
}

impl std::ops::Deref for Buckets {
    type Target = [f64];
    #[inline]
    fn deref(&self) -> &[f64] {
        match self {
            Buckets::Inline { len, weights } => &weights[..*len as usize],
            Buckets::Heap(b) => b,
        }
    }
}

impl std::ops::DerefMut for Buckets {
    #[inline]
    fn deref_mut(&mut self) -> &mut [f64] {
        match self {
            Buckets::Inline { len, weights } => &mut weights[..*len as usize],
            Buckets::Heap(b) => b,
        }
    }
}

impl std::fmt::Debug for Buckets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// A latency histogram: classic per-bucket (not cumulative) weights, the
/// last one +Inf, and, when native histograms are on, the native buckets of
/// the same observations.
#[derive(Debug, Clone, PartialEq)]
pub struct Hist {
    pub buckets: Buckets,
    pub sum: f64,
    pub count: f64,
    /// Boxed: most deployments keep classic histograms only.
    pub native: Option<Box<Native>>,
}

impl Hist {
    pub fn new(bounds: usize) -> Hist {
        Hist { buckets: Buckets::zeros(bounds + 1), sum: 0.0, count: 0.0, native: None }
    }

    /// A histogram with native buckets at `native`'s schema, started at `now_ns`.
    pub fn with_native(bounds: usize, native: Option<&native::Settings>, now_ns: u64) -> Hist {
        Hist { native: native.map(|s| Box::new(Native::new(s, now_ns))), ..Hist::new(bounds) }
    }

    /// The same shape (bounds, schema, start), with nothing counted.
    pub fn zeroed(&self) -> Hist {
        Hist {
            buckets: Buckets::zeros(self.buckets.len()),
            sum: 0.0,
            count: 0.0,
            native: self.native.as_ref().map(|n| Box::new(n.zeroed())),
        }
    }

    /// Observes `v` in the classic buckets and, if kept, the native ones;
    /// returns the classic bucket. Inlined whole so that classic histograms
    /// pay one test for the native ones (a call here cost 1.7 % of consume).
    #[inline(always)]
    pub fn observe_all(
        &mut self,
        bounds: &[f64],
        native: Option<&native::Settings>,
        v: f64,
        w: f64,
        now_ns: u64,
    ) -> usize {
        let i = self.observe(bounds, v, w);
        if let Some(s) = native.filter(|_| self.native.is_some()) {
            self.observe_native(bounds, s, v, w, now_ns);
        }
        i
    }

    /// The native half of [`Hist::observe_all`]. A native histogram over its
    /// budget and old enough starts again from zero, classic buckets, sum
    /// and count with it (the Go client's histograms, which Tempo's are,
    /// reset whole), and then counts `v`.
    fn observe_native(&mut self, bounds: &[f64], s: &native::Settings, v: f64, w: f64, now_ns: u64) {
        let Some(n) = self.native.as_mut() else { return };
        if n.observe(s, v, w, now_ns) == native::Over::Reset {
            let mut fresh = Native::new(s, now_ns);
            fresh.observe(s, v, w, now_ns);
            **n = fresh;
            self.buckets.fill(0.0);
            self.sum = 0.0;
            self.count = 0.0;
            self.observe(bounds, v, w);
        }
    }

    /// When the histogram's counts started: its series' creation, or the
    /// last reset of its native buckets.
    pub fn start_ns(&self, created_ns: u64) -> u64 {
        self.native.as_ref().map_or(created_ns, |n| n.start_ns.max(created_ns))
    }

    /// Observes `v` with weight `w`; returns the bucket it fell in. Bounds
    /// are upper-inclusive (`le`).
    #[inline]
    pub fn observe(&mut self, bounds: &[f64], v: f64, w: f64) -> usize {
        let i = bounds.partition_point(|&b| b < v);
        self.buckets[i] += w;
        self.sum += v * w;
        self.count += w;
        i
    }
}
