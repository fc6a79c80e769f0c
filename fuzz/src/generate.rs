//! A structured generator of OTLP trace batches for the engine.
//!
//! `arbitrary` turns the fuzzer's bytes into a [`Scenario`]: an engine
//! configuration and a sequence of steps, most of them batches described at
//! the level of resources, spans, attributes and client/server pairs. Each
//! batch is then written by hand ([`crate::pb`]) as protobuf, with:
//! - attribute values nested up to 100,000 levels (`ArrayValue`/`KeyValueList`),
//! - huge repeated fields (many spans, many attributes, long strings),
//! - invalid UTF-8 in service names, keys and values,
//! - client/server (and producer/consumer, span-link) pairs that match,
//! - unusual but valid encodings (padded varints, unknown fields of every wire
//!   type, reversed field order, repeated fields, resource after its spans),
//! - and, when asked, damage (truncation, flipped bytes, bad IDs, wrong wire
//!   types), after which the batch may be rejected.
//!
//! The writer knows whether what it wrote is valid, and how many spans it
//! holds, so the target can check the engine's answer, not only that it
//! did not crash.

use crate::pb::{self, Enc, Rev};
use arbitrary::{Arbitrary, Result, Unstructured};

/// Upper bound on one batch's size, so one input cannot take minutes.
pub const MAX_BATCH_BYTES: usize = 24 << 20;
/// Deepest nesting the generator writes.
pub const MAX_DEPTH: u32 = 100_000;

pub const T0: u64 = 1_700_000_000_000_000_000;

thread_local! {
    /// Bytes that long strings and deep nests may still add to the batch
    /// being written: an input of a few kilobytes can ask for thousands of
    /// megabyte-long values, and what it gets is capped here.
    static BUDGET: std::cell::Cell<usize> = const { std::cell::Cell::new(MAX_BATCH_BYTES) };
}

/// Takes up to `want` bytes from the budget; returns what was granted.
fn spend(want: usize) -> usize {
    BUDGET.with(|b| {
        let got = want.min(b.get());
        b.set(b.get() - got);
        got
    })
}

// ---------------------------------------------------------------- names

/// Service names and attribute string values.
#[derive(Debug, Clone)]
pub enum Name {
    Pool(u8),
    /// Arbitrary bytes, often invalid UTF-8.
    Raw(Vec<u8>),
    /// A pool name with an invalid UTF-8 sequence spliced in.
    Invalid(u8, u8),
    /// `len` copies of a byte (long strings).
    Long(u8, u32),
}

const NAMES: &[&str] = &[
    "frontend",
    "checkout",
    "payments",
    "postgres",
    "kafka",
    "user",
    "unknown",
    "",
    " ",
    "a\"b\\c\nd",
    "}{\"le\"=\"+Inf\"",
    "<script>alert(1)</script>",
    "x --> y; click y call z()",
    "subgraph end",
    "digraph { a -> b }",
    "ümlaut-Dienst",
    "\u{0}nul",
    "\u{202e}rtl",
    "emoji🙂",
    "%s%n",
];

const INVALID_UTF8: &[&[u8]] = &[
    b"\xff",
    b"\xc3",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xe2\x82",
    b"\x80\x80\x80",
    b"\xfe\xfe\xff\xff",
];

impl<'a> Arbitrary<'a> for Name {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u.int_in_range(0..=15u8)? {
            0..=9 => Name::Pool(u.arbitrary()?),
            10 | 11 => Name::Raw(u.arbitrary()?),
            12 | 13 => Name::Invalid(u.arbitrary()?, u.arbitrary()?),
            _ => Name::Long(u.arbitrary()?, u.int_in_range(0..=(1u32 << 20))?),
        })
    }
}

impl Name {
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Name::Pool(i) => NAMES[*i as usize % NAMES.len()].as_bytes().to_vec(),
            Name::Raw(b) => b.clone(),
            Name::Invalid(i, j) => {
                let base = NAMES[*i as usize % NAMES.len()].as_bytes();
                let bad = INVALID_UTF8[*j as usize % INVALID_UTF8.len()];
                let at = (*j as usize / INVALID_UTF8.len()) % (base.len() + 1);
                let mut v = base[..at].to_vec();
                v.extend_from_slice(bad);
                v.extend_from_slice(&base[at..]);
                v
            }
            Name::Long(b, n) => vec![*b; spend(*n as usize)],
        }
    }
}

// ---------------------------------------------------------------- values

/// An attribute value (`AnyValue`).
#[derive(Debug, Clone)]
pub enum Value {
    Str(Name),
    Int(i64),
    Double(f64),
    Bool(bool),
    Bytes(Vec<u8>),
    /// `AnyValue` with no value set.
    Empty,
    /// Arrays and key-value lists, one inside the other.
    Nested(Nest),
    /// Several value fields in one `AnyValue` (the last one wins).
    Several(Box<Value>, Box<Value>),
    /// A string value whose field comes with an unknown field around it.
    WithUnknown(Name, u8),
}

/// `depth` levels of containers: level `i` is a `KeyValueList` when bit
/// `i % 64` of `pattern` is set, else an `ArrayValue`. Every `stride` levels
/// the container holds `siblings` more scalar elements before the nested one.
#[derive(Debug, Clone, Arbitrary)]
pub struct Nest {
    pub depth: Depth,
    pub pattern: u64,
    pub stride: u8,
    pub siblings: u8,
    pub leaf: Leaf,
    /// Padded varints in the framing of every level.
    pub pad: u8,
    /// A wrong element inside the deepest container (which the reader skips).
    pub broken_inside: bool,
}

#[derive(Debug, Clone)]
pub struct Depth(pub u32);

impl<'a> Arbitrary<'a> for Depth {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Depth(match u.int_in_range(0..=9u8)? {
            0..=4 => u.int_in_range(0..=64)?,
            5..=7 => u.int_in_range(0..=5_000)?,
            _ => u.int_in_range(0..=MAX_DEPTH)?,
        }))
    }
}

#[derive(Debug, Clone, Arbitrary)]
pub enum Leaf {
    Str(Name),
    Int(i64),
    Double(f64),
    Empty,
    EmptyArray,
    EmptyKvList,
}

impl<'a> Arbitrary<'a> for Value {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u.int_in_range(0..=19u8)? {
            0..=7 => Value::Str(u.arbitrary()?),
            8 => Value::Int(u.arbitrary()?),
            9 => Value::Double(u.arbitrary()?),
            10 => Value::Bool(u.arbitrary()?),
            11 => Value::Bytes(u.arbitrary()?),
            12 => Value::Empty,
            13..=16 => Value::Nested(u.arbitrary()?),
            17 => Value::Several(Box::new(Value::Str(u.arbitrary()?)), Box::new(Value::Int(u.arbitrary()?))),
            18 => Value::Several(Box::new(Value::Nested(u.arbitrary()?)), Box::new(Value::Str(u.arbitrary()?))),
            _ => Value::WithUnknown(u.arbitrary()?, u.arbitrary()?),
        })
    }
}

fn leaf_any_value(l: &Leaf) -> Vec<u8> {
    let mut v = Vec::new();
    let e = Enc::CANONICAL;
    match l {
        Leaf::Str(n) => pb::len_field(&mut v, 1, &n.bytes(), e),
        Leaf::Int(i) => pb::varint_field(&mut v, 3, *i as u64, e),
        Leaf::Double(d) => pb::fixed64_field(&mut v, 4, d.to_bits(), e),
        Leaf::Empty => {}
        Leaf::EmptyArray => pb::len_field(&mut v, 5, &[], e),
        Leaf::EmptyKvList => pb::len_field(&mut v, 6, &[], e),
    }
    v
}

/// Writes a nest as an `AnyValue` body, inside out, without recursion.
pub fn nest_any_value(n: &Nest) -> Vec<u8> {
    let mut r = Rev::default();
    r.prepend(&leaf_any_value(&n.leaf));
    let stride = n.stride.max(1) as u32;
    let e = Enc { pad: n.pad % 3 };
    // About 8 bytes per level (more with padding and siblings).
    let per_level = 8 + 3 * (n.pad as usize % 3) + 12 * (n.siblings % 4) as usize / stride as usize;
    let depth = (spend(n.depth.0.min(MAX_DEPTH) as usize * per_level) / per_level) as u32;
    for level in (0..depth).rev() {
        let kv = n.pattern >> (level % 64) & 1 == 1;
        let siblings = if level % stride == 0 { n.siblings % 4 } else { 0 };
        if kv {
            // KeyValueList { values: KeyValue { key: "k", value: <child> } }
            r.wrap(2, e);
            r.prepend_len_field(1, b"k", e);
            if n.broken_inside && level + 1 == depth {
                // A KeyValue whose value has the wrong wire type, read last.
                r.prepend(&[0x10, 0x01]);
            }
            r.wrap(1, e);
            for s in 0..siblings {
                let mut kvb = Vec::new();
                pb::len_field(&mut kvb, 1, format!("s{s}").as_bytes(), e);
                let mut av = Vec::new();
                pb::varint_field(&mut av, 3, s as u64, e);
                pb::len_field(&mut kvb, 2, &av, e);
                r.prepend_len_field(1, &kvb, e);
            }
            r.wrap(6, e);
        } else {
            // ArrayValue { values: <child> }
            r.wrap(1, e);
            for s in 0..siblings {
                let mut av = Vec::new();
                pb::len_field(&mut av, 1, format!("e{s}").as_bytes(), e);
                r.prepend_len_field(1, &av, e);
            }
            if n.broken_inside && level + 1 == depth {
                r.prepend(&[0x0a, 0x05, 0x01]);
            }
            r.wrap(5, e);
        }
    }
    r.finish()
}

pub fn any_value(v: &Value, e: Enc) -> Vec<u8> {
    let mut out = Vec::new();
    match v {
        Value::Str(n) => pb::len_field(&mut out, 1, &n.bytes(), e),
        Value::Int(i) => pb::varint_field(&mut out, 3, *i as u64, e),
        Value::Double(d) => pb::fixed64_field(&mut out, 4, d.to_bits(), e),
        Value::Bool(b) => pb::varint_field(&mut out, 2, *b as u64, e),
        Value::Bytes(b) => pb::len_field(&mut out, 7, b, e),
        Value::Empty => {}
        Value::Nested(n) => return nest_any_value(n),
        Value::Several(a, b) => {
            out = any_value(a, e);
            out.extend(any_value(b, e));
        }
        Value::WithUnknown(n, f) => {
            unknown_field(&mut out, *f, e);
            pb::len_field(&mut out, 1, &n.bytes(), e);
            unknown_field(&mut out, f.wrapping_add(1), e);
        }
    }
    out
}

/// An unknown field of one of the four wire types, numbered 8..=2^29-1.
fn unknown_field(out: &mut Vec<u8>, seed: u8, e: Enc) {
    let field = match seed >> 2 {
        0..=15 => 16 + (seed >> 2) as u32,
        16..=31 => 1000 + seed as u32,
        _ => (1 << 29) - 1,
    };
    match seed & 3 {
        0 => pb::varint_field(out, field, seed as u64 * 0x0101_0101_0101, e),
        1 => pb::fixed64_field(out, field, seed as u64, e),
        2 => pb::len_field(out, field, &[seed; 3], e),
        _ => pb::fixed32_field(out, field, seed as u32, e),
    }
}

// ---------------------------------------------------------------- attributes

/// An attribute key: most often one the engine reads (the target passes the
/// engine's `wanted_keys`), so values reach label formatting.
#[derive(Debug, Clone)]
pub enum Key {
    Wanted(u8),
    Other(Name),
}

impl<'a> Arbitrary<'a> for Key {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(if u.ratio(4u8, 5)? { Key::Wanted(u.arbitrary()?) } else { Key::Other(u.arbitrary()?) })
    }
}

#[derive(Debug, Clone, Arbitrary)]
pub struct Attr {
    pub key: Key,
    pub value: Value,
    /// Writes the value before the key, or with padded varints.
    pub odd: u8,
}

fn key_value(a: &Attr, keys: &[String]) -> Vec<u8> {
    let key = match &a.key {
        Key::Wanted(i) if !keys.is_empty() => keys[*i as usize % keys.len()].as_bytes().to_vec(),
        Key::Wanted(_) => b"peer.service".to_vec(),
        Key::Other(n) => n.bytes(),
    };
    let e = Enc { pad: if a.odd & 1 == 1 { a.odd >> 5 } else { 0 } };
    let value = any_value(&a.value, e);
    let mut kv = Vec::with_capacity(key.len() + value.len() + 12);
    match a.odd >> 1 & 3 {
        // value before key
        1 => {
            pb::len_field(&mut kv, 2, &value, e);
            pb::len_field(&mut kv, 1, &key, e);
        }
        // no value at all
        2 if matches!(a.value, Value::Empty) => pb::len_field(&mut kv, 1, &key, e),
        // an unknown field between key and value
        3 => {
            pb::len_field(&mut kv, 1, &key, e);
            unknown_field(&mut kv, a.odd, e);
            pb::len_field(&mut kv, 2, &value, e);
        }
        _ => {
            pb::len_field(&mut kv, 1, &key, e);
            pb::len_field(&mut kv, 2, &value, e);
        }
    }
    kv
}

// ---------------------------------------------------------------- spans

/// Trace IDs, span IDs: small pools so that spans of different batches and
/// resources meet (pairs), plus all-zero IDs.
fn trace_id(i: u8) -> [u8; 16] {
    let mut t = [0u8; 16];
    if i % 17 != 16 {
        t[0] = 0x7a;
        t[15] = i % 17;
        t[7] = i / 17;
    }
    t
}

fn span_id(i: u8) -> [u8; 8] {
    let mut s = [0u8; 8];
    if i != 0 {
        s[0] = 0x5b;
        s[7] = i;
    }
    s
}

#[derive(Debug, Clone, Arbitrary)]
pub enum Time {
    /// Offset in milliseconds from the step's clock.
    Rel(i32),
    Abs(u64),
    Zero,
    Max,
}

impl Time {
    fn at(&self, now: u64) -> u64 {
        match self {
            Time::Rel(ms) => now.wrapping_add_signed(*ms as i64 * 1_000_000),
            Time::Abs(t) => *t,
            Time::Zero => 0,
            Time::Max => u64::MAX,
        }
    }
}

#[derive(Debug, Clone, Arbitrary)]
pub struct Link {
    pub trace: u8,
    pub span: u8,
    pub empty_trace: bool,
}

#[derive(Debug, Clone, Arbitrary)]
pub struct Span {
    pub trace: u8,
    pub span: u8,
    pub parent: Option<u8>,
    pub kind: u8,
    pub start: Time,
    pub end: Time,
    pub error: bool,
    pub name: Option<Name>,
    pub attrs: Vec<Attr>,
    pub links: Vec<Link>,
    /// Encoding choices: bit 0 reversed field order, bit 1 padded varints,
    /// bit 2 unknown fields, bit 3 trace/span ID written twice, bit 4 empty
    /// parent field, bit 5 kind as a long varint, bit 6 status with a message.
    pub enc: u8,
}

fn span_kind(k: u8) -> u64 {
    match k % 16 {
        0..=9 => 2 + (k as u64 % 4), // SERVER, CLIENT, PRODUCER, CONSUMER
        10 => 1,
        11 => 0,
        12 => 6,
        13 => u64::MAX,
        _ => k as u64,
    }
}

/// What a span looks like on the wire, given already-resolved IDs.
struct SpanWire<'s> {
    trace: [u8; 16],
    span: [u8; 8],
    parent: Option<[u8; 8]>,
    kind: u64,
    start: u64,
    end: u64,
    error: bool,
    name: Option<Vec<u8>>,
    attrs: &'s [Attr],
    links: &'s [Link],
    enc: u8,
}

fn write_span(s: &SpanWire<'_>, keys: &[String]) -> Vec<u8> {
    let e = Enc { pad: if s.enc & 2 != 0 { 1 + (s.enc >> 6) } else { 0 } };
    let mut fields: Vec<Vec<u8>> = Vec::with_capacity(12 + s.attrs.len());
    let f = |w: &dyn Fn(&mut Vec<u8>)| {
        let mut b = Vec::new();
        w(&mut b);
        b
    };
    fields.push(f(&|b| pb::len_field(b, 1, &s.trace, e)));
    fields.push(f(&|b| pb::len_field(b, 2, &s.span, e)));
    if s.enc & 8 != 0 {
        // Repeated scalar fields: the last one counts, so write a decoy first.
        fields.insert(0, f(&|b| pb::len_field(b, 2, &[0xdd; 8], e)));
        fields.insert(0, f(&|b| pb::len_field(b, 1, &[0xdd; 16], e)));
    }
    match s.parent {
        Some(p) => fields.push(f(&|b| pb::len_field(b, 4, &p, e))),
        None if s.enc & 16 != 0 => fields.push(f(&|b| pb::len_field(b, 4, &[], e))),
        None => {}
    }
    if let Some(n) = &s.name {
        fields.push(f(&|b| pb::len_field(b, 5, n, e)));
    }
    let kind_enc = if s.enc & 32 != 0 { Enc { pad: 9 } } else { e };
    fields.push(f(&|b| pb::varint_field(b, 6, s.kind, kind_enc)));
    fields.push(f(&|b| pb::fixed64_field(b, 7, s.start, e)));
    fields.push(f(&|b| pb::fixed64_field(b, 8, s.end, e)));
    for a in s.attrs {
        let kv = key_value(a, keys);
        fields.push(f(&|b| pb::len_field(b, 9, &kv, e)));
    }
    for l in s.links {
        let mut lb = Vec::new();
        let t = trace_id(l.trace);
        pb::len_field(&mut lb, 1, if l.empty_trace { &[] } else { &t[..] }, e);
        pb::len_field(&mut lb, 2, &span_id(l.span), e);
        fields.push(f(&|b| pb::len_field(b, 13, &lb, e)));
    }
    if s.error || s.enc & 64 != 0 {
        let mut st = Vec::new();
        if s.enc & 64 != 0 {
            pb::len_field(&mut st, 2, b"boom \xff", e);
        }
        pb::varint_field(&mut st, 3, if s.error { 2 } else { 1 }, e);
        fields.push(f(&|b| pb::len_field(b, 15, &st, e)));
    }
    if s.enc & 4 != 0 {
        for (i, seed) in [3u8, 41, 122, 200].into_iter().enumerate() {
            let at = (s.enc as usize + i * 3) % (fields.len() + 1);
            fields.insert(at, f(&|b| unknown_field(b, seed ^ s.enc, e)));
        }
    }
    if s.enc & 1 != 0 {
        fields.reverse();
    }
    fields.concat()
}

// ---------------------------------------------------------------- batches

/// A resource with its spans.
#[derive(Debug, Clone, Arbitrary)]
pub struct Resource {
    /// None: the resource has no `service.name` (its spans are skipped).
    pub service: Option<Value>,
    pub attrs: Vec<Attr>,
    pub scopes: Vec<Vec<Span>>,
    /// Bit 0: resource after its scope spans; bit 1: resource written twice;
    /// bit 2: unknown fields; bit 3: a schema_url.
    pub enc: u8,
}

/// A client span and the server span whose parent it is, in two resources.
#[derive(Debug, Clone, Arbitrary)]
pub struct Pair {
    pub trace: u8,
    pub client_span: u8,
    pub server_span: u8,
    pub client: Name,
    pub server: Name,
    /// CLIENT/SERVER, PRODUCER/CONSUMER, or a CONSUMER linking to its PRODUCER.
    pub style: u8,
    pub client_attrs: Vec<Attr>,
    pub server_attrs: Vec<Attr>,
    pub latency_ms: u16,
    pub error: bool,
    /// The server's resource comes first.
    pub server_first: bool,
}

/// Many copies of one span shape, with distinct span IDs.
#[derive(Debug, Clone, Arbitrary)]
pub struct Bulk {
    pub spans: u32,
    pub attrs_per_span: u16,
    pub value_len: u32,
    pub service: Name,
    pub kind: u8,
    pub share_trace: bool,
}

#[derive(Debug, Clone, Arbitrary)]
pub enum Item {
    Resource(Resource),
    Pair(Pair),
    Bulk(Bulk),
    /// A client span whose peer attribute (or other wanted key) is nested.
    Deep { service: Name, key: u8, nest: Nest, kind: u8 },
    /// A field of the request other than resource_spans.
    Unknown(u8),
}

#[derive(Debug, Clone, Arbitrary)]
pub enum Damage {
    Truncate(u32),
    Flip(u32, u8),
    Insert(u32, Vec<u8>),
    /// Appends bytes after the last field.
    Trailer(Vec<u8>),
}

#[derive(Debug, Clone, Arbitrary)]
pub struct BatchSpec {
    pub items: Vec<Item>,
    pub damage: Vec<Damage>,
}

/// A written batch, and what the writer knows about it.
pub struct Written {
    pub bytes: Vec<u8>,
    /// Every span has a 16-byte trace ID and an 8-byte span ID, every link
    /// is well formed, and no damage was done: the engine must accept it.
    pub valid: bool,
    /// Spans written, all kinds (what `spans_received` must grow by).
    pub spans: u64,
}

struct Writer<'k> {
    keys: &'k Keys,
    out: Vec<u8>,
    spans: u64,
    valid: bool,
    now: u64,
}

/// The attribute keys the engine reads, from `Engine::wanted_keys`.
#[derive(Debug, Default, Clone)]
pub struct Keys {
    pub resource: Vec<String>,
    pub span: Vec<String>,
}

impl Keys {
    pub fn from_wanted(v: &serde_json::Value) -> Keys {
        let list = |k: &str| {
            v.get(k)
                .and_then(|l| l.as_array())
                .map(|l| l.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
                .unwrap_or_default()
        };
        Keys { resource: list("resource"), span: list("span") }
    }
}

impl Writer<'_> {
    fn room(&self) -> bool {
        self.out.len() < MAX_BATCH_BYTES
    }

    fn resource_spans(&mut self, resource: Vec<u8>, scopes: Vec<Vec<u8>>, enc: u8) {
        let e = Enc { pad: enc >> 5 };
        let mut rs = Vec::new();
        let mut res = Vec::new();
        pb::len_field(&mut res, 1, &resource, e);
        if enc & 2 != 0 {
            // The resource twice: both are read; the last service.name counts.
            pb::len_field(&mut res, 1, &resource, e);
        }
        let mut sc = Vec::new();
        for s in &scopes {
            pb::len_field(&mut sc, 2, s, e);
        }
        if enc & 1 != 0 {
            rs.extend(&sc);
            rs.extend(&res);
        } else {
            rs.extend(&res);
            rs.extend(&sc);
        }
        if enc & 4 != 0 {
            unknown_field(&mut rs, enc, e);
        }
        if enc & 8 != 0 {
            pb::len_field(&mut rs, 3, b"https://opentelemetry.io/schemas/1.26.0", e);
        }
        pb::len_field(&mut self.out, 1, &rs, e);
    }

    fn resource_body(&self, service: Option<&Value>, attrs: &[Attr]) -> Vec<u8> {
        let mut res = Vec::new();
        if let Some(v) = service {
            let mut kv = Vec::new();
            pb::len_field(&mut kv, 1, b"service.name", Enc::CANONICAL);
            pb::len_field(&mut kv, 2, &any_value(v, Enc::CANONICAL), Enc::CANONICAL);
            pb::len_field(&mut res, 1, &kv, Enc::CANONICAL);
        }
        for a in attrs {
            pb::len_field(&mut res, 1, &key_value(a, &self.keys.resource), Enc::CANONICAL);
        }
        res
    }

    fn scope(&self, spans: &[Vec<u8>], scope_name: Option<&[u8]>) -> Vec<u8> {
        let mut sc = Vec::new();
        if let Some(n) = scope_name {
            let mut is = Vec::new();
            pb::len_field(&mut is, 1, n, Enc::CANONICAL);
            pb::len_field(&mut sc, 1, &is, Enc::CANONICAL);
        }
        for s in spans {
            pb::len_field(&mut sc, 2, s, Enc::CANONICAL);
        }
        sc
    }

    fn span(&mut self, s: &Span) -> Vec<u8> {
        self.spans += 1;
        let w = SpanWire {
            trace: trace_id(s.trace),
            span: span_id(s.span),
            parent: s.parent.map(span_id),
            kind: span_kind(s.kind),
            start: s.start.at(self.now),
            end: s.end.at(self.now),
            error: s.error,
            name: s.name.as_ref().map(Name::bytes),
            attrs: &s.attrs,
            links: &s.links,
            enc: s.enc,
        };
        write_span(&w, &self.keys.span)
    }

    fn item(&mut self, item: &Item) {
        match item {
            Item::Resource(r) => {
                let res = self.resource_body(r.service.as_ref(), &r.attrs);
                let mut scopes = Vec::new();
                for sc in r.scopes.iter().take(64) {
                    let spans: Vec<Vec<u8>> = sc.iter().take(4096).map(|s| self.span(s)).collect();
                    scopes.push(self.scope(&spans, Some(b"fuzz")));
                }
                self.resource_spans(res, scopes, r.enc);
            }
            Item::Pair(p) => self.pair(p),
            Item::Bulk(b) => self.bulk(b),
            Item::Deep { service, key, nest, kind } => {
                let keys = &self.keys.span;
                let key = if keys.is_empty() {
                    "peer.service".to_string()
                } else {
                    keys[*key as usize % keys.len()].clone()
                };
                let attr = Attr { key: Key::Other(Name::Raw(key.into_bytes())), value: Value::Nested(nest.clone()), odd: 0 };
                let span = Span {
                    trace: *kind,
                    span: kind.wrapping_add(1),
                    parent: None,
                    kind: kind % 4, // SERVER, CLIENT, PRODUCER, CONSUMER
                    start: Time::Rel(0),
                    end: Time::Rel(5),
                    error: false,
                    name: None,
                    attrs: vec![attr],
                    links: Vec::new(),
                    enc: 0,
                };
                let s = self.span(&span);
                let res = self.resource_body(Some(&Value::Str(service.clone())), &[]);
                let sc = self.scope(&[s], None);
                self.resource_spans(res, vec![sc], 0);
            }
            Item::Unknown(seed) => unknown_field(&mut self.out, seed | 0x40, Enc::CANONICAL),
        }
    }

    fn pair(&mut self, p: &Pair) {
        let (ck, sk, link) = match p.style % 3 {
            0 => (3, 2, false),
            1 => (4, 5, false),
            _ => (4, 5, true),
        };
        let client_id = span_id(p.client_span.max(1));
        let server_id = span_id(p.server_span.max(1));
        let trace = trace_id(p.trace % 16);
        let start = self.now;
        let lat = p.latency_ms as u64 * 1_000_000;
        let links = if link { vec![Link { trace: p.trace % 16, span: p.client_span.max(1), empty_trace: false }] } else { vec![] };
        let client = SpanWire {
            trace,
            span: client_id,
            parent: None,
            kind: ck,
            start,
            end: start + lat + 2_000_000,
            error: false,
            name: Some(b"call".to_vec()),
            attrs: &p.client_attrs,
            links: &[],
            enc: 0,
        };
        let server = SpanWire {
            // A linked consumer lives in its own trace.
            trace: if link { trace_id(p.trace % 16 + 1) } else { trace },
            span: server_id,
            parent: if link { None } else { Some(client_id) },
            kind: sk,
            start: start + 1_000_000,
            end: start + lat + 1_000_000,
            error: p.error,
            name: Some(b"handle".to_vec()),
            attrs: &p.server_attrs,
            links: &links,
            enc: 0,
        };
        self.spans += 2;
        let c = write_span(&client, &self.keys.span);
        let s = write_span(&server, &self.keys.span);
        let cr = self.resource_body(Some(&Value::Str(p.client.clone())), &[]);
        let sr = self.resource_body(Some(&Value::Str(p.server.clone())), &[]);
        let (cs, ss) = (self.scope(&[c], None), self.scope(&[s], None));
        if p.server_first {
            self.resource_spans(sr, vec![ss], 0);
            self.resource_spans(cr, vec![cs], 0);
        } else {
            self.resource_spans(cr, vec![cs], 0);
            self.resource_spans(sr, vec![ss], 0);
        }
    }

    fn bulk(&mut self, b: &Bulk) {
        let value_len = (b.value_len as usize).min(1 << 20);
        let attrs_per_span = (b.attrs_per_span as usize).min(4096);
        let value_len = value_len.min(MAX_BATCH_BYTES / 2 / attrs_per_span.max(1));
        // Keep the batch under MAX_BATCH_BYTES whatever was asked for.
        let per_span = 60 + attrs_per_span * (value_len + 24);
        let want = (b.spans as usize).min(200_000).max(1);
        let n = (spend(want.saturating_mul(per_span)) / per_span).max(1);
        let keys = &self.keys.span;
        let value = vec![b'v'; value_len];
        let mut attrs = Vec::with_capacity(attrs_per_span);
        for i in 0..attrs_per_span {
            let mut kv = Vec::new();
            let key = if !keys.is_empty() && i % 3 == 0 { keys[i / 3 % keys.len()].clone() } else { format!("bulk.{i}") };
            pb::len_field(&mut kv, 1, key.as_bytes(), Enc::CANONICAL);
            let mut av = Vec::new();
            pb::len_field(&mut av, 1, &value, Enc::CANONICAL);
            pb::len_field(&mut kv, 2, &av, Enc::CANONICAL);
            pb::len_field(&mut attrs, 9, &kv, Enc::CANONICAL);
        }
        let kind = span_kind(b.kind);
        let mut scope = Vec::with_capacity(n * (per_span + 8));
        for i in 0..n {
            let mut s = Vec::with_capacity(per_span);
            let mut t = [0x33u8; 16];
            if !b.share_trace {
                t[..8].copy_from_slice(&(i as u64).to_le_bytes());
            }
            pb::len_field(&mut s, 1, &t, Enc::CANONICAL);
            pb::len_field(&mut s, 2, &(i as u64 + 1).to_be_bytes(), Enc::CANONICAL);
            if i % 2 == 1 {
                pb::len_field(&mut s, 4, &(i as u64).to_be_bytes(), Enc::CANONICAL);
            }
            pb::varint_field(&mut s, 6, kind, Enc::CANONICAL);
            pb::fixed64_field(&mut s, 7, self.now, Enc::CANONICAL);
            pb::fixed64_field(&mut s, 8, self.now + i as u64, Enc::CANONICAL);
            s.extend(&attrs);
            pb::len_field(&mut scope, 2, &s, Enc::CANONICAL);
        }
        self.spans += n as u64;
        let res = self.resource_body(Some(&Value::Str(b.service.clone())), &[]);
        self.resource_spans(res, vec![scope], 0);
    }
}

/// Writes a batch at clock `now`.
pub fn write_batch(spec: &BatchSpec, keys: &Keys, now: u64) -> Written {
    BUDGET.with(|b| b.set(MAX_BATCH_BYTES));
    let mut w = Writer { keys, out: Vec::new(), spans: 0, valid: true, now };
    for item in spec.items.iter().take(64) {
        if !w.room() {
            break;
        }
        w.item(item);
    }
    for d in spec.damage.iter().take(4) {
        let len = w.out.len();
        match d {
            Damage::Truncate(at) if len > 0 => w.out.truncate(*at as usize % len),
            Damage::Flip(at, x) if len > 0 && *x != 0 => w.out[*at as usize % len] ^= x,
            Damage::Insert(at, b) => {
                let at = *at as usize % (len + 1);
                w.out.splice(at..at, b.iter().copied());
            }
            Damage::Trailer(b) => w.out.extend(b),
            _ => continue,
        }
        w.valid = false;
    }
    Written { bytes: w.out, valid: w.valid, spans: w.spans }
}

// ---------------------------------------------------------------- scenarios

/// The engine configuration, as JSON keys the README documents.
#[derive(Debug, Clone, Arbitrary)]
pub struct ConfigSpec {
    pub contrib: bool,
    pub dimensions: Vec<u8>,
    pub flags: u16,
    pub max_items: u8,
    pub shards: u8,
    pub max_series: u8,
    pub max_label_value_length: u8,
    pub buckets: u8,
}

const DIMENSIONS: &[&str] = &[
    "deployment.environment.name",
    "http.method",
    "k8s.namespace.name",
    "region",
    "client",
    "server",
    "le",
    "failed",
    "connection_type",
    "1st-dimension",
    "service.name",
    "ümlaut",
    "a.b",
    "a_b",
];

impl ConfigSpec {
    pub fn to_json(&self) -> String {
        use serde_json::json;
        let f = |bit: u16| self.flags >> bit & 1 == 1;
        let mut dims: Vec<&str> = self.dimensions.iter().take(4).map(|i| DIMENSIONS[*i as usize % DIMENSIONS.len()]).collect();
        dims.dedup();
        let mut c = json!({
            "compat": if self.contrib { "contrib" } else { "tempo" },
            "dimensions": dims,
            "enable_client_server_prefix": f(0),
            "span_links": f(1),
            "failed_label": f(2),
            "enable_virtual_node_label": f(3),
            "enable_messaging_system_latency_histogram": f(4),
            "enable_connection_info": f(5),
            "expired_includes_virtual": f(6),
            "messaging_never_virtual": f(7),
            "peer_attributes_on_server_spans": f(8),
            "virtual_client_from_peer": f(9),
            "initial_zero": f(10),
            "graph": !f(11),
            "database_naming": if f(12) { "peer_first" } else { "attribute_value" },
            "max_items": ([1, 2, 7, 1000][self.max_items as usize % 4]),
            "shards": ([1, 2, 16, 1024][self.shards as usize % 4]),
            "max_series": ([1, 3, 100, 100000][self.max_series as usize % 4]),
            "max_label_value_length": ([1, 3, 64, 2048][self.max_label_value_length as usize % 4]),
            "histogram_buckets": (match self.buckets % 3 { 0 => json!([0.001]), 1 => json!(["1ms", "1s", "1h"]), _ => json!([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8]) }),
        });
        if f(13) {
            c["span_multiplier_key"] = json!("sampling.ratio");
        }
        if f(14) {
            c["virtual_server_fallback"] = json!("fallback\"\n");
        }
        if f(15) {
            c["owner_attribute"] = json!("team");
        }
        c.to_string()
    }
}

#[derive(Debug, Clone, Arbitrary)]
pub enum Step {
    Consume { batch: BatchSpec, advance_ms: u16 },
    Expire { advance_ms: u32 },
    ExpireAll,
    Render(u8),
    Query(QuerySpec),
}

#[derive(Debug, Clone, Arbitrary)]
pub enum QuerySpec {
    Impact(Name),
    RootCauses,
    RecoveryOrder,
    History,
    Diff { from_back_s: u32, to_back_s: Option<u32> },
    Raw(Vec<u8>),
}

impl QuerySpec {
    pub fn to_json(&self, now: u64) -> Vec<u8> {
        use serde_json::json;
        match self {
            QuerySpec::Impact(n) => {
                json!({"query": "impact", "service": String::from_utf8_lossy(&n.bytes())}).to_string().into_bytes()
            }
            QuerySpec::RootCauses => br#"{"query":"root_causes"}"#.to_vec(),
            QuerySpec::RecoveryOrder => br#"{"query":"recovery_order"}"#.to_vec(),
            QuerySpec::History => br#"{"query":"history"}"#.to_vec(),
            QuerySpec::Diff { from_back_s, to_back_s } => {
                let back = |s: u32| now.saturating_sub(s as u64 * 1_000_000_000);
                match to_back_s {
                    Some(t) => json!({"query":"diff","from":back(*from_back_s),"to":back(*t)}),
                    None => json!({"query":"diff","from":back(*from_back_s)}),
                }
                .to_string()
                .into_bytes()
            }
            QuerySpec::Raw(b) => b.clone(),
        }
    }
}

#[derive(Debug, Clone, Arbitrary)]
pub struct Scenario {
    pub config: ConfigSpec,
    pub steps: Vec<Step>,
}
