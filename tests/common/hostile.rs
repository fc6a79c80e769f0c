//! Hand-written OTLP bytes for hostile-input tests: nesting no encoder
//! would produce (prost itself stops decoding at 100 levels), and floods of
//! names that never pair.
#![allow(dead_code)]

use super::*;

/// Appends a varint.
pub fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    let mut n = 1;
    let mut v = v >> 7;
    while v > 0 {
        n += 1;
        v >>= 7;
    }
    n
}

/// Appends field `field` as a length-delimited value.
pub fn len_field(out: &mut Vec<u8>, field: u32, body: &[u8]) {
    varint(out, (field as u64) << 3 | 2);
    varint(out, body.len() as u64);
    out.extend_from_slice(body);
}

/// An `AnyValue` nested `depth` levels deep around the string "x": arrays of
/// one element, or (with `kvlist`) lists of one pair keyed "k". Written
/// outside in, from sizes computed inside out, so it costs O(depth).
pub fn nested_any_value(depth: usize, kvlist: bool) -> Vec<u8> {
    // Size of the AnyValue at each level, innermost (the string) first.
    let mut sizes = Vec::with_capacity(depth + 1);
    sizes.push(3u64); // field 1 "x"
    for k in 0..depth {
        let inner = sizes[k];
        // ArrayValue { values: inner } or KeyValueList { values: KeyValue { key: "k", value: inner } }
        let element = if kvlist { 3 + 1 + varint_len(inner) as u64 + inner } else { inner };
        let container = 1 + varint_len(element) as u64 + element;
        sizes.push(1 + varint_len(container) as u64 + container);
    }
    let mut out = Vec::with_capacity(sizes[depth] as usize);
    for k in (1..=depth).rev() {
        let inner = sizes[k - 1];
        let element = if kvlist { 3 + 1 + varint_len(inner) as u64 + inner } else { inner };
        let container = 1 + varint_len(element) as u64 + element;
        out.push(if kvlist { 0x32 } else { 0x2a }); // AnyValue field 6 or 5
        varint(&mut out, container);
        out.push(0x0a); // values, field 1
        varint(&mut out, element);
        if kvlist {
            out.extend_from_slice(&[0x0a, 0x01, b'k', 0x12]); // key "k", then value
            varint(&mut out, inner);
        }
    }
    out.extend_from_slice(&[0x0a, 0x01, b'x']);
    debug_assert_eq!(out.len() as u64, sizes[depth]);
    out
}

/// A `KeyValue` with a value given as raw `AnyValue` bytes.
pub fn raw_key_value(key: &str, any_value: &[u8]) -> Vec<u8> {
    let mut kv = Vec::with_capacity(any_value.len() + key.len() + 16);
    len_field(&mut kv, 1, key.as_bytes());
    len_field(&mut kv, 2, any_value);
    kv
}

/// One resource whose attributes are the given raw `KeyValue`s (plus
/// `service.name` when `service` is given), holding `spans`.
pub fn raw_resource_spans(service: Option<&str>, attributes: &[Vec<u8>], spans: &[Span]) -> Vec<u8> {
    let mut resource = Vec::new();
    if let Some(name) = service {
        len_field(&mut resource, 1, &s("service.name", name).encode_to_vec());
    }
    for kv in attributes {
        len_field(&mut resource, 1, kv);
    }
    let mut scope = Vec::new();
    for sp in spans {
        len_field(&mut scope, 2, &sp.encode_to_vec());
    }
    let mut rs = Vec::new();
    len_field(&mut rs, 1, &resource);
    len_field(&mut rs, 2, &scope);
    rs
}

/// An `ExportTraceServiceRequest` of raw `ResourceSpans`.
pub fn raw_batch(resources: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for rs in resources {
        len_field(&mut out, 1, rs);
    }
    out
}

/// A client span of trace `n` (distinct for every n) that nothing answers.
pub fn lone_client(n: u64, start: u64) -> Span {
    let mut trace = [0u8; 16];
    trace[..8].copy_from_slice(&(n + 1).to_be_bytes());
    trace[8] = 0xee;
    let mut id = [0u8; 8];
    id.copy_from_slice(&(n + 1).to_le_bytes());
    span(CLIENT, trace.to_vec(), id.to_vec(), None, start, start + SEC / 100)
}

/// `count` resources, each a new service named `junk-<first + i>` with one
/// client span that never pairs.
pub fn junk_batch(first: u64, count: u64, start: u64) -> Vec<u8> {
    batch(
        (first..first + count)
            .map(|n| resource(Some(&format!("junk-{n}")), vec![], vec![lone_client(n, start)]))
            .collect(),
    )
}

/// One request from `client` to `server`, both sides, in trace `n`.
pub fn real_pair(client: &str, server: &str, n: u8, start: u64) -> Vec<u8> {
    batch(vec![
        resource(Some(client), vec![], vec![span(CLIENT, trace(n), sid(1), None, start, start + SEC / 10)]),
        resource(Some(server), vec![], vec![span(SERVER, trace(n), sid(2), Some(sid(1)), start, start + SEC / 20)]),
    ])
}
