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

pub(crate) mod attributes;
#[cfg(feature = "cli")]
pub mod json;

pub use attributes::KeySet;

mod reader;
mod span_kind;

pub use span_kind::SpanKind;

use reader::*;
pub(crate) use reader::{array_values, kvlist_values, nests_deeper_than};

use crate::error::DecodeError;
use attributes::AttrValue;

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
    /// The status code as numbered in OTLP (see [`SpanRec::is_error`]);
    /// codes past 255 read as 255.
    pub status: u8,
    /// Index of the span's name in [`Batch::names`]; [`NO_NAME`] when names
    /// are not read (no filter policy asks for them) or the span has none.
    pub name: u32,
    /// Index of the span's resource in [`Batch::resources`].
    pub resource: u32,
    pub values_at: u32,
    pub values_len: u32,
    pub mask: u64,
    /// Range of this span's links in [`Batch::links`].
    pub links_at: u32,
    pub links_len: u32,
}

impl SpanRec {
    /// Status ERROR, the only code that fails a request.
    #[inline]
    pub fn is_error(&self) -> bool {
        self.status == 2
    }
}

/// [`SpanRec::name`] of a span whose name was not kept.
pub const NO_NAME: u32 = u32::MAX;

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
    /// Span names, kept only when [`KeySet::span_name`] asks for them.
    pub names: Vec<&'a [u8]>,
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
        self.names.clear();
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

    /// The span's name, when names are kept; empty otherwise.
    pub fn span_name(&self, span: &SpanRec) -> &'a [u8] {
        self.names.get(span.name as usize).copied().unwrap_or_default()
    }

    pub fn span_links(&self, span: &SpanRec) -> &[LinkRec] {
        &self.links[span.links_at as usize..(span.links_at + span.links_len) as usize]
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
        // A span as every encoder writes it: tag 0x12, then a length of
        // two bytes (128 bytes to 16 KiB), read in one step.
        if let [0x12, lo @ 0x80..=0xff, hi @ 0..=0x7f, ..] = r.buf[r.pos..] {
            let len = (lo & 0x7f) as usize | (hi as usize) << 7;
            let start = r.pos + 3;
            if len <= r.buf.len() - start {
                r.pos = start + len;
                read_span(&r.buf[start..r.pos], r.base + start, resource, named, keys, out)?;
                continue;
            }
        }
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
        status: 0,
        name: NO_NAME,
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
    let mut name: Option<&'a [u8]> = None;
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
            5 if keys.span_name => {
                r.expect(wt, WT_LEN)?;
                name = Some(r.bytes()?.0);
            }
            15 => {
                r.expect(wt, WT_LEN)?;
                let (st, at) = r.bytes()?;
                rec.status = read_status_code(st, at)?.min(255) as u8;
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
    if let Some(n) = name.filter(|n| !n.is_empty()) {
        rec.name = out.names.len() as u32;
        out.names.push(n);
    }
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

fn read_status_code(buf: &[u8], base: usize) -> Result<u64, DecodeError> {
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
    Ok(code)
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

#[cfg(test)]
mod tests;
