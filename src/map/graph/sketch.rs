//! The latency sketch behind the map's percentiles: the buckets of a native
//! histogram at schema 3 (each about 9 % wide), over the range 100 µs to
//! 128 s. Each window slot keeps only the run of buckets its latencies
//! reached; a view adds the slots of its window into one dense sketch.

use crate::series::native::{ZERO_THRESHOLD, bucket_key, bucket_upper};

/// Bucket `k` holds `(2^((k-1)/8), 2^(k/8)]`: a factor of 2^(1/8) ≈ 1.0905,
/// the schema of Tempo's default native histograms, so a percentile here is
/// read from the same buckets Prometheus would read it from.
pub(super) const SCHEMA: i8 = 3;

/// The bucket of 100 µs (upper bound 2^(-106/8) ≈ 102.7 µs); lower values,
/// zero, negatives and NaN are counted in it.
pub(super) const FIRST_KEY: i32 = -106;

/// The bucket of 127 s (upper bound 2^7 = 128 s); higher values are counted in it.
pub(super) const LAST_KEY: i32 = 56;

/// Buckets from [`FIRST_KEY`] to [`LAST_KEY`]; index `i` is key `FIRST_KEY + i`.
pub(super) const SKETCH_BUCKETS: usize = (LAST_KEY - FIRST_KEY + 1) as usize;

/// The index of the bucket holding `v`, clamped to the range.
#[inline]
pub(super) fn sketch_index(v: f64) -> usize {
    // `bucket_key` wants a positive normal number; infinity is read as the
    // largest finite one.
    let key = if v > ZERO_THRESHOLD { bucket_key(v.min(f64::MAX), SCHEMA) } else { FIRST_KEY };
    (key.clamp(FIRST_KEY, LAST_KEY) - FIRST_KEY) as usize
}

/// The upper bound of bucket `i`.
pub(super) fn sketch_upper(i: usize) -> f64 {
    bucket_upper(FIRST_KEY + i as i32, SCHEMA)
}

/// One window slot's latencies: counts by bucket from index `first`, dense
/// from the lowest bucket seen to the highest. Most edges span a couple of
/// octaves (about 16 buckets, 64 bytes) rather than all 163 (652 bytes);
/// the run never outgrows the range, since indexes are clamped to it.
#[derive(Debug, Clone, Default)]
pub(super) struct Sketch {
    first: usize,
    counts: Vec<u32>,
}

impl Sketch {
    /// Counts `n` requests of latency `v` (seconds).
    #[inline]
    pub(super) fn add(&mut self, v: f64, n: u32) {
        let i = sketch_index(v);
        if self.counts.is_empty() {
            self.first = i;
        }
        // Storage grows exactly to the run, not by doubling.
        if i < self.first {
            self.counts.reserve_exact(self.first - i);
            self.counts.splice(0..0, std::iter::repeat_n(0, self.first - i));
            self.first = i;
        }
        let at = i - self.first;
        if at >= self.counts.len() {
            self.counts.reserve_exact(at + 1 - self.counts.len());
            self.counts.resize(at + 1, 0);
        }
        self.counts[at] += n;
    }

    /// Empties the sketch and keeps its storage, which the slot's next
    /// period likely needs again: the hot path then seldom allocates.
    pub(super) fn clear(&mut self) {
        self.counts.clear();
    }

    /// Adds these counts into a dense sketch of the whole range.
    pub(super) fn add_to(&self, dense: &mut [u32; SKETCH_BUCKETS]) {
        for (a, b) in dense[self.first..].iter_mut().zip(&self.counts) {
            *a += b;
        }
    }

    /// Bytes this sketch holds on the heap.
    #[cfg(test)]
    pub(super) fn heap_bytes(&self) -> usize {
        self.counts.capacity() * size_of::<u32>()
    }
}

/// Several quantiles of a dense sketch in one pass, each found as
/// Prometheus' `histogram_quantile` finds it in a native histogram: the
/// bucket where the running count reaches the rank `q · total`, then the
/// point as far into the bucket on a log scale as the rank is into the
/// bucket's count, `lower · (upper / lower)^fraction`. The error is thus
/// within the bucket's width, 9 %, and none is added by reading the upper
/// bound. A `q` below 0 (or NaN) is read as 0, above 1 as 1.
pub(super) fn quantiles<const N: usize>(sketch: &[u32; SKETCH_BUCKETS], qs: [f64; N]) -> [Option<f64>; N] {
    let total: u64 = sketch.iter().map(|&c| c as u64).sum();
    if total == 0 {
        return [None; N];
    }
    let ranks = qs.map(|q| (q * total as f64).max(0.0).min(total as f64));
    let mut out = [None; N];
    let mut seen = 0u64;
    for (i, &c) in sketch.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let before = seen;
        seen += c as u64;
        for (o, &rank) in out.iter_mut().zip(&ranks) {
            if o.is_none() && seen as f64 >= rank {
                *o = Some(within(i, (rank - before as f64) / c as f64));
            }
        }
        if out.iter().all(Option::is_some) {
            break;
        }
    }
    out
}

/// The point `fraction` (0 to 1) of the way through bucket `i` on a log scale.
fn within(i: usize, fraction: f64) -> f64 {
    let upper = sketch_upper(i);
    let lower = bucket_upper(FIRST_KEY + i as i32 - 1, SCHEMA);
    // Exactly the bound at the end, whatever `powf` rounds to.
    if fraction >= 1.0 { upper } else { lower * (upper / lower).powf(fraction) }
}

/// The `q` quantile of a dense sketch, as [`quantiles`] gives it.
pub(super) fn quantile(sketch: &[u32; SKETCH_BUCKETS], q: f64) -> Option<f64> {
    quantiles(sketch, [q])[0]
}
