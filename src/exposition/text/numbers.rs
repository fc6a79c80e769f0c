//! The numbers of the text formats, written into a [`Room`]: integers as
//! `itoa` writes them, floats as `dtoa` does, times in seconds exact to the
//! nanosecond, trace ids in hex.

use crate::exposition::room::Room;

/// The longest number written: a float as `dtoa` writes it (at most 25
/// bytes, as in `-0.0000012345678901234568`), an integer (20 digits), a time
/// in seconds (21 bytes).
pub(super) const NUMBER: usize = 32;

/// The longest exemplar suffix (` # {label="…"} value time`) for a label
/// name of `label` bytes.
pub(super) const fn exemplar_bound(label: usize) -> usize {
    " # {".len() + label + "=\"".len() + 32 + "\"} ".len() + NUMBER + 1 + NUMBER
}

/// Below this, a whole-number float is written as its integer and `.0`,
/// which is what `dtoa` writes for it (checked for every one of them in the
/// tests), without `dtoa`'s general algorithm.
const SMALL_WHOLE: f64 = (1u64 << 20) as f64;

/// A time in seconds, exact to the nanosecond, into `text`: whole
/// seconds, then the nanoseconds without their trailing zeros. Returns the
/// length written (at most 21 bytes).
fn seconds_text(text: &mut [u8; NUMBER], ns: u64) -> usize {
    let mut itoa = itoa::Buffer::new();
    let whole = itoa.format(ns / 1_000_000_000).as_bytes();
    text[..whole.len()].copy_from_slice(whole);
    let mut n = whole.len();
    let mut frac = (ns % 1_000_000_000) as u32;
    if frac != 0 {
        // A point and nine digits of nanoseconds, the trailing zeros left out.
        let digits = &mut text[n..n + 10];
        digits[0] = b'.';
        for d in digits[1..].iter_mut().rev() {
            *d = b'0' + (frac % 10) as u8;
            frac /= 10;
        }
        n += digits.iter().rposition(|&d| d != b'0').map_or(0, |i| i + 1);
    }
    n
}

/// The last time in seconds written as text. The writer goes family by
/// family, so the `_created` line before an edge's is its neighbour's in
/// label order: edges first seen in the same consume call share its clock
/// reading as their creation time, and a run of them formats it once.
pub(super) struct Seconds {
    ns: u64,
    len: usize,
    text: [u8; NUMBER],
}

impl Seconds {
    pub(super) fn new() -> Seconds {
        let mut s = Seconds { ns: 0, len: 0, text: [0; NUMBER] };
        s.len = seconds_text(&mut s.text, 0);
        s
    }

    /// `ns` in seconds, as [`Room::seconds`] writes it.
    #[inline]
    pub(super) fn text(&mut self, ns: u64) -> &[u8] {
        if ns != self.ns {
            self.ns = ns;
            self.len = seconds_text(&mut self.text, ns);
        }
        &self.text[..self.len]
    }
}

impl Room<'_> {
    /// An integer as `itoa` writes it; one or two digits a byte at a time,
    /// cheaper than copying them from a buffer.
    #[inline]
    pub(super) fn integer(&mut self, v: u64) {
        if v < 10 {
            self.byte(b'0' + v as u8);
        } else if v < 100 {
            self.put(&[b'0' + (v / 10) as u8, b'0' + (v % 10) as u8]);
        } else {
            self.put(itoa::Buffer::new().format(v).as_bytes());
        }
    }

    /// A float as `dtoa` writes it, small whole numbers without it.
    #[inline]
    pub(super) fn float(&mut self, v: f64) {
        if v.is_sign_positive() && v < SMALL_WHOLE && v == (v as u64) as f64 {
            self.integer(v as u64);
            self.put(b".0");
        } else {
            self.put(dtoa::Buffer::new().format(v).as_bytes());
        }
    }

    /// A time in seconds, exact to the nanosecond (see [`seconds_text`]).
    pub(super) fn seconds(&mut self, ns: u64) {
        let mut text = [0; NUMBER];
        let n = seconds_text(&mut text, ns);
        self.put(&text[..n]);
    }

    /// A trace id in lowercase hex, as [`crate::series::exemplar::hex`] writes it.
    pub(super) fn hex(&mut self, id: &[u8; 16]) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0; 32];
        for (pair, &b) in text.chunks_exact_mut(2).zip(id) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 15)];
        }
        self.put(&text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(bound: usize, f: impl FnOnce(&mut Room<'_>)) -> String {
        let mut out = b"head ".to_vec();
        Room::make(&mut out, bound, f);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn small_whole_numbers_are_written_as_dtoa_writes_them() {
        let values = (0..=SMALL_WHOLE as u64 + 2).map(|n| n as f64);
        for v in values.chain([-0.0, -1.0, 0.5, f64::NAN, f64::INFINITY, f64::MIN, -f64::MIN_POSITIVE]) {
            assert_eq!(written(NUMBER, |r| r.float(v)), format!("head {}", dtoa::Buffer::new().format(v)), "{v}");
        }
    }

    #[test]
    fn integers_are_written_as_itoa_writes_them() {
        for v in (0..1000).chain([u64::MAX, 1 << 53, 12345678901]) {
            assert_eq!(written(NUMBER, |r| r.integer(v)), format!("head {v}"));
        }
    }

    #[test]
    fn seconds_are_exact_to_the_nanosecond() {
        for (ns, want) in [
            (0, "0"),
            (1, "0.000000001"),
            (1_500_000_000, "1.5"),
            (1_700_000_000_000_000_000, "1700000000"),
            (1_700_000_000_123_456_780, "1700000000.12345678"),
            (u64::MAX, "18446744073.709551615"),
        ] {
            assert_eq!(written(NUMBER, |r| r.seconds(ns)), format!("head {want}"));
        }
    }

    #[test]
    fn a_time_kept_as_text_is_the_time_written() {
        let mut kept = Seconds::new();
        for ns in [0, 1_500_000_000, 1_500_000_000, 7, 0, u64::MAX, 1_700_000_000_123_456_780] {
            assert_eq!(
                String::from_utf8(kept.text(ns).to_vec()).unwrap(),
                written(NUMBER, |r| r.seconds(ns))["head ".len()..],
                "{ns}"
            );
        }
    }

    #[test]
    fn the_longest_exemplar_fits_its_bound() {
        let label = "traceID";
        let text = written(exemplar_bound(label.len()), |r| {
            r.put(b" # {");
            r.put(label.as_bytes());
            r.put(b"=\"");
            r.hex(&[0xab; 16]);
            r.put(b"\"} ");
            r.float(-1.2345678901234567e-6);
            r.byte(b' ');
            r.seconds(u64::MAX);
        });
        let longest = "-0.0000012345678901234568";
        assert_eq!(dtoa::Buffer::new().format(-1.2345678901234567e-6), longest);
        assert_eq!(text, format!("head  # {{traceID=\"{}\"}} {longest} 18446744073.709551615", "ab".repeat(16)));
    }
}
