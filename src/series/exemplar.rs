//! Exemplars: for each bucket of a series' latency histograms, the last
//! request observed in it, so that a slow bucket in Grafana links to a trace
//! that fell in it. Tempo keeps one per bucket the same way; it clears them
//! after each remote write, but a scrape here must not change what the next
//! scraper reads, so they are kept until a later request replaces them (a
//! Prometheus that reads the same exemplar twice stores it once: same labels,
//! value and timestamp).

/// One request kept as the example of its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Exemplar {
    /// The latency observed, in seconds.
    pub value: f64,
    /// When it was counted, on the engine's clock; 0 while the bucket has none.
    pub at_ns: u64,
    pub trace_id: [u8; 16],
    /// The client span of the request (the key both sides are paired by).
    pub span_id: [u8; 8],
}

impl Exemplar {
    pub fn is_set(&self) -> bool {
        self.at_ns != 0
    }
}

/// Which histogram of a series an exemplar belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Server = 0,
    Client = 1,
    Messaging = 2,
}

/// The exemplars of one series: a row of buckets per histogram family.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplars {
    slots: Box<[Exemplar]>,
    /// Buckets per family, +Inf included.
    stride: usize,
}

impl Exemplars {
    /// Room for `families` histograms of `buckets` buckets each, all empty.
    pub fn new(families: usize, buckets: usize) -> Exemplars {
        Exemplars { slots: vec![Exemplar::default(); families * buckets].into_boxed_slice(), stride: buckets }
    }

    #[inline]
    pub fn set(&mut self, family: Family, bucket: usize, e: Exemplar) {
        if let Some(slot) = self.slots.get_mut(family as usize * self.stride + bucket) {
            *slot = e;
        }
    }

    /// One family's exemplars by bucket (unset ones included); empty when the
    /// series has no room for that family.
    pub fn of(&self, family: Family) -> &[Exemplar] {
        let at = family as usize * self.stride;
        self.slots.get(at..at + self.stride).unwrap_or(&[])
    }

    /// Forgets one family's exemplars (its histogram reads zero again).
    pub fn clear(&mut self, family: Family) {
        let at = family as usize * self.stride;
        if let Some(row) = self.slots.get_mut(at..at + self.stride) {
            row.fill(Exemplar::default());
        }
    }

    /// The slowest exemplar of `family`: the one in the highest bucket that
    /// has one.
    pub fn slowest(&self, family: Family) -> Option<&Exemplar> {
        self.of(family).iter().rev().find(|e| e.is_set())
    }
}

/// Lower-case hex of an ID, as Tempo writes trace IDs in exemplar labels.
pub fn hex(id: &[u8], out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &b in id {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
}
