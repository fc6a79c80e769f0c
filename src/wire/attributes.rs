//! Which attributes the engine reads, and how their values become strings.
//!
//! The configuration names a handful of attribute keys (dimensions, peer
//! attributes, database attributes, the span multiplier). [`KeySet`] numbers
//! them once so the wire reader can keep only those values, in fixed slots,
//! without building a map per span.

use crate::config::Config;
use crate::config::filter::Target;
use crate::wire;
use std::borrow::Cow;

/// How deep attribute values are followed when they become strings: an
/// `ArrayValue` or `KeyValueList` is level 1, its elements' containers level
/// 2, and so on. OTLP puts no bound on nesting, so one is chosen here.
pub(crate) const MAX_VALUE_DEPTH: usize = 32;

/// What a container nested deeper than [`MAX_VALUE_DEPTH`] is written as.
pub(crate) const TRUNCATED: &str = "...";

/// An attribute value borrowed from the batch bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AttrValue<'a> {
    /// The key is present with no value set.
    Empty,
    Str(&'a [u8]),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(&'a [u8]),
    /// Body of an `ArrayValue`.
    Array(&'a [u8]),
    /// Body of a `KeyValueList`.
    KvList(&'a [u8]),
}

impl<'a> AttrValue<'a> {
    /// The value as a label string, doubles written as contrib writes them
    /// (`es6`: the collector's `Value.AsString`, 1e-7 and 1e+21) or as Tempo
    /// does (plain decimals).
    pub fn to_label(self, es6: bool) -> Cow<'a, str> {
        match self {
            AttrValue::Double(d) if es6 => Cow::Owned(format_double_es6(d)),
            _ => self.to_str(),
        }
    }

    /// The value as a label string. Strings are used as they are (invalid
    /// UTF-8 is replaced); doubles are plain decimals (Go's `'f'` format, as
    /// Tempo writes them); other types as the collector's `Value.AsString`.
    pub fn to_str(self) -> Cow<'a, str> {
        match self {
            AttrValue::Empty => Cow::Borrowed(""),
            AttrValue::Str(b) => String::from_utf8_lossy(b),
            AttrValue::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
            AttrValue::Int(i) => Cow::Owned(i.to_string()),
            AttrValue::Double(d) => Cow::Owned(format_double(d)),
            AttrValue::Bytes(b) => {
                use base64::Engine as _;
                Cow::Owned(base64::engine::general_purpose::STANDARD.encode(b))
            }
            AttrValue::Array(_) | AttrValue::KvList(_) => Cow::Owned(self.to_json().to_string()),
        }
    }

    /// The value as JSON, as the collector writes nested values. Containers
    /// nested deeper than [`MAX_VALUE_DEPTH`] (the value itself being level 1)
    /// are written as [`TRUNCATED`]: the input must not choose how deep this
    /// recursion goes, since a thread's stack is small and its overflow
    /// kills the process (see [`AttrValue::is_too_deep`] for counting them).
    fn to_json(self) -> serde_json::Value {
        self.to_json_at(1)
    }

    fn to_json_at(self, depth: usize) -> serde_json::Value {
        use serde_json::Value;
        match self {
            AttrValue::Empty => Value::Null,
            AttrValue::Str(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
            AttrValue::Bool(b) => Value::Bool(b),
            AttrValue::Int(i) => Value::from(i),
            AttrValue::Double(d) => serde_json::Number::from_f64(d).map(Value::Number).unwrap_or(Value::Null),
            AttrValue::Bytes(_) => Value::String(self.to_str().into_owned()),
            AttrValue::Array(_) | AttrValue::KvList(_) if depth > MAX_VALUE_DEPTH => Value::String(TRUNCATED.into()),
            AttrValue::Array(b) => {
                Value::Array(wire::array_values(b).iter().map(|v| v.to_json_at(depth + 1)).collect())
            }
            AttrValue::KvList(b) => Value::Object(
                wire::kvlist_values(b)
                    .into_iter()
                    .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.to_json_at(depth + 1)))
                    .collect(),
            ),
        }
    }

    /// Whether this value holds containers nested deeper than
    /// [`MAX_VALUE_DEPTH`], so that its string form is cut. Walks the bytes
    /// with a stack of at most that many readers, whatever the input's depth.
    pub fn is_too_deep(&self) -> bool {
        match *self {
            AttrValue::Array(b) | AttrValue::KvList(b) => {
                wire::nests_deeper_than(b, matches!(self, AttrValue::KvList(_)), MAX_VALUE_DEPTH)
            }
            _ => false,
        }
    }

    /// A sampling ratio read as the span multiplier: only doubles greater
    /// than zero count, as in Tempo.
    pub fn as_positive_double(&self) -> Option<f64> {
        match *self {
            AttrValue::Double(d) if d > 0.0 && d.is_finite() => Some(d),
            _ => None,
        }
    }
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`: shortest digits, no exponent.
pub fn format_double(d: f64) -> String {
    if d.is_nan() {
        return "NaN".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    format!("{d}")
}

/// A double as JavaScript (and the collector's `Value.AsString`) writes it:
/// plain decimals from 1e-6 up to 1e21, exponent form outside that range.
pub fn format_double_es6(d: f64) -> String {
    if d.is_nan() {
        return "NaN".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    let abs = d.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{d:e}");
        return match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
            _ => s,
        };
    }
    format!("{d}")
}

/// The attribute keys the engine reads, numbered, with the roles they play.
#[derive(Debug, Clone)]
pub struct KeySet {
    keys: Vec<Box<[u8]>>,
    /// Open-addressed table over `keys` for [`KeySet::find`] (see [`Slot`]):
    /// a power of two at least twice the number of keys, so that a miss
    /// usually ends at the first empty slot.
    table: Box<[Slot]>,
    pub dimensions: Vec<usize>,
    pub peer: Vec<usize>,
    pub database: Vec<usize>,
    pub peer_service: usize,
    pub server_address: usize,
    pub network_peer_address: usize,
    pub network_peer_port: usize,
    pub multiplier: Option<usize>,
    /// Read from resources (and, harmlessly, from spans that carry it).
    pub service_name: usize,
    /// Whether `service.name` is wanted only for that, so not on spans.
    service_name_only: bool,
    /// Resource facts for the service map: version, environment (two spellings),
    /// namespace, Kubernetes namespace, owner.
    pub version: usize,
    pub environment: [usize; 2],
    pub namespace: usize,
    pub k8s_namespace: usize,
    pub owner: usize,
    /// Span attributes that tell an edge's protocol, in priority order; the
    /// last two only say "http".
    pub protocol: [usize; 4],
    pub http: [usize; 2],
    /// Bits of the keys (< 64) whose presence on a span is all that is read:
    /// the walk sets their bit in the span's mask and keeps no value.
    pub presence_only: u64,
    /// Bits of the protocol keys, so a span without any is told in one test
    /// (all ones when one of them is beyond the mask's 64 bits).
    pub protocol_mask: u64,
    /// Bits of the dimension keys, the same way.
    pub dimensions_mask: u64,
    /// Span names are read (a filter policy looks at them).
    pub span_name: bool,
}

/// The mask bits of `keys`: all ones when one of them is beyond the 64 bits,
/// so that a test against it never rules such a key out.
fn mask_of(keys: &[usize]) -> u64 {
    keys.iter().fold(0, |m, &k| if k < 64 { m | 1 << k } else { u64::MAX })
}

impl KeySet {
    pub fn new(config: &Config) -> KeySet {
        let mut ks = KeySet {
            keys: Vec::new(),
            table: Box::new([]),
            dimensions: Vec::new(),
            peer: Vec::new(),
            database: Vec::new(),
            peer_service: 0,
            server_address: 0,
            network_peer_address: 0,
            network_peer_port: 0,
            multiplier: None,
            service_name: 0,
            service_name_only: false,
            version: 0,
            environment: [0; 2],
            namespace: 0,
            k8s_namespace: 0,
            owner: 0,
            protocol: [0; 4],
            http: [0; 2],
            presence_only: 0,
            protocol_mask: 0,
            dimensions_mask: 0,
            span_name: false,
        };
        ks.dimensions = config.dimensions.iter().map(|k| ks.add(k)).collect();
        ks.dimensions_mask = mask_of(&ks.dimensions);
        ks.peer = config.peer_attributes.iter().map(|k| ks.add(k)).collect();
        ks.database = config.database_name_attributes.iter().map(|k| ks.add(k)).collect();
        ks.peer_service = ks.add("peer.service");
        ks.server_address = ks.add("server.address");
        ks.network_peer_address = ks.add("network.peer.address");
        ks.network_peer_port = ks.add("network.peer.port");
        ks.multiplier = config.span_multiplier_key.as_deref().map(|k| ks.add(k));
        for c in config.filter_policies.iter().flat_map(|p| [&p.include, &p.include_any, &p.exclude]).flatten() {
            for c in &c.conditions {
                match &c.target {
                    Target::Resource(k) | Target::Span(k) => {
                        ks.add(k);
                    }
                    Target::Name => ks.span_name = true,
                    Target::Status | Target::Kind => {}
                }
            }
        }
        ks.service_name_only = !ks.keys.iter().any(|k| **k == *b"service.name");
        ks.service_name = ks.add("service.name");
        if config.graph {
            ks.version = ks.add("service.version");
            ks.environment = [ks.add("deployment.environment.name"), ks.add("deployment.environment")];
            ks.namespace = ks.add("service.namespace");
            ks.k8s_namespace = ks.add("k8s.namespace.name");
            ks.owner = ks.add(&config.owner_attribute);
            ks.protocol =
                [ks.add("rpc.system"), ks.add("messaging.system"), ks.add("db.system.name"), ks.add("db.system")];
            // Added last: when no other role wants them, only their presence counts.
            let others = ks.keys.len();
            ks.http = [ks.add("http.request.method"), ks.add("http.method")];
            for k in ks.http.into_iter().filter(|&k| k >= others && k < 64) {
                ks.presence_only |= 1 << k;
            }
            ks.protocol_mask = mask_of(&ks.protocol);
        }
        ks.build_table();
        ks
    }

    fn add(&mut self, key: &str) -> usize {
        if let Some(i) = self.keys.iter().position(|k| **k == *key.as_bytes()) {
            return i;
        }
        self.keys.push(key.as_bytes().into());
        self.keys.len() - 1
    }

    fn build_table(&mut self) {
        let mut table = vec![Slot::EMPTY; (self.keys.len() * 8).next_power_of_two().max(256)];
        for (i, key) in self.keys.iter().enumerate() {
            let (head, tail) = head_tail(key);
            let mut at = slot_of(head, tail, key.len(), table.len());
            while table[at].index != u32::MAX {
                at = (at + 1) & (table.len() - 1);
            }
            table[at] = Slot { head, tail, len: key.len() as u32, index: i as u32 };
        }
        self.table = table.into_boxed_slice();
    }

    /// Number of distinct keys, i.e. value slots per span.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The slot of `key`, if the engine reads it.
    ///
    /// This runs for every attribute of every span, and most keys are not
    /// wanted, so a miss must be cheap: one hash of the key's length and its
    /// first and last eight bytes picks a table slot, and a slot is compared as
    /// three integers. Keys of up to 16 bytes are wholly inside those integers;
    /// only longer keys that match them have their middle compared.
    #[inline(always)]
    pub fn find(&self, key: &[u8]) -> Option<usize> {
        let (head, tail) = head_tail(key);
        let mask = self.table.len() - 1;
        let mut at = slot_of(head, tail, key.len(), self.table.len());
        loop {
            let slot = &self.table[at];
            if slot.index == u32::MAX {
                return None;
            }
            if slot.head == head
                && slot.tail == tail
                && slot.len as usize == key.len()
                && (key.len() <= 16 || middle_eq(&self.keys[slot.index as usize], key))
            {
                return Some(slot.index as usize);
            }
            at = (at + 1) & mask;
        }
    }

    pub fn key(&self, i: usize) -> &str {
        std::str::from_utf8(&self.keys[i]).unwrap_or("")
    }

    /// Every key, in slot order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        (0..self.keys.len()).map(|i| self.key(i))
    }

    /// The keys that matter on spans: all but `service.name` when only
    /// resources need it.
    pub fn span_keys(&self) -> impl Iterator<Item = &str> {
        (0..self.keys.len()).filter(|&i| !(self.service_name_only && i == self.service_name)).map(|i| self.key(i))
    }
}

/// One configured key in [`KeySet`]'s table: its first and last eight bytes
/// (zero-padded when shorter), its length, and its index (`u32::MAX`: empty).
#[derive(Debug, Clone, Copy)]
struct Slot {
    head: u64,
    tail: u64,
    len: u32,
    index: u32,
}

impl Slot {
    const EMPTY: Slot = Slot { head: 0, tail: 0, len: 0, index: u32::MAX };
}

/// The first and the last eight bytes of `key`, overlapping when it is
/// shorter than 16 bytes; both are the zero-padded key when it is shorter
/// than eight.
#[inline(always)]
fn head_tail(key: &[u8]) -> (u64, u64) {
    if let (Some(head), Some(tail)) = (key.first_chunk::<8>(), key.last_chunk::<8>()) {
        return (u64::from_le_bytes(*head), u64::from_le_bytes(*tail));
    }
    let mut short = [0u8; 8];
    short[..key.len()].copy_from_slice(key);
    let v = u64::from_le_bytes(short);
    (v, v)
}

/// Whether two keys of the same length over 16 bytes, whose first and last
/// eight bytes are equal, are equal: up to 32 bytes, two more 8-byte loads.
#[inline(always)]
fn middle_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n > 32 {
        return a[8..n - 8] == b[8..n - 8];
    }
    let load = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap());
    load(a, 8) == load(b, 8) && load(a, n - 16) == load(b, n - 16)
}

/// Whether two byte strings are equal, inline: one or two overlapping
/// loads per side up to 16 bytes, where a slice comparison would call
/// `memcmp`. For the few short values a batch compares again and again.
#[inline(always)]
pub(crate) fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let load8 = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap());
    let load4 = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().unwrap());
    match n {
        0..4 => a == b,
        4..8 => load4(a, 0) == load4(b, 0) && load4(a, n - 4) == load4(b, n - 4),
        8..=16 => load8(a, 0) == load8(b, 0) && load8(a, n - 8) == load8(b, n - 8),
        _ => a == b,
    }
}

/// The home slot of a key in a table of `slots` (a power of two) slots.
#[inline(always)]
fn slot_of(head: u64, tail: u64, len: usize, slots: usize) -> usize {
    let h = (head ^ tail.rotate_left(23) ^ len as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (h >> (64 - slots.trailing_zeros())) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Compat, Config};

    #[test]
    fn bytes_eq_is_slice_equality() {
        let words: Vec<Vec<u8>> = (0..=20)
            .flat_map(|n| {
                let base: Vec<u8> = (0..n as u8).map(|i| b'a' + i).collect();
                let mut variants = vec![base.clone()];
                for at in 0..n {
                    let mut v = base.clone();
                    v[at] ^= 1;
                    variants.push(v);
                }
                variants
            })
            .collect();
        for a in &words {
            for b in &words {
                assert_eq!(bytes_eq(a, b), a == b, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn keys_are_deduplicated_and_found() {
        let mut c = Config::preset(Compat::Tempo);
        c.dimensions = vec!["db.system".into(), "http.method".into()];
        let ks = KeySet::new(&c);
        assert_eq!(ks.find(b"db.system"), Some(ks.dimensions[0]));
        assert_eq!(ks.peer[2], ks.dimensions[0]);
        assert_eq!(ks.find(b"http.method"), Some(ks.dimensions[1]));
        assert_eq!(ks.find(b"http.route"), None);
        assert_eq!(ks.find(b""), None);
    }

    #[test]
    fn lookup_tells_apart_keys_that_share_their_ends() {
        let mut c = Config::preset(Compat::Tempo);
        // Same length, same first and last eight bytes; differ only in the middle.
        c.dimensions = vec![
            "attribute.one.suffix".into(),
            "attribute.two.suffix".into(),
            "k".into(),
            "".into(),
            "a.much.longer.attribute.key.of.forty.bytes".into(),
            "a.much.longer.attribute.key.of.fifty.bytes".into(),
        ];
        let ks = KeySet::new(&c);
        assert_eq!(ks.find(b"attribute.one.suffix"), Some(ks.dimensions[0]));
        assert_eq!(ks.find(b"attribute.two.suffix"), Some(ks.dimensions[1]));
        assert_eq!(ks.find(b"attribute.six.suffix"), None);
        assert_eq!(ks.find(b"k"), Some(ks.dimensions[2]));
        assert_eq!(ks.find(b"k\0"), None);
        assert_eq!(ks.find(b""), Some(ks.dimensions[3]));
        assert_eq!(ks.find(b"a.much.longer.attribute.key.of.fifty.bytes"), Some(ks.dimensions[5]));
        assert_eq!(ks.find(b"a.much.longer.attribute.key.of.sixty.bytes"), None);
        assert_eq!(ks.find(b"attribute.one.suffiX"), None);
        assert_eq!(ks.find(b"Attribute.one.suffix"), None);
        for i in 0..ks.len() {
            assert_eq!(ks.find(ks.key(i).as_bytes()), Some(i), "{}", ks.key(i));
        }
    }

    #[test]
    fn values_format_like_the_collector() {
        assert_eq!(AttrValue::Int(-42).to_str(), "-42");
        assert_eq!(AttrValue::Double(0.5).to_str(), "0.5");
        assert_eq!(AttrValue::Double(3.0).to_str(), "3");
        assert_eq!(AttrValue::Double(1e21).to_str(), "1000000000000000000000");
        assert_eq!(AttrValue::Bool(true).to_str(), "true");
        assert_eq!(AttrValue::Str(b"a\xffb").to_str(), "a\u{fffd}b");
        assert_eq!(AttrValue::Bytes(b"hi").to_str(), "aGk=");
        assert_eq!(AttrValue::Empty.to_str(), "");
    }

    #[test]
    fn arrays_and_maps_are_written_as_json() {
        use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value};
        use prost::Message;
        let v = |x| AnyValue { value: Some(x) };
        let array =
            ArrayValue { values: vec![v(Value::StringValue("a".into())), v(Value::IntValue(2))] }.encode_to_vec();
        assert_eq!(AttrValue::Array(&array).to_str(), r#"["a",2]"#);
        let map = KeyValueList {
            values: vec![KeyValue { key: "k".into(), value: Some(v(Value::BoolValue(true))), ..Default::default() }],
        }
        .encode_to_vec();
        assert_eq!(AttrValue::KvList(&map).to_str(), r#"{"k":true}"#);
    }

    #[test]
    fn contrib_writes_doubles_as_javascript_does() {
        let f = |d: f64| AttrValue::Double(d).to_label(true).into_owned();
        assert_eq!(f(1e-7), "1e-7");
        assert_eq!(f(1e21), "1e+21");
        assert_eq!(f(1.5e300), "1.5e+300");
        assert_eq!(f(0.000001), "0.000001");
        assert_eq!(f(123456.5), "123456.5");
        assert_eq!(f(0.0), "0");
        assert_eq!(f(f64::INFINITY), "Infinity");
        assert_eq!(AttrValue::Double(1e-7).to_label(false), "0.0000001");
    }
}
