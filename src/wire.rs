//! A borrowed reader for OTLP trace batches.
//!
//! Pairing needs a dozen fields per span out of a message that usually holds
//! far more, so this walks the protobuf wire format directly and skips
//! everything else by length: no allocation per span, no owned strings. A full
//! prost decode costs microseconds per span, mostly in allocation; this walk
//! costs a small fraction of that.
//!
//! The whole batch is read before anything is applied, so a malformed batch
//! is rejected whole. What is read is checked: tags, wire types, lengths, and
//! the sizes of trace and span IDs. Fields that are skipped are checked only
//! for their framing.
//!
//! Field numbers are those of `opentelemetry/proto/trace/v1/trace.proto`,
//! `common/v1/common.proto` and `resource/v1/resource.proto`.

use crate::attributes::{AttrValue, KeySet};
use crate::error::DecodeError;

/// One span, as far as pairing needs it. The values of the attributes the
/// engine reads live in [`Batch::values`]: `values_len` pairs of (key index,
/// value) from `values_at`, and `mask` has bit `k` set when key `k` (< 64) is
/// among them, so most look-ups of an absent key cost one test.
#[derive(Debug, Clone, Copy)]
pub struct SpanRec {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// All zero when the span has no parent.
    pub parent_span_id: [u8; 8],
    pub has_parent: bool,
    pub kind: SpanKind,
    pub start_ns: u64,
    pub end_ns: u64,
    pub error: bool,
    /// Index of the span's resource in [`Batch::resources`].
    pub resource: u32,
    pub values_at: u32,
    pub values_len: u32,
    pub mask: u64,
    /// Range of this span's links in [`Batch::links`].
    pub links_at: u32,
    pub links_len: u32,
}

/// Span kinds as numbered in OTLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SpanKind {
    Unspecified = 0,
    Internal = 1,
    Server = 2,
    Client = 3,
    Producer = 4,
    Consumer = 5,
}

impl SpanKind {
    fn from_wire(v: u64) -> SpanKind {
        match v {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }

    /// Whether spans of this kind take part in pairing (INTERNAL and
    /// UNSPECIFIED do not).
    #[inline]
    pub fn pairs(self) -> bool {
        !matches!(self, SpanKind::Internal | SpanKind::Unspecified)
    }

    /// The name the peers use in the `unmatched_span_kind` label.
    pub fn otel_name(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "SPAN_KIND_UNSPECIFIED",
            SpanKind::Internal => "SPAN_KIND_INTERNAL",
            SpanKind::Server => "SPAN_KIND_SERVER",
            SpanKind::Client => "SPAN_KIND_CLIENT",
            SpanKind::Producer => "SPAN_KIND_PRODUCER",
            SpanKind::Consumer => "SPAN_KIND_CONSUMER",
        }
    }
}

/// One resource: its `service.name` (None when absent) and its attribute
/// values for the configured keys (laid out as a span's are).
#[derive(Debug, Clone, Copy)]
pub struct ResourceRec<'a> {
    pub service: Option<AttrValue<'a>>,
    pub values_at: u32,
    pub values_len: u32,
    pub mask: u64,
}

/// A span link that names another span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkRec {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

/// Everything pairing needs from one batch. Reused across batches to keep
/// its buffers.
#[derive(Debug, Default)]
pub struct Batch<'a> {
    pub resources: Vec<ResourceRec<'a>>,
    pub spans: Vec<SpanRec>,
    pub values: Vec<(u16, AttrValue<'a>)>,
    pub links: Vec<LinkRec>,
    /// Spans of kind INTERNAL or UNSPECIFIED, read and skipped.
    pub ignored_spans: u64,
    /// Spans under a resource without `service.name`, skipped as the peers do.
    pub unnamed_spans: u64,
}

impl<'a> Batch<'a> {
    pub fn clear(&mut self) {
        self.resources.clear();
        self.spans.clear();
        self.values.clear();
        self.links.clear();
        self.ignored_spans = 0;
        self.unnamed_spans = 0;
    }

    /// The value of configured key `k` on `span` (span attributes only).
    #[inline]
    pub fn span_value(&self, span: &SpanRec, k: usize) -> Option<AttrValue<'a>> {
        self.find(span.values_at, span.values_len, span.mask, k)
    }

    /// The value of configured key `k` on a resource.
    #[inline]
    pub fn resource_value(&self, res: u32, k: usize) -> Option<AttrValue<'a>> {
        let r = &self.resources[res as usize];
        self.find(r.values_at, r.values_len, r.mask, k)
    }

    #[inline]
    fn find(&self, at: u32, len: u32, mask: u64, k: usize) -> Option<AttrValue<'a>> {
        if k < 64 && mask & (1 << k) == 0 {
            return None;
        }
        self.values[at as usize..(at + len) as usize].iter().find(|(key, _)| *key as usize == k).map(|(_, v)| *v)
    }

    /// Whether `span` carries configured key `k`; the only question asked of
    /// keys in [`KeySet::presence_only`], whose values are not kept.
    #[inline]
    pub fn span_has(&self, span: &SpanRec, k: usize) -> bool {
        if k < 64 { span.mask & (1 << k) != 0 } else { self.span_value(span, k).is_some() }
    }

    pub fn span_links(&self, span: &SpanRec) -> &[LinkRec] {
        &self.links[span.links_at as usize..(span.links_at + span.links_len) as usize]
    }
}

const WT_VARINT: u8 = 0;
const WT_I64: u8 = 1;
const WT_LEN: u8 = 2;
const WT_I32: u8 = 5;

/// A cursor over one message's bytes. `base` is the offset of `buf` in the
/// whole batch, for error messages.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
    path: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], base: usize, path: &'static str) -> Self {
        Reader { buf, pos: 0, base, path }
    }

    #[inline(always)]
    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    #[cold]
    fn err(&self, reason: &'static str) -> DecodeError {
        DecodeError { offset: self.base + self.pos, path: self.path, reason }
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<u64, DecodeError> {
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
    fn tag(&mut self) -> Result<(u32, u8), DecodeError> {
        let t = self.varint()?;
        let field = t >> 3;
        if field == 0 || field > u32::MAX as u64 >> 3 {
            return Err(self.err("invalid field number"));
        }
        Ok((field as u32, (t & 7) as u8))
    }

    /// Reads a length-delimited field; returns (bytes, offset of the bytes in the batch).
    #[inline(always)]
    fn bytes(&mut self) -> Result<(&'a [u8], usize), DecodeError> {
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
    fn fixed64(&mut self) -> Result<u64, DecodeError> {
        let Some(b) = self.buf.get(self.pos..self.pos + 8) else {
            return Err(self.err("truncated fixed64"));
        };
        self.pos += 8;
        Ok(u64::from_le_bytes(b.try_into().unwrap()))
    }

    /// Moves past `n` bytes that must be there.
    #[inline(always)]
    fn advance(&mut self, n: usize, what: &'static str) -> Result<(), DecodeError> {
        if self.buf.len() - self.pos < n {
            return Err(self.err(what));
        }
        self.pos += n;
        Ok(())
    }

    /// Skips a field of the given wire type.
    #[inline(always)]
    fn skip(&mut self, wire_type: u8) -> Result<(), DecodeError> {
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
    fn expect(&self, got: u8, want: u8) -> Result<(), DecodeError> {
        if got != want { Err(self.err("unexpected wire type for field")) } else { Ok(()) }
    }
}

/// Reads a whole `ExportTraceServiceRequest`/`TracesData` into `out`.
/// `keys` decides which attributes are kept.
pub fn read_batch<'a>(data: &'a [u8], keys: &KeySet, out: &mut Batch<'a>) -> Result<(), DecodeError> {
    out.clear();
    // Size the buffers once for a typical batch (spans of a few hundred
    // bytes, a few wanted values each) rather than growing them from empty.
    let spans = data.len() / 256;
    out.spans.reserve(spans);
    out.values.reserve(spans * 4);
    let mut r = Reader::new(data, 0, "ExportTraceServiceRequest");
    while !r.done() {
        let (field, wt) = r.tag()?;
        if field == 1 {
            r.expect(wt, WT_LEN)?;
            let (rs, at) = r.bytes()?;
            read_resource_spans(rs, at, keys, out)?;
        } else {
            r.skip(wt)?;
        }
    }
    Ok(())
}

fn read_resource_spans<'a>(buf: &'a [u8], base: usize, keys: &KeySet, out: &mut Batch<'a>) -> Result<(), DecodeError> {
    // The resource may come after its spans on the wire; find it first.
    let res_index = out.resources.len() as u32;
    let values_at = out.values.len() as u32;
    let mut mask = 0u64;
    let mut service = None;
    let mut r = Reader::new(buf, base, "ResourceSpans");
    while !r.done() {
        let (field, wt) = r.tag()?;
        if field == 1 {
            r.expect(wt, WT_LEN)?;
            let (res, at) = r.bytes()?;
            service = read_resource(res, at, keys, &mut out.values, &mut mask)?;
        } else {
            r.skip(wt)?;
        }
    }
    let values_len = out.values.len() as u32 - values_at;
    out.resources.push(ResourceRec { service, values_at, values_len, mask });
    let mut r = Reader::new(buf, base, "ResourceSpans");
    while !r.done() {
        let (field, wt) = r.tag()?;
        if field == 2 {
            r.expect(wt, WT_LEN)?;
            let (ss, at) = r.bytes()?;
            read_scope_spans(ss, at, res_index, service.is_some(), keys, out)?;
        } else {
            r.skip(wt)?;
        }
    }
    Ok(())
}

/// Reads `Resource`; returns `service.name` and fills the resource's value slots.
fn read_resource<'a>(
    buf: &'a [u8],
    base: usize,
    keys: &KeySet,
    values: &mut Vec<(u16, AttrValue<'a>)>,
    mask: &mut u64,
) -> Result<Option<AttrValue<'a>>, DecodeError> {
    let mut service = None;
    let mut r = Reader::new(buf, base, "Resource");
    while !r.done() {
        let (field, wt) = r.tag()?;
        if field == 1 {
            r.expect(wt, WT_LEN)?;
            let (kv, at) = r.bytes()?;
            if let Some((k, value)) = read_wanted_key_value(kv, at, keys)? {
                if k == keys.service_name {
                    service = Some(value);
                }
                push_value(values, mask, k, value);
            }
        } else {
            r.skip(wt)?;
        }
    }
    Ok(service)
}

fn read_scope_spans<'a>(
    buf: &'a [u8],
    base: usize,
    resource: u32,
    named: bool,
    keys: &KeySet,
    out: &mut Batch<'a>,
) -> Result<(), DecodeError> {
    let mut r = Reader::new(buf, base, "ScopeSpans");
    while !r.done() {
        let (field, wt) = r.tag()?;
        if field == 2 {
            r.expect(wt, WT_LEN)?;
            let (span, at) = r.bytes()?;
            read_span(span, at, resource, named, keys, out)?;
        } else {
            r.skip(wt)?;
        }
    }
    Ok(())
}

fn id<const N: usize>(r: &Reader, b: &[u8], what: &'static str) -> Result<[u8; N], DecodeError> {
    b.try_into().map_err(|_| r.err(what))
}

fn read_span<'a>(
    buf: &'a [u8],
    base: usize,
    resource: u32,
    named: bool,
    keys: &KeySet,
    out: &mut Batch<'a>,
) -> Result<(), DecodeError> {
    let mut rec = SpanRec {
        trace_id: [0; 16],
        span_id: [0; 8],
        parent_span_id: [0; 8],
        has_parent: false,
        kind: SpanKind::Unspecified,
        start_ns: 0,
        end_ns: 0,
        error: false,
        resource,
        values_at: out.values.len() as u32,
        values_len: 0,
        mask: 0,
        links_at: out.links.len() as u32,
        links_len: 0,
    };
    let mut have_trace = false;
    let mut have_span = false;
    let mut have_kind = false;
    // Attributes or links seen before the kind (not the canonical field
    // order): they are read in a second pass once the kind is known.
    let mut deferred = false;
    let mut r = Reader::new(buf, base, "Span");
    while !r.done() {
        // The fields read from every span, as every encoder writes them (one
        // tag byte, the expected wire type, the usual sizes), are taken here
        // in one step each; anything else goes through the general match.
        let rest = &r.buf[r.pos..];
        match *rest {
            // Attributes, most of a span's fields, go straight to the key
            // look-up once the kind is known.
            [0x4a, ..] if have_kind => {
                r.pos += 1;
                let (b, at) = r.bytes()?;
                if named && rec.kind.pairs() {
                    read_span_extra(9, b, at, keys, &mut rec, out)?;
                }
                continue;
            }
            [0x0a, 16, ref id @ ..] if id.len() >= 16 => {
                rec.trace_id = id[..16].try_into().unwrap();
                have_trace = true;
                r.pos += 18;
                continue;
            }
            [0x12, 8, ref id @ ..] if id.len() >= 8 => {
                rec.span_id = id[..8].try_into().unwrap();
                have_span = true;
                r.pos += 10;
                continue;
            }
            [0x22, 8, ref id @ ..] if id.len() >= 8 => {
                rec.parent_span_id = id[..8].try_into().unwrap();
                rec.has_parent = true;
                r.pos += 10;
                continue;
            }
            [0x30, kind, ..] if kind < 0x80 => {
                rec.kind = SpanKind::from_wire(kind as u64);
                have_kind = true;
                r.pos += 2;
                continue;
            }
            [t @ (0x39 | 0x41), ref v @ ..] if v.len() >= 8 => {
                let ns = u64::from_le_bytes(v[..8].try_into().unwrap());
                if t == 0x39 {
                    rec.start_ns = ns
                } else {
                    rec.end_ns = ns
                }
                r.pos += 9;
                continue;
            }
            _ => {}
        }
        let (field, wt) = r.tag()?;
        match field {
            1 => {
                r.expect(wt, WT_LEN)?;
                let (b, _) = r.bytes()?;
                rec.trace_id = id(&r, b, "trace_id must be 16 bytes")?;
                have_trace = true;
            }
            2 => {
                r.expect(wt, WT_LEN)?;
                let (b, _) = r.bytes()?;
                rec.span_id = id(&r, b, "span_id must be 8 bytes")?;
                have_span = true;
            }
            4 => {
                r.expect(wt, WT_LEN)?;
                let (b, _) = r.bytes()?;
                if !b.is_empty() {
                    rec.parent_span_id = id(&r, b, "parent_span_id must be empty or 8 bytes")?;
                    rec.has_parent = true;
                }
            }
            6 => {
                r.expect(wt, WT_VARINT)?;
                rec.kind = SpanKind::from_wire(r.varint()?);
                have_kind = true;
            }
            7 => {
                r.expect(wt, WT_I64)?;
                rec.start_ns = r.fixed64()?;
            }
            8 => {
                r.expect(wt, WT_I64)?;
                rec.end_ns = r.fixed64()?;
            }
            9 | 13 => {
                r.expect(wt, WT_LEN)?;
                let (b, at) = r.bytes()?;
                if !have_kind {
                    deferred = true;
                } else if named && rec.kind.pairs() {
                    read_span_extra(field, b, at, keys, &mut rec, out)?;
                }
            }
            15 => {
                r.expect(wt, WT_LEN)?;
                let (st, at) = r.bytes()?;
                rec.error = read_status_is_error(st, at)?;
            }
            _ => r.skip(wt)?,
        }
    }
    if !have_trace {
        return Err(r.err("span has no trace_id"));
    }
    if !have_span {
        return Err(r.err("span has no span_id"));
    }
    if !rec.kind.pairs() {
        out.ignored_spans += 1;
        return Ok(());
    }
    if !named {
        out.unnamed_spans += 1;
        out.values.truncate(rec.values_at as usize);
        out.links.truncate(rec.links_at as usize);
        return Ok(());
    }
    if deferred {
        let mut r = Reader::new(buf, base, "Span");
        while !r.done() {
            let (field, wt) = r.tag()?;
            if field == 9 || field == 13 {
                let (b, at) = r.bytes()?;
                read_span_extra(field, b, at, keys, &mut rec, out)?;
            } else {
                r.skip(wt)?;
            }
        }
    }
    rec.values_len = out.values.len() as u32 - rec.values_at;
    out.spans.push(rec);
    Ok(())
}

/// Records a value; the first one of a repeated key is the one looked up.
#[inline]
fn push_value<'a>(values: &mut Vec<(u16, AttrValue<'a>)>, mask: &mut u64, k: usize, value: AttrValue<'a>) {
    if k < 64 {
        *mask |= 1 << k;
    }
    values.push((k as u16, value));
}

/// Reads one attribute (field 9) or link (field 13) of a span that pairs.
/// Inlined: it runs for every attribute, and most are skipped after a key
/// look-up, so a call costs as much as the work.
#[inline(always)]
fn read_span_extra<'a>(
    field: u32,
    b: &'a [u8],
    at: usize,
    keys: &KeySet,
    rec: &mut SpanRec,
    out: &mut Batch<'a>,
) -> Result<(), DecodeError> {
    if field == 9 {
        if let Some((k, value)) = read_wanted_key_value(b, at, keys)? {
            if keys.presence_only & (1 << (k & 63)) != 0 && k < 64 {
                rec.mask |= 1 << k;
            } else {
                push_value(&mut out.values, &mut rec.mask, k, value);
            }
        }
    } else if rec.kind == SpanKind::Consumer {
        if let Some(link) = read_link(b, at)? {
            out.links.push(link);
            rec.links_len += 1;
        }
    }
    Ok(())
}

/// Reads a `KeyValue` only as far as needed: when its key is not one the
/// engine reads, the value is not decoded at all.
#[inline(always)]
fn read_wanted_key_value<'a>(
    buf: &'a [u8],
    base: usize,
    keys: &KeySet,
) -> Result<Option<(usize, AttrValue<'a>)>, DecodeError> {
    // The key comes first in every encoder's output, almost always shorter
    // than 128 bytes; anything else takes the general path.
    if let [0x0a, n, rest @ ..] = buf {
        if *n < 0x80 && (*n as usize) <= rest.len() {
            let (key, value) = rest.split_at(*n as usize);
            let Some(k) = keys.find(key) else { return Ok(None) };
            // Most wanted values are short strings, the rest of the message
            // being exactly `value: AnyValue { string_value }`.
            if let [0x12, n, 0x0a, m, s @ ..] = value {
                if *n < 0x80 && *m < 0x80 && *n as usize == *m as usize + 2 && s.len() == *m as usize {
                    return Ok(Some((k, AttrValue::Str(s))));
                }
            }
        }
    }
    if buf.first() == Some(&0x0a) {
        let mut r = Reader::new(buf, base, "KeyValue");
        r.tag()?;
        let (key, _) = r.bytes()?;
        let Some(k) = keys.find(key) else { return Ok(None) };
        let mut value = AttrValue::Empty;
        while !r.done() {
            let (field, wt) = r.tag()?;
            if field == 2 {
                r.expect(wt, WT_LEN)?;
                let (v, at) = r.bytes()?;
                value = read_any_value(v, at)?;
            } else {
                r.skip(wt)?;
            }
        }
        return Ok(Some((k, value)));
    }
    let (key, value) = read_key_value(buf, base)?;
    Ok(keys.find(key).map(|k| (k, value)))
}

fn read_status_is_error(buf: &[u8], base: usize) -> Result<bool, DecodeError> {
    let mut r = Reader::new(buf, base, "Status");
    let mut code = 0;
    while !r.done() {
        let (field, wt) = r.tag()?;
        if field == 3 {
            r.expect(wt, WT_VARINT)?;
            code = r.varint()?;
        } else {
            r.skip(wt)?;
        }
    }
    Ok(code == 2)
}

/// A link with both IDs set; links with an empty ID are ignored, as the peers do.
fn read_link(buf: &[u8], base: usize) -> Result<Option<LinkRec>, DecodeError> {
    let mut r = Reader::new(buf, base, "Span.Link");
    let mut trace: Option<[u8; 16]> = None;
    let mut span: Option<[u8; 8]> = None;
    while !r.done() {
        let (field, wt) = r.tag()?;
        match field {
            1 => {
                r.expect(wt, WT_LEN)?;
                let (b, _) = r.bytes()?;
                if !b.is_empty() {
                    trace = Some(id(&r, b, "link trace_id must be 16 bytes")?);
                }
            }
            2 => {
                r.expect(wt, WT_LEN)?;
                let (b, _) = r.bytes()?;
                if !b.is_empty() {
                    span = Some(id(&r, b, "link span_id must be 8 bytes")?);
                }
            }
            _ => r.skip(wt)?,
        }
    }
    Ok(match (trace, span) {
        (Some(t), Some(s)) if t != [0; 16] && s != [0; 8] => Some(LinkRec { trace_id: t, span_id: s }),
        _ => None,
    })
}

/// Reads a `KeyValue`: the key bytes and its value.
fn read_key_value(buf: &[u8], base: usize) -> Result<(&[u8], AttrValue<'_>), DecodeError> {
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

fn read_any_value(buf: &[u8], base: usize) -> Result<AttrValue<'_>, DecodeError> {
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
fn each_field_1<'a, T>(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Compat, Config};

    /// Appends field `field` as a length-delimited value whose length is
    /// written as a two-byte varint: valid protobuf, but not what encoders
    /// write, so it takes the general path.
    fn long_form(out: &mut Vec<u8>, field: u8, body: &[u8]) {
        assert!(body.len() < 128);
        out.extend([field << 3 | 2, 0x80 | body.len() as u8, 0x00]);
        out.extend(body);
    }

    fn attribute(key: &str, value: &str) -> Vec<u8> {
        let mut kv = vec![0x0a, key.len() as u8];
        kv.extend(key.as_bytes());
        kv.extend([0x12, value.len() as u8 + 2, 0x0a, value.len() as u8]);
        kv.extend(value.as_bytes());
        kv
    }

    /// A span's fields in reverse order, each in a form the fast paths do not take.
    fn unusual_span(trace: &[u8; 16], span: &[u8; 8], parent: &[u8; 8]) -> Vec<u8> {
        let mut s = Vec::new();
        long_form(&mut s, 9, &attribute("peer.service", "ledger"));
        s.extend([0x41]);
        s.extend(2_000u64.to_le_bytes());
        s.extend([0x39]);
        s.extend(1_000u64.to_le_bytes());
        s.extend([0x30, 0x83, 0x00]); // kind CLIENT as a two-byte varint
        long_form(&mut s, 4, parent);
        long_form(&mut s, 2, span);
        long_form(&mut s, 1, trace);
        s
    }

    fn usual_span(trace: &[u8; 16], span: &[u8; 8], parent: &[u8; 8]) -> Vec<u8> {
        let mut s = vec![0x0a, 16];
        s.extend(trace);
        s.extend([0x12, 8]);
        s.extend(span);
        s.extend([0x22, 8]);
        s.extend(parent);
        s.extend([0x30, 3, 0x39]);
        s.extend(1_000u64.to_le_bytes());
        s.extend([0x41]);
        s.extend(2_000u64.to_le_bytes());
        let a = attribute("peer.service", "ledger");
        s.extend([0x4a, a.len() as u8]);
        s.extend(a);
        s
    }

    /// Wraps spans in ResourceSpans { Resource { service.name }, ScopeSpans }.
    fn batch(spans: &[Vec<u8>]) -> Vec<u8> {
        let name = attribute("service.name", "checkout");
        let mut resource = vec![0x0a, name.len() as u8];
        resource.extend(name);
        let mut scope = Vec::new();
        for s in spans {
            scope.extend([0x12, s.len() as u8]);
            scope.extend(s);
        }
        let mut rs = vec![0x0a, resource.len() as u8];
        rs.extend(resource);
        rs.extend([0x12, scope.len() as u8]);
        rs.extend(scope);
        let mut out = vec![0x0a, rs.len() as u8];
        out.extend(rs);
        out
    }

    #[test]
    fn canonical_and_unusual_encodings_read_the_same() {
        let keys = KeySet::new(&Config::preset(Compat::Tempo));
        let (trace, span, parent) = ([7u8; 16], [1u8; 8], [2u8; 8]);
        for encoded in [batch(&[usual_span(&trace, &span, &parent)]), batch(&[unusual_span(&trace, &span, &parent)])] {
            let mut b = Batch::default();
            read_batch(&encoded, &keys, &mut b).unwrap();
            assert_eq!(b.spans.len(), 1);
            let s = b.spans[0];
            assert_eq!((s.trace_id, s.span_id, s.parent_span_id, s.has_parent), (trace, span, parent, true));
            assert_eq!((s.kind, s.start_ns, s.end_ns), (SpanKind::Client, 1_000, 2_000));
            assert_eq!(b.span_value(&s, keys.peer_service), Some(AttrValue::Str(b"ledger")));
            assert_eq!(b.resources[0].service, Some(AttrValue::Str(b"checkout")));
        }
    }

    #[test]
    fn ids_of_the_usual_tags_but_wrong_sizes_are_errors() {
        let keys = KeySet::new(&Config::preset(Compat::Tempo));
        let mut short_trace = usual_span(&[7; 16], &[1; 8], &[2; 8]);
        short_trace[1] = 15; // trace_id of 15 bytes: the 16th becomes a tag
        let truncated = usual_span(&[7; 16], &[1; 8], &[2; 8])[..12].to_vec();
        for span in [short_trace, truncated] {
            let encoded = batch(&[span]);
            assert!(read_batch(&encoded, &keys, &mut Batch::default()).is_err());
        }
    }
}
