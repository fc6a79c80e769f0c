//! The latency sketch behind the map's percentiles: 64 buckets a factor of
//! 1.25 apart from 0.1 ms, found by an octave table instead of a search.

/// Latency sketch: log-spaced buckets from 100 µs to about 127 s by a factor
/// of 1.25. A percentile is reported as the upper bound of its bucket, so it
/// is never under-reported and at most 25 % high.
pub(super) const SKETCH_BUCKETS: usize = 64;

pub(super) const SKETCH_MIN: f64 = 1e-4;

pub(super) const SKETCH_FACTOR: f64 = 1.25;

/// Upper bounds of the sketch buckets, computed once.
pub(super) static SKETCH_BOUNDS: std::sync::LazyLock<[f64; SKETCH_BUCKETS]> =
    std::sync::LazyLock::new(|| std::array::from_fn(|i| SKETCH_MIN * SKETCH_FACTOR.powi(i as i32)));

#[cfg(test)]
pub(super) fn sketch_index(v: f64) -> usize {
    sketch_index_in(&SKETCH_BOUNDS, v)
}

/// Sub-intervals per octave in [`SKETCH_START`]: the top three mantissa bits.
pub(super) const SKETCH_SUB_BITS: u32 = 3;

/// Octaves from `SKETCH_MIN` up to past the last bound (1.25^63 < 2^21).
pub(super) const SKETCH_OCTAVES: usize = 21;

/// For each eighth of an octave above `SKETCH_MIN` (`v / SKETCH_MIN` read by
/// its exponent and top three mantissa bits), the first bucket whose bound
/// is at or above the sub-interval's start. A bucket is wider than an eighth
/// of an octave, so at most one bound falls inside a sub-interval and one
/// comparison settles the bucket.
pub(super) static SKETCH_START: std::sync::LazyLock<[u8; SKETCH_OCTAVES << SKETCH_SUB_BITS]> =
    std::sync::LazyLock::new(|| {
        std::array::from_fn(|k| {
            let octave = (k >> SKETCH_SUB_BITS) as i32;
            let sub = (k & ((1 << SKETCH_SUB_BITS) - 1)) as f64;
            let start = SKETCH_MIN * 2f64.powi(octave) * (1.0 + sub / (1 << SKETCH_SUB_BITS) as f64);
            SKETCH_BOUNDS.partition_point(|&b| b < start).min(SKETCH_BUCKETS - 1) as u8
        })
    });

/// The bucket holding `v`: the first whose upper bound in `b` (the sketch
/// bounds) is at least `v`. A table lookup on the float's bits lands on the
/// bucket or the one before it; the bounds settle it. `v * 1e4` may round
/// the other way than the bounds do, hence the step down as well.
#[inline]
pub(super) fn sketch_index_in(b: &[f64; SKETCH_BUCKETS], v: f64) -> usize {
    // Also NaN and negatives, as a search of the bounds would.
    if v.is_nan() || v <= b[0] {
        return 0;
    }
    if v > b[SKETCH_BUCKETS - 1] {
        return SKETCH_BUCKETS - 1;
    }
    // v / SKETCH_MIN is in (1, 2^21): exponent 0..=20 above the bias.
    let bits = (v * (1.0 / SKETCH_MIN)).to_bits();
    let k = ((bits >> (52 - SKETCH_SUB_BITS)) as usize).wrapping_sub(1023 << SKETCH_SUB_BITS);
    let table = &*SKETCH_START;
    let mut i = table[k.min(table.len() - 1)] as usize;
    if i > 0 && b[i - 1] >= v {
        i -= 1;
    }
    while b[i] < v {
        i += 1;
    }
    i
}

pub(super) fn sketch_upper(i: usize) -> f64 {
    SKETCH_BOUNDS[i]
}

/// Several quantiles of a sketch in one pass, each as [`quantile`] gives it.
pub(super) fn quantiles<const N: usize>(sketch: &[u32; SKETCH_BUCKETS], qs: [f64; N]) -> [Option<f64>; N] {
    let total: u64 = sketch.iter().map(|&c| c as u64).sum();
    if total == 0 {
        return [None; N];
    }
    let ranks = qs.map(|q| (q * total as f64).ceil().max(1.0) as u64);
    let mut out = [Some(sketch_upper(SKETCH_BUCKETS - 1)); N];
    let mut found = [false; N];
    let mut seen = 0u64;
    for (i, &c) in sketch.iter().enumerate() {
        if c == 0 {
            continue;
        }
        seen += c as u64;
        for k in 0..N {
            if !found[k] && seen >= ranks[k] {
                found[k] = true;
                out[k] = Some(sketch_upper(i));
            }
        }
        if found.iter().all(|&f| f) {
            break;
        }
    }
    out
}

/// The `q` quantile of a sketch: the upper bound of the bucket holding it.
pub(super) fn quantile(sketch: &[u32; SKETCH_BUCKETS], q: f64) -> Option<f64> {
    let total: u64 = sketch.iter().map(|&c| c as u64).sum();
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0u64;
    for (i, &c) in sketch.iter().enumerate() {
        seen += c as u64;
        if seen >= rank {
            return Some(sketch_upper(i));
        }
    }
    Some(sketch_upper(SKETCH_BUCKETS - 1))
}
