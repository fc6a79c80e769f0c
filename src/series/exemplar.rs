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

    /// The slowest exemplar of `family`: the one in the highest bucket that
    /// has one.
    pub fn slowest(&self, family: Family) -> Option<&Exemplar> {
        self.of(family).iter().rev().find(|e| e.is_set())
    }

    /// Appends the set exemplars of each family not in `skip` to `out`, in
    /// family then bucket order, and returns where each family's row lies
    /// in `out`.
    pub fn keep_set(&self, skip: [bool; 3], out: &mut Vec<Kept>) -> Rows {
        // Rows index the list with u32: 4 G exemplars would be about 200 GB.
        debug_assert!(out.len() + skip.len() * self.stride <= u32::MAX as usize);
        let mut ends = [out.len() as u32; 4];
        for (f, skipped) in skip.into_iter().enumerate() {
            let row = self.slots.get(f * self.stride..(f + 1) * self.stride).unwrap_or(&[]);
            if !skipped {
                let set = row.iter().enumerate().filter(|(_, x)| x.is_set());
                out.extend(set.map(|(b, &exemplar)| Kept { bucket: b as u32, exemplar }));
            }
            ends[f + 1] = out.len() as u32;
        }
        Rows(ends)
    }
}

/// A set exemplar copied out of a series, with its bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Kept {
    pub bucket: u32,
    pub exemplar: Exemplar,
}

/// Where a series' kept exemplars lie in a list of [`Kept`]: family `f`'s
/// row is `0[f]..0[f + 1]`. A snapshot copies only the set exemplars, most
/// slots being empty: a copy of every slot was most of a render's bytes
/// moved (1.7 KB a series against 96 for its two usual exemplars).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rows(pub [u32; 4]);

impl Rows {
    /// Family `family`'s row within `list`.
    pub fn of<'a>(&self, list: &'a [Kept], family: Family) -> Row<'a> {
        let f = family as usize;
        Row(list.get(self.0[f] as usize..self.0[f + 1] as usize).unwrap_or(&[]))
    }
}

/// One histogram's set exemplars, in bucket order.
#[derive(Debug, Clone, Copy, Default)]
pub struct Row<'a>(pub &'a [Kept]);

impl<'a> Row<'a> {
    /// The exemplar of bucket `bucket`, if it has one.
    pub fn get(&self, bucket: usize) -> Option<&'a Exemplar> {
        self.0.iter().find(|k| k.bucket as usize == bucket).map(|k| &k.exemplar)
    }

    /// The exemplars, in bucket order.
    pub fn iter(&self) -> impl Iterator<Item = &'a Exemplar> + use<'a> {
        self.0.iter().map(|k| &k.exemplar)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
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
