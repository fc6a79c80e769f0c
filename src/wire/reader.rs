//! The protobuf wire format read in place: tags, varints and lengths, and the
//! `KeyValue` and `AnyValue` messages attribute values come in. Nothing here
//! allocates; values borrow the batch bytes.

use super::attributes::AttrValue;
use crate::error::DecodeError;

pub(super) const WT_VARINT: u8 = 0;

pub(super) const WT_I64: u8 = 1;

pub(super) const WT_LEN: u8 = 2;

pub(super) const WT_I32: u8 = 5;

/// A cursor over one message's bytes. `base` is the offset of `buf` in the
/// whole batch, for error messages.
pub(super) struct Reader<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
    pub(super) base: usize,
    pub(super) path: &'static str,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8], base: usize, path: &'static str) -> Self {
        Reader { buf, pos: 0, base, path }
    }

    #[inline(always)]
    pub(super) fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    #[cold]
    pub(super) fn err(&self, reason: &'static str) -> DecodeError {
        DecodeError { offset: self.base + self.pos, path: self.path, reason }
    }

    #[inline(always)]
    pub(super) fn varint(&mut self) -> Result<u64, DecodeError> {
        // Fast path: one byte.
        if let Some(&b) = self.buf.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(b as u64);
            }
        }
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.err("truncated varint"));
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err(self.err("varint overflows 64 bits"));
            }
            v |= ((b & 0x7f) as u64) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    /// Reads a tag; returns (field number, wire type).
    #[inline(always)]
    pub(super) fn tag(&mut self) -> Result<(u32, u8), DecodeError> {
        let t = self.varint()?;
        let field = t >> 3;
        if field == 0 || field > u32::MAX as u64 >> 3 {
            return Err(self.err("invalid field number"));
        }
        Ok((field as u32, (t & 7) as u8))
    }

    /// Reads a length-delimited field; returns (bytes, offset of the bytes in the batch).
    #[inline(always)]
    pub(super) fn bytes(&mut self) -> Result<(&'a [u8], usize), DecodeError> {
        let len = self.varint()?;
        let start = self.pos;
        if len > (self.buf.len() - start) as u64 {
            return Err(self.err("length runs past the end of the message"));
        }
        let end = start + len as usize;
        self.pos = end;
        Ok((&self.buf[start..end], self.base + start))
    }

    #[inline(always)]
    pub(super) fn fixed64(&mut self) -> Result<u64, DecodeError> {
        let Some(b) = self.buf.get(self.pos..self.pos + 8) else {
            return Err(self.err("truncated fixed64"));
        };
        self.pos += 8;
        Ok(u64::from_le_bytes(b.try_into().unwrap()))
    }

    /// Moves past `n` bytes that must be there.
    #[inline(always)]
    pub(super) fn advance(&mut self, n: usize, what: &'static str) -> Result<(), DecodeError> {
        if self.buf.len() - self.pos < n {
            return Err(self.err(what));
        }
        self.pos += n;
        Ok(())
    }

    /// Skips a field of the given wire type.
    #[inline(always)]
    pub(super) fn skip(&mut self, wire_type: u8) -> Result<(), DecodeError> {
        match wire_type {
            WT_VARINT => {
                self.varint()?;
            }
            WT_I64 => self.advance(8, "truncated fixed64")?,
            WT_LEN => {
                self.bytes()?;
            }
            WT_I32 => self.advance(4, "truncated fixed32")?,
            _ => return Err(self.err("unsupported wire type (groups are not used by OTLP)")),
        }
        Ok(())
    }

    #[inline(always)]
    pub(super) fn expect(&self, got: u8, want: u8) -> Result<(), DecodeError> {
        if got != want { Err(self.err("unexpected wire type for field")) } else { Ok(()) }
    }
}

/// Reads a `KeyValue`: the key bytes and its value.
pub(super) fn read_key_value(buf: &[u8], base: usize) -> Result<(&[u8], AttrValue<'_>), DecodeError> {
    let mut r = Reader::new(buf, base, "KeyValue");
    let mut key: &[u8] = &[];
    let mut value = AttrValue::Empty;
    while !r.done() {
        let (field, wt) = r.tag()?;
        match field {
            1 => {
                r.expect(wt, WT_LEN)?;
                key = r.bytes()?.0;
            }
            2 => {
                r.expect(wt, WT_LEN)?;
                let (v, at) = r.bytes()?;
                value = read_any_value(v, at)?;
            }
            _ => r.skip(wt)?,
        }
    }
    Ok((key, value))
}

pub(super) fn read_any_value(buf: &[u8], base: usize) -> Result<AttrValue<'_>, DecodeError> {
    let mut r = Reader::new(buf, base, "AnyValue");
    let mut value = AttrValue::Empty;
    while !r.done() {
        let (field, wt) = r.tag()?;
        value = match (field, wt) {
            (1, WT_LEN) => AttrValue::Str(r.bytes()?.0),
            (2, WT_VARINT) => AttrValue::Bool(r.varint()? != 0),
            (3, WT_VARINT) => AttrValue::Int(r.varint()? as i64),
            (4, WT_I64) => AttrValue::Double(f64::from_bits(r.fixed64()?)),
            (5, WT_LEN) => AttrValue::Array(r.bytes()?.0),
            (6, WT_LEN) => AttrValue::KvList(r.bytes()?.0),
            (7, WT_LEN) => AttrValue::Bytes(r.bytes()?.0),
            (1..=7, _) => return Err(r.err("unexpected wire type for AnyValue field")),
            _ => {
                r.skip(wt)?;
                value
            }
        };
    }
    Ok(value)
}

/// Reads every field 1 (a message) of `buf` with `read`, stopping quietly at
/// the first malformed one: used to stringify nested attribute values.
pub(super) fn each_field_1<'a, T>(
    buf: &'a [u8],
    path: &'static str,
    read: fn(&'a [u8], usize) -> Result<T, DecodeError>,
) -> Vec<T> {
    let mut out = Vec::new();
    let mut r = Reader::new(buf, 0, path);
    while !r.done() {
        let Ok((field, wt)) = r.tag() else { break };
        if field == 1 && wt == WT_LEN {
            match r.bytes().and_then(|(b, at)| read(b, at)) {
                Ok(v) => out.push(v),
                Err(_) => break,
            }
        } else if r.skip(wt).is_err() {
            break;
        }
    }
    out
}

/// Reads the elements of an `ArrayValue` body.
pub(crate) fn array_values(buf: &[u8]) -> Vec<AttrValue<'_>> {
    each_field_1(buf, "ArrayValue", read_any_value)
}

/// Reads the pairs of a `KeyValueList` body.
pub(crate) fn kvlist_values(buf: &[u8]) -> Vec<(&[u8], AttrValue<'_>)> {
    each_field_1(buf, "KeyValueList", read_key_value)
}

/// Whether the `ArrayValue` (or, with `kvlist`, `KeyValueList`) body `buf`
/// holds containers more than `max` levels deep, itself being level 1. The
/// walk keeps one reader per open level, at most `max` of them, and stops at
/// the first malformed element as [`array_values`] does.
pub(crate) fn nests_deeper_than(buf: &[u8], kvlist: bool, max: usize) -> bool {
    let mut open: Vec<(Reader<'_>, bool)> = Vec::with_capacity(max.min(64));
    open.push((Reader::new(buf, 0, "ArrayValue"), kvlist));
    while let Some((r, kvlist)) = open.last_mut() {
        let kvlist = *kvlist;
        if r.done() {
            open.pop();
            continue;
        }
        let element = match r.tag() {
            Ok((1, WT_LEN)) => r.bytes().map(|(b, _)| Some(b)),
            Ok((_, wt)) => r.skip(wt).map(|_| None),
            Err(e) => Err(e),
        };
        let element = match element {
            Ok(Some(b)) => b,
            Ok(None) => continue,
            Err(_) => {
                open.pop();
                continue;
            }
        };
        let value = if kvlist { read_key_value(element, 0).map(|(_, v)| v) } else { read_any_value(element, 0) };
        let child = match value {
            Ok(AttrValue::Array(b)) => (b, false),
            Ok(AttrValue::KvList(b)) => (b, true),
            Ok(_) => continue,
            Err(_) => {
                open.pop();
                continue;
            }
        };
        if open.len() >= max {
            return true;
        }
        open.push((Reader::new(child.0, 0, "ArrayValue"), child.1));
    }
    false
}
