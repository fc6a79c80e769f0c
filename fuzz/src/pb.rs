//! A hand-written protobuf writer, so the generator controls every byte:
//! non-minimal varints, unknown fields, odd field orders, and nesting as deep
//! as asked for. No encoder library sits in between to refuse or normalise.

/// Wire types.
pub const VARINT: u8 = 0;
pub const I64: u8 = 1;
pub const LEN: u8 = 2;
pub const I32: u8 = 5;

/// Appends `v` as a varint padded to at least `min_len` bytes (1..=10) with
/// redundant continuation bytes: valid protobuf, but not what encoders write.
pub fn varint_padded(out: &mut Vec<u8>, mut v: u64, min_len: usize) {
    let min_len = min_len.clamp(1, 10);
    let mut n = 0;
    loop {
        let low = (v & 0x7f) as u8;
        v >>= 7;
        n += 1;
        if v == 0 && n >= min_len {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
        if n == 9 {
            // The tenth byte carries bit 63 only.
            out.push((v & 1) as u8);
            return;
        }
    }
}

pub fn varint(out: &mut Vec<u8>, v: u64) {
    varint_padded(out, v, 1)
}

/// How a message's framing is written.
#[derive(Debug, Clone, Copy, Default)]
pub struct Enc {
    /// Extra bytes in every tag and length varint (0 = canonical).
    pub pad: u8,
}

impl Enc {
    pub const CANONICAL: Enc = Enc { pad: 0 };
    fn n(self) -> usize {
        1 + (self.pad as usize % 10)
    }
}

pub fn tag(out: &mut Vec<u8>, field: u32, wt: u8, e: Enc) {
    varint_padded(out, (field as u64) << 3 | wt as u64, e.n());
}

pub fn len_field(out: &mut Vec<u8>, field: u32, body: &[u8], e: Enc) {
    tag(out, field, LEN, e);
    varint_padded(out, body.len() as u64, e.n());
    out.extend_from_slice(body);
}

pub fn varint_field(out: &mut Vec<u8>, field: u32, v: u64, e: Enc) {
    tag(out, field, VARINT, e);
    varint_padded(out, v, e.n());
}

pub fn fixed64_field(out: &mut Vec<u8>, field: u32, v: u64, e: Enc) {
    tag(out, field, I64, e);
    out.extend_from_slice(&v.to_le_bytes());
}

pub fn fixed32_field(out: &mut Vec<u8>, field: u32, v: u32, e: Enc) {
    tag(out, field, I32, e);
    out.extend_from_slice(&v.to_le_bytes());
}

/// A protobuf message written back to front, so that wrapping what has been
/// written so far in another message costs a few bytes, not a copy: nesting
/// 100,000 levels deep is linear, and no recursion is involved. Fields
/// written later come *earlier* on the wire.
#[derive(Default)]
pub struct Rev {
    buf: Vec<u8>,
}

impl Rev {
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Puts `bytes` (in wire order) in front of everything written so far.
    pub fn prepend(&mut self, bytes: &[u8]) {
        self.buf.extend(bytes.iter().rev());
    }

    fn prepend_varint(&mut self, v: u64, e: Enc) {
        let mut tmp = Vec::with_capacity(10);
        varint_padded(&mut tmp, v, e.n());
        self.prepend(&tmp);
    }

    /// Makes everything written so far the body of field `field`
    /// (length-delimited) of a new enclosing message.
    pub fn wrap(&mut self, field: u32, e: Enc) {
        let len = self.buf.len() as u64;
        self.prepend_varint(len, e);
        let mut t = Vec::with_capacity(10);
        tag(&mut t, field, LEN, e);
        self.prepend(&t);
    }

    /// Puts a whole length-delimited field in front.
    pub fn prepend_len_field(&mut self, field: u32, body: &[u8], e: Enc) {
        let mut f = Vec::with_capacity(body.len() + 4);
        len_field(&mut f, field, body, e);
        self.prepend(&f);
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.buf.reverse();
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_varints_decode_to_the_value() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            for pad in 1..=10 {
                let mut b = Vec::new();
                varint_padded(&mut b, v, pad);
                assert!(b.len() <= 10 && b.len() >= pad.min(10));
                let mut got = 0u64;
                for (i, byte) in b.iter().enumerate() {
                    got |= ((byte & 0x7f) as u64) << (7 * i);
                }
                assert_eq!(got, v, "v={v} pad={pad} bytes={b:x?}");
            }
        }
    }

    #[test]
    fn rev_wrap_matches_forward() {
        let mut r = Rev::default();
        r.prepend(b"abc");
        r.wrap(1, Enc::CANONICAL);
        r.prepend_len_field(2, b"xy", Enc::CANONICAL);
        r.wrap(3, Enc::CANONICAL);
        let mut inner = Vec::new();
        len_field(&mut inner, 2, b"xy", Enc::CANONICAL);
        len_field(&mut inner, 1, b"abc", Enc::CANONICAL);
        let mut want = Vec::new();
        len_field(&mut want, 3, &inner, Enc::CANONICAL);
        assert_eq!(r.finish(), want);
    }
}
