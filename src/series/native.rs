//! Native histograms: exponential buckets whose bounds are powers of
//! `2^(2^-schema)`, kept sparse, as Prometheus' native histograms and OTLP's
//! exponential histograms define them. Tempo builds them with the settings
//! here (a bucket factor that picks the schema, a bucket budget, a minimum
//! time between resets); the rules are Prometheus' Go client's, which Tempo
//! uses: a bucket's upper bound is inclusive, a value at or below the zero
//! threshold goes to the zero bucket, and past the budget the histogram
//! starts again from zero if it is old enough, or else halves its
//! resolution.
//!
//! Latencies are never negative here (durations are read as unsigned), so
//! only the positive buckets exist.

/// Values at or below this go to the zero bucket: 2^-128, the Go client's default.
pub(crate) const ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39;

/// The finest and the coarsest schema Prometheus accepts.
pub(crate) const MAX_SCHEMA: i8 = 8;
pub(crate) const MIN_SCHEMA: i8 = -4;

/// How native histograms are kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Buckets grow by `2^(2^-schema)`; schema 3 (the factor 1.1 of
    /// Tempo's default) is about 9 % per bucket.
    pub schema: i8,
    /// Populated buckets at most; 0: no limit.
    pub max_buckets: u32,
    /// Past the budget, a histogram this old (since its creation or its last
    /// reset) starts again from zero rather than halving its resolution; 0:
    /// never.
    pub min_reset_ns: u64,
}

impl Settings {
    /// Tempo's defaults: factor 1.1, 100 buckets, a reset after 15 minutes.
    pub fn tempo() -> Settings {
        Settings { schema: schema_for_factor(1.1), max_buckets: 100, min_reset_ns: 15 * 60 * 1_000_000_000 }
    }
}

/// The largest schema whose growth factor is at most `factor` (> 1), clamped
/// to the schemas Prometheus accepts.
pub fn schema_for_factor(factor: f64) -> i8 {
    let floor = factor.log2().log2().floor();
    if floor <= -f64::from(MAX_SCHEMA) {
        MAX_SCHEMA
    } else if floor >= -f64::from(MIN_SCHEMA) {
        MIN_SCHEMA
    } else {
        -(floor as i8)
    }
}

/// `v` as `frac * 2^exp` with `frac` in [0.5, 1), for a positive normal `v`.
#[inline]
fn frexp(v: f64) -> (f64, i32) {
    let bits = v.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32 - 1022;
    let frac = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (frac, exp)
}

/// For each positive schema, the bounds `2^(i / 2^schema - 1)` that split
/// [0.5, 1) into its buckets.
static FRACTIONS: std::sync::LazyLock<[Box<[f64]>; MAX_SCHEMA as usize]> = std::sync::LazyLock::new(|| {
    std::array::from_fn(|s| {
        let n = 1usize << (s + 1);
        (0..n).map(|i| 2f64.powf(i as f64 / n as f64 - 1.0)).collect()
    })
});

/// The key of the bucket holding `v` (positive, above the zero threshold):
/// bucket `k` holds the values in `(2^((k-1)·2^-schema), 2^(k·2^-schema)]`.
#[inline]
pub fn bucket_key(v: f64, schema: i8) -> i32 {
    let (frac, exp) = frexp(v);
    if schema > 0 {
        let bounds = &FRACTIONS[schema as usize - 1];
        bounds.partition_point(|&b| b < frac) as i32 + (exp - 1) * bounds.len() as i32
    } else {
        // A power of two ends its bucket.
        let key = if frac == 0.5 { exp - 1 } else { exp };
        let shift = -schema;
        (key + (1 << shift) - 1) >> shift
    }
}

/// The upper bound of bucket `key` at `schema`.
/// At a positive schema it is read from the same bounds [`bucket_key`]
/// searches, so that the two agree to the last bit.
pub fn bucket_upper(key: i32, schema: i8) -> f64 {
    if schema > 0 {
        let bounds = &FRACTIONS[schema as usize - 1];
        let n = bounds.len() as i32;
        bounds[key.rem_euclid(n) as usize] * 2f64.powi(key.div_euclid(n) + 1)
    } else {
        2f64.powi(key << -schema)
    }
}

/// The positive buckets of a native histogram, dense from `offset` (empty
/// buckets between populated ones are kept as zeros).
#[derive(Debug, Clone, PartialEq)]
pub struct Native {
    pub schema: i8,
    pub zero_count: f64,
    /// The key of `counts[0]`.
    pub offset: i32,
    pub counts: Vec<f64>,
    /// Buckets with a count.
    populated: u32,
    /// When the histogram started from zero: its creation or its last reset.
    pub start_ns: u64,
}

/// What an observation asks of the histogram that holds the native buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    /// Within the budget.
    No,
    /// Over the budget and old enough: start again from zero.
    Reset,
}

impl Native {
    pub fn new(schema: i8, start_ns: u64) -> Native {
        Native { schema, zero_count: 0.0, offset: 0, counts: Vec::new(), populated: 0, start_ns }
    }

    /// The same shape, with nothing counted.
    pub fn zeroed(&self) -> Native {
        Native::new(self.schema, self.start_ns)
    }

    /// Counts `v` with weight `w`. Past the budget, the histogram either asks
    /// to be reset (it is old enough) or halves its resolution here.
    #[inline]
    pub fn observe(&mut self, s: &Settings, v: f64, w: f64, now_ns: u64) -> Over {
        if v.is_nan() || v <= ZERO_THRESHOLD {
            self.zero_count += w;
            return Over::No;
        }
        self.add(bucket_key(v, self.schema), w);
        if s.max_buckets == 0 || self.populated <= s.max_buckets {
            return Over::No;
        }
        if s.min_reset_ns != 0 && now_ns.saturating_sub(self.start_ns) >= s.min_reset_ns {
            return Over::Reset;
        }
        if self.schema > MIN_SCHEMA {
            self.halve();
        }
        Over::No
    }

    fn add(&mut self, key: i32, w: f64) {
        if self.counts.is_empty() {
            self.offset = key;
        }
        if key < self.offset {
            let grow = (self.offset - key) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0.0, grow));
            self.offset = key;
        }
        let i = (key - self.offset) as usize;
        if i >= self.counts.len() {
            self.counts.resize(i + 1, 0.0);
        }
        let c = &mut self.counts[i];
        if *c == 0.0 && w != 0.0 {
            self.populated += 1;
        }
        *c += w;
    }

    /// Merges each pair of buckets: bucket `k` becomes bucket `ceil(k / 2)`
    /// of the schema one lower.
    fn halve(&mut self) {
        let half = |k: i32| (k + 1) >> 1;
        let offset = half(self.offset);
        let mut counts = vec![0.0; self.counts.len() / 2 + 1];
        for (i, &c) in self.counts.iter().enumerate() {
            counts[(half(self.offset + i as i32) - offset) as usize] += c;
        }
        while counts.last() == Some(&0.0) {
            counts.pop();
        }
        self.populated = counts.iter().filter(|&&c| c != 0.0).count() as u32;
        self.schema -= 1;
        self.offset = offset;
        self.counts = counts;
    }

    /// The populated buckets as `(key, count)`, ascending.
    pub fn buckets(&self) -> impl Iterator<Item = (i32, f64)> + '_ {
        self.counts.iter().enumerate().filter(|(_, c)| **c != 0.0).map(|(i, &c)| (self.offset + i as i32, c))
    }

    /// Runs of buckets for Prometheus' protobuf format: `(gap, counts)` where
    /// `gap` is the key distance from the end of the previous run (from 0
    /// for the first). As the Go client writes them, gaps of one or two
    /// empty buckets are carried inside a run as zeros.
    pub fn spans(&self) -> Vec<(i32, &[f64])> {
        let mut out = Vec::new();
        let mut i = 0;
        let mut next_key = 0;
        let n = self.counts.len();
        while i < n {
            if self.counts[i] == 0.0 {
                i += 1;
                continue;
            }
            let start = i;
            let mut end = i + 1;
            loop {
                // Extend over a gap of at most two empty buckets.
                let mut j = end;
                while j < n && j < end + 3 && self.counts[j] == 0.0 {
                    j += 1;
                }
                if j < n && j < end + 3 {
                    end = j + 1;
                } else {
                    break;
                }
            }
            let key = self.offset + start as i32;
            out.push((key - next_key, &self.counts[start..end]));
            next_key = self.offset + end as i32;
            i = end;
        }
        out
    }

    /// The populated range, dense, as OTLP's exponential histograms carry it:
    /// the key of its first bucket and the counts from there to the last
    /// populated one.
    pub fn dense(&self) -> (i32, &[f64]) {
        let first = self.counts.iter().position(|&c| c != 0.0).unwrap_or(0);
        let last = self.counts.iter().rposition(|&c| c != 0.0).map_or(first, |i| i + 1);
        (self.offset + first as i32, &self.counts[first..last])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_from_factor_as_the_go_client_picks_it() {
        assert_eq!(schema_for_factor(1.1), 3);
        assert_eq!(schema_for_factor(1.09), 4);
        assert_eq!(schema_for_factor(2.0), 0);
        assert_eq!(schema_for_factor(1.5), 1);
        assert_eq!(schema_for_factor(4.0), -1);
        assert_eq!(schema_for_factor(1e300), MIN_SCHEMA);
        assert_eq!(schema_for_factor(1.000_001), MAX_SCHEMA);
    }

    #[test]
    fn keys_are_upper_inclusive_at_every_schema() {
        for schema in MIN_SCHEMA..=MAX_SCHEMA {
            for key in -40..40 {
                let upper = bucket_upper(key, schema);
                assert_eq!(bucket_key(upper, schema), key, "upper of {key} at schema {schema}");
                let above = upper * (1.0 + 1e-9);
                assert_eq!(bucket_key(above, schema), key + 1, "just above {key} at schema {schema}");
            }
        }
        // The keys of a few latencies at schema 3: 1 s ends bucket 0.
        assert_eq!(bucket_key(1.0, 3), 0);
        assert_eq!(bucket_key(1.05, 3), 1);
        assert_eq!(bucket_key(0.1, 3), -26);
        assert_eq!(bucket_key(0.5, 3), -8);
    }

    fn settings(max_buckets: u32, min_reset_ns: u64) -> Settings {
        Settings { schema: 3, max_buckets, min_reset_ns }
    }

    #[test]
    fn counts_by_key_and_zero_bucket() {
        let s = settings(0, 0);
        let mut h = Native::new(3, 1);
        for v in [0.0, 0.1, 0.1, 1.0, 0.5] {
            h.observe(&s, v, 1.0, 2);
        }
        assert_eq!(h.zero_count, 1.0);
        assert_eq!(h.buckets().collect::<Vec<_>>(), vec![(-26, 2.0), (-8, 1.0), (0, 1.0)]);
        // Runs: -26 alone, then -8 and 0 each alone (gaps of 17 and 7).
        let spans: Vec<(i32, Vec<f64>)> = h.spans().into_iter().map(|(g, c)| (g, c.to_vec())).collect();
        assert_eq!(spans, vec![(-26, vec![2.0]), (17, vec![1.0]), (7, vec![1.0])]);
        assert_eq!(h.dense().0, -26);
        assert_eq!(h.dense().1.len(), 27);
    }

    #[test]
    fn gaps_of_two_stay_inside_a_run() {
        let s = settings(0, 0);
        let mut h = Native::new(0, 1);
        for v in [1.0, 8.0, 64.0] {
            h.observe(&s, v, 1.0, 2);
        }
        // Keys 0, 3, 6: gaps of two buckets, one run.
        let spans: Vec<(i32, Vec<f64>)> = h.spans().into_iter().map(|(g, c)| (g, c.to_vec())).collect();
        assert_eq!(spans, vec![(0, vec![1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0])]);
        h.observe(&s, 1024.0, 1.0, 2);
        let spans: Vec<(i32, usize)> = h.spans().into_iter().map(|(g, c)| (g, c.len())).collect();
        assert_eq!(spans, vec![(0, 7), (3, 1)]);
    }

    #[test]
    fn past_the_budget_resolution_halves_until_old_enough_to_reset() {
        let s = settings(4, 100);
        let mut h = Native::new(3, 10);
        // Keys 1..=4 at schema 3: four buckets, within the budget.
        for k in 1..=4 {
            assert_eq!(h.observe(&s, bucket_upper(k, 3), 1.0, 20), Over::No);
        }
        assert_eq!((h.schema, h.populated), (3, 4));
        // A fifth: halved to schema 2, keys 1,2 → 1 and 3,4 → 2, 5 → 3.
        assert_eq!(h.observe(&s, bucket_upper(5, 3), 1.0, 20), Over::No);
        assert_eq!(h.schema, 2);
        assert_eq!(h.buckets().collect::<Vec<_>>(), vec![(1, 2.0), (2, 2.0), (3, 1.0)]);
        // Key 10 of schema 2 fits; key 20 halves to schema 1 ({1: 4, 2: 1,
        // 5: 1, 10: 1}); key 30 of schema 2 is key 15 of schema 1 and halves
        // again.
        for k in [10, 20, 30] {
            assert_eq!(h.observe(&s, bucket_upper(k, 2), 1.0, 20), Over::No);
        }
        assert_eq!(h.schema, 0);
        assert_eq!(h.buckets().collect::<Vec<_>>(), vec![(1, 5.0), (3, 1.0), (5, 1.0), (8, 1.0)]);
        // Old enough: the holder is asked to reset.
        assert_eq!(h.observe(&s, bucket_upper(50, 0), 1.0, 110), Over::Reset);
    }

    #[test]
    fn halving_negative_keys_rounds_up() {
        let s = settings(0, 0);
        let mut h = Native::new(1, 0);
        for k in [-3, -2, -1, 0, 1] {
            h.observe(&s, bucket_upper(k, 1), 1.0, 0);
        }
        h.halve();
        // ceil(k / 2): -3 → -1, -2 → -1, -1 → 0, 0 → 0, 1 → 1.
        assert_eq!(h.buckets().collect::<Vec<_>>(), vec![(-1, 2.0), (0, 2.0), (1, 1.0)]);
        assert_eq!(h.schema, 0);
    }
}
