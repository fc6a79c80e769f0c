//! Which attributes the engine reads, and how their values become strings.
//!
//! The configuration names a handful of attribute keys (dimensions, peer
//! attributes, database attributes, the span multiplier). [`KeySet`] numbers
//! them once so the wire reader can keep only those values, in fixed slots,
//! without building a map per span.

use crate::config::Config;
use crate::wire;
use std::borrow::Cow;

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
    pub fn to_label(&self, es6: bool) -> Cow<'a, str> {
        match *self {
            AttrValue::Double(d) if es6 => Cow::Owned(format_double_es6(d)),
            _ => self.to_str(),
        }
    }

    /// The value as a label string. Strings are used as they are (invalid
    /// UTF-8 is replaced); doubles are plain decimals (Go's `'f'` format, as
    /// Tempo writes them); other types as the collector's `Value.AsString`.
    pub fn to_str(&self) -> Cow<'a, str> {
        match *self {
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

    fn to_json(self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            AttrValue::Empty => Value::Null,
            AttrValue::Str(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
            AttrValue::Bool(b) => Value::Bool(b),
            AttrValue::Int(i) => Value::from(i),
            AttrValue::Double(d) => serde_json::Number::from_f64(d).map(Value::Number).unwrap_or(Value::Null),
            AttrValue::Bytes(_) => Value::String(self.to_str().into_owned()),
            AttrValue::Array(b) => Value::Array(wire::array_values(b).iter().map(|v| v.to_json()).collect()),
            AttrValue::KvList(b) => Value::Object(
                wire::kvlist_values(b)
                    .into_iter()
                    .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.to_json()))
                    .collect(),
            ),
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
    /// Per key length, the keys of that length: their first eight bytes as
    /// one word, and their index into `keys`, for the lookup below.
    by_len: Vec<Vec<(u64, u16)>>,
    pub dimensions: Vec<usize>,
    pub peer: Vec<usize>,
    pub database: Vec<usize>,
    pub peer_service: usize,
    pub server_address: usize,
    pub network_peer_address: usize,
    pub network_peer_port: usize,
    pub multiplier: Option<usize>,
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
}

impl KeySet {
    pub fn new(config: &Config) -> KeySet {
        let mut ks = KeySet {
            keys: Vec::new(),
            by_len: Vec::new(),
            dimensions: Vec::new(),
            peer: Vec::new(),
            database: Vec::new(),
            peer_service: 0,
            server_address: 0,
            network_peer_address: 0,
            network_peer_port: 0,
            multiplier: None,
            version: 0,
            environment: [0; 2],
            namespace: 0,
            k8s_namespace: 0,
            owner: 0,
            protocol: [0; 4],
            http: [0; 2],
        };
        ks.dimensions = config.dimensions.iter().map(|k| ks.add(k)).collect();
        ks.peer = config.peer_attributes.iter().map(|k| ks.add(k)).collect();
        ks.database = config.database_name_attributes.iter().map(|k| ks.add(k)).collect();
        ks.peer_service = ks.add("peer.service");
        ks.server_address = ks.add("server.address");
        ks.network_peer_address = ks.add("network.peer.address");
        ks.network_peer_port = ks.add("network.peer.port");
        ks.multiplier = config.span_multiplier_key.as_deref().map(|k| ks.add(k));
        if config.graph {
            ks.version = ks.add("service.version");
            ks.environment = [ks.add("deployment.environment.name"), ks.add("deployment.environment")];
            ks.namespace = ks.add("service.namespace");
            ks.k8s_namespace = ks.add("k8s.namespace.name");
            ks.owner = ks.add(&config.owner_attribute);
            ks.protocol =
                [ks.add("rpc.system"), ks.add("messaging.system"), ks.add("db.system.name"), ks.add("db.system")];
            ks.http = [ks.add("http.request.method"), ks.add("http.method")];
        }
        ks
    }

    fn add(&mut self, key: &str) -> usize {
        if let Some(i) = self.find(key.as_bytes()) {
            return i;
        }
        let i = self.keys.len();
        self.keys.push(key.as_bytes().into());
        if self.by_len.len() <= key.len() {
            self.by_len.resize(key.len() + 1, Vec::new());
        }
        self.by_len[key.len()].push((prefix_word(key.as_bytes()), i as u16));
        i
    }

    /// Number of distinct keys, i.e. value slots per span.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The slot of `key`, if the engine reads it. Most attribute keys differ in
    /// length from every configured key and are rejected without a comparison;
    /// most of the rest differ in their first eight bytes, compared as one word.
    #[inline(always)]
    pub fn find(&self, key: &[u8]) -> Option<usize> {
        let candidates = self.by_len.get(key.len())?;
        if candidates.is_empty() {
            return None;
        }
        let w = prefix_word(key);
        for &(p, i) in candidates {
            if p == w && (key.len() <= 8 || self.keys[i as usize].get(8..) == key.get(8..)) {
                return Some(i as usize);
            }
        }
        None
    }

    pub fn key(&self, i: usize) -> &str {
        std::str::from_utf8(&self.keys[i]).unwrap_or("")
    }
}

/// The first eight bytes of a key as a word, zero-padded when shorter.
#[inline(always)]
fn prefix_word(key: &[u8]) -> u64 {
    match key.first_chunk::<8>() {
        Some(w) => u64::from_le_bytes(*w),
        None => {
            let mut w = [0u8; 8];
            w[..key.len()].copy_from_slice(key);
            u64::from_le_bytes(w)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Compat, Config};

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
        // Same length and first eight bytes as a wanted key, or a short one.
        assert_eq!(ks.find(b"network.transport"), None);
        assert_eq!(ks.find(b"network.peer.port"), Some(ks.network_peer_port));
        assert_eq!(ks.find(b"db.name"), Some(ks.peer[1]));
        assert_eq!(ks.find(b"db.nam\0"), None);
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
