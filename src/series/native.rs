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
//! contrib's connector builds its exponential histograms another way
//! ([`Budget::Span`]): OpenTelemetry's Go histogram structure starts at scale
//! 20, finds a bucket by the logarithm, counts only 0 in the zero bucket,
//! keeps the minimum and maximum, and lowers the scale just enough that the
//! lowest and highest populated buckets stay within a fixed span; it never
//! resets.
//!
//! Latencies are never negative here (durations are read as unsigned), so
//! only the positive buckets exist.

/// Values at or below this go to the zero bucket: 2^-128, the Go client's default.
pub(crate) const ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39;

/// The finest and the coarsest schema Prometheus accepts.
pub(crate) const MAX_SCHEMA: i8 = 8;
pub(crate) const MIN_SCHEMA: i8 = -4;

/// The scale OpenTelemetry's Go histogram structure starts at, and the
/// coarsest its exponent mapping goes to.
pub(crate) const OTEL_START_SCALE: i8 = 20;
const OTEL_MIN_SCALE: i8 = -10;

/// How native histograms are kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Buckets grow by `2^(2^-schema)`; schema 3 (the factor 1.1 of
    /// Tempo's default) is about 9 % per bucket. A histogram starts here.
    pub schema: i8,
    pub budget: Budget,
}

/// What a histogram does when its buckets grow past its budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// Prometheus' Go client (Tempo): at most `max_buckets` populated buckets
    /// (0: no limit); past it, a histogram at least `min_reset_ns` old (since
    /// its creation or last reset; 0: never) starts again from zero, a
    /// younger one halves its resolution.
    Populated { max_buckets: u32, min_reset_ns: u64 },
    /// OpenTelemetry's Go histogram structure (contrib): the keys from the
    /// lowest to the highest populated bucket span fewer than `max_size`;
    /// past it, the scale drops by as many steps as it takes. Keys are
    /// found by the logarithm, only 0 counts as zero, and the minimum and
    /// maximum are kept.
    Span { max_size: u32 },
}

impl Settings {
    /// Tempo's defaults: factor 1.1, 100 buckets, a reset after 15 minutes.
    pub fn tempo() -> Settings {
        Settings {
            schema: schema_for_factor(1.1),
            budget: Budget::Populated { max_buckets: 100, min_reset_ns: 15 * 60 * 1_000_000_000 },
        }
    }

    /// contrib's `exponential_histogram_max_size`, read as its histogram
    /// structure reads it: 0 is its default 160, and sizes outside 2…16,384
    /// are brought to the nearest end.
    pub fn contrib(max_size: u32) -> Settings {
        let max_size = if max_size == 0 { 160 } else { max_size.clamp(2, 16_384) };
        Settings { schema: OTEL_START_SCALE, budget: Budget::Span { max_size } }
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

/// The key of the bucket holding `v` (positive) as OpenTelemetry's Go
/// histogram structure finds it: an exact power of two ends its bucket, any
/// other value at a positive scale goes to `floor(ln(v) · 2^scale / ln 2)`
/// plus one (its index is the key minus one). The logarithm can land the
/// other side of a bound than [`bucket_key`]'s exact search; contrib's
/// buckets are this function's. Go's and Rust's logarithms may differ in
/// the last bit, which moves a value only if it lies within about 10^-10 of
/// a bucket's bound at scale 20.
#[inline]
pub fn otel_key(v: f64, schema: i8) -> i32 {
    let bits = v.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32 - 1023;
    let significand = bits & ((1 << 52) - 1);
    if schema <= 0 {
        // The exponent mapping, which is Prometheus' too.
        return bucket_key(v, schema);
    }
    if significand == 0 {
        return exp << schema;
    }
    let factor = std::f64::consts::LOG2_E * 2f64.powi(i32::from(schema));
    (v.ln() * factor).floor() as i32 + 1
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
    /// The smallest and largest value observed, kept under
    /// [`Budget::Span`] (contrib writes them); `None` otherwise.
    pub min_max: Option<(f64, f64)>,
    /// Built under [`Budget::Span`]: OTLP output as contrib writes it.
    pub otel: bool,
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
    /// An empty histogram at `s`'s starting schema.
    pub fn new(s: &Settings, start_ns: u64) -> Native {
        let otel = matches!(s.budget, Budget::Span { .. });
        Native {
            schema: s.schema,
            zero_count: 0.0,
            offset: 0,
            counts: Vec::new(),
            populated: 0,
            start_ns,
            min_max: None,
            otel,
        }
    }

    /// The same shape, with nothing counted.
    pub fn zeroed(&self) -> Native {
        Native { zero_count: 0.0, offset: 0, counts: Vec::new(), populated: 0, min_max: None, ..*self }
    }

    /// Counts `v` with weight `w`. Past the budget, the histogram either asks
    /// to be reset (it is old enough) or lowers its resolution here.
    #[inline]
    pub fn observe(&mut self, s: &Settings, v: f64, w: f64, now_ns: u64) -> Over {
        let (max_buckets, min_reset_ns) = match s.budget {
            Budget::Populated { max_buckets, min_reset_ns } => (max_buckets, min_reset_ns),
            Budget::Span { max_size } => {
                self.observe_span(max_size, v, w);
                return Over::No;
            }
        };
        if v.is_nan() || v <= ZERO_THRESHOLD {
            self.zero_count += w;
            return Over::No;
        }
        self.add(bucket_key(v, self.schema), w);
        if max_buckets == 0 || self.populated <= max_buckets {
            return Over::No;
        }
        if min_reset_ns != 0 && now_ns.saturating_sub(self.start_ns) >= min_reset_ns {
            return Over::Reset;
        }
        if self.schema > MIN_SCHEMA {
            self.halve();
        }
        Over::No
    }

    /// [`Budget::Span`]'s observation. The span is measured on OTLP indices
    /// (key − 1), and the scale drops by the number of halvings that bring
    /// the new extremes within `max_size`, as the Go structure counts them.
    fn observe_span(&mut self, max_size: u32, v: f64, w: f64) {
        self.min_max = Some(match self.min_max {
            None => (v, v),
            Some((lo, hi)) => (lo.min(v), hi.max(v)),
        });
        if v.is_nan() || v <= 0.0 {
            self.zero_count += w;
            return;
        }
        let mut key = otel_key(v, self.schema);
        if !self.counts.is_empty() {
            let last = self.offset + self.counts.len() as i32 - 1;
            let (mut low, mut high) = (key.min(self.offset) - 1, key.max(last) - 1);
            let mut change = 0;
            while i64::from(high) - i64::from(low) >= i64::from(max_size) {
                low >>= 1;
                high >>= 1;
                change += 1;
            }
            if change > 0 {
                for _ in 0..change {
                    if self.schema > OTEL_MIN_SCALE {
                        self.halve();
                    }
                }
                key = otel_key(v, self.schema);
            }
        }
        self.add(key, w);
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

    /// This histogram at `schema` or coarser: contrib's kind starts at scale
    /// 20, and Prometheus takes 8 at most.
    pub fn at_most(&self, schema: i8) -> std::borrow::Cow<'_, Native> {
        if self.schema <= schema {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut n = self.clone();
        while n.schema > schema {
            n.halve();
        }
        std::borrow::Cow::Owned(n)
    }

    /// The point as OTLP's exponential histograms carry it: the scale, the
    /// index of the first bucket (OTLP's bucket `i` is key `i + 1`) and the
    /// counts from there to the last populated bucket. contrib's histograms
    /// with no bucket yet say scale 0 and index 0.
    pub fn otlp(&self) -> (i8, i32, &[f64]) {
        let (key, counts) = self.dense();
        if self.otel && counts.is_empty() { (0, 0, counts) } else { (self.schema, key - 1, counts) }
    }

    /// The zero bucket's upper bound: the Go client's, or only 0 for contrib.
    pub fn zero_threshold(&self) -> f64 {
        if self.otel { 0.0 } else { ZERO_THRESHOLD }
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
        Settings { schema: 3, budget: Budget::Populated { max_buckets, min_reset_ns } }
    }

    #[test]
    fn counts_by_key_and_zero_bucket() {
        let s = settings(0, 0);
        let mut h = Native::new(&s, 1);
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
        let mut h = Native::new(&Settings { schema: 0, ..s }, 1);
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
        let mut h = Native::new(&s, 10);
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
        let mut h = Native::new(&Settings { schema: 1, ..s }, 0);
        for k in [-3, -2, -1, 0, 1] {
            h.observe(&s, bucket_upper(k, 1), 1.0, 0);
        }
        h.halve();
        // ceil(k / 2): -3 → -1, -2 → -1, -1 → 0, 0 → 0, 1 → 1.
        assert_eq!(h.buckets().collect::<Vec<_>>(), vec![(-1, 2.0), (0, 2.0), (1, 1.0)]);
        assert_eq!(h.schema, 0);
    }

    #[test]
    fn contrib_kind_starts_at_scale_20_and_keeps_min_and_max() {
        // contrib's own test: one request of 2 s on the server and 1 s on
        // the client, size 4: scale 20, index 2^20 - 1 and -1.
        let s = Settings::contrib(4);
        let mut server = Native::new(&s, 0);
        server.observe(&s, 2.0, 1.0, 0);
        assert_eq!(server.otlp(), (20, 1_048_575, &[1.0][..]));
        assert_eq!(server.min_max, Some((2.0, 2.0)));
        assert_eq!(server.zero_threshold(), 0.0);
        let mut client = Native::new(&s, 0);
        client.observe(&s, 1.0, 1.0, 0);
        assert_eq!(client.otlp(), (20, -1, &[1.0][..]));
    }

    #[test]
    fn contrib_kind_drops_the_scale_until_the_span_fits() {
        let s = Settings::contrib(4);
        let mut h = Native::new(&s, 0);
        h.observe(&s, 1.0, 1.0, 0);
        // Indices -1 and 2^20 - 1 fit in a span of 4 after 19 halvings
        // (-1 and 1); at scale 1, 2 s is index 1 again.
        h.observe(&s, 2.0, 1.0, 0);
        assert_eq!(h.otlp(), (1, -1, &[1.0, 0.0, 1.0][..]));
        // 3 s is index floor(log2(3) · 2) = 3: a span of 5, one more halving
        // to scale 0 (indices -1, 0, 1).
        h.observe(&s, 3.0, 1.0, 0);
        assert_eq!(h.otlp(), (0, -1, &[1.0, 1.0, 1.0][..]));
        // Zero counts apart and lowers the minimum; nothing resets.
        h.observe(&s, 0.0, 1.0, u64::MAX);
        assert_eq!((h.zero_count, h.min_max), (1.0, Some((0.0, 3.0))));
        // Only zeros: scale 0, index 0, as contrib writes it.
        let mut z = Native::new(&s, 0);
        z.observe(&s, 0.0, 1.0, 0);
        assert_eq!(z.otlp(), (0, 0, &[][..]));
    }

    #[test]
    fn contrib_keys_come_from_the_logarithm() {
        // Powers of two end their bucket; others take floor(ln v · 2^s / ln 2).
        assert_eq!(otel_key(1.0, 20), 0);
        assert_eq!(otel_key(0.5, 3), -8);
        assert_eq!(otel_key(0.1, 3), -26);
        assert_eq!(otel_key(3.0, 1), 4);
        // At and below scale 0 the exponent mapping is Prometheus'.
        for v in [0.001, 0.25, 0.3, 1.0, 7.5, 1024.0] {
            for schema in -4..=0 {
                assert_eq!(otel_key(v, schema), bucket_key(v, schema), "{v} at {schema}");
            }
        }
        // Brought down to Prometheus' finest schema for its exposition.
        let s = Settings::contrib(160);
        let mut h = Native::new(&s, 0);
        h.observe(&s, 0.1, 1.0, 0);
        let coarse = h.at_most(MAX_SCHEMA);
        assert_eq!(coarse.schema, 8);
        assert_eq!(coarse.otlp().1, (otel_key(0.1, 20) - 1) >> 12);
    }
}
