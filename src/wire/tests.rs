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
