//! The OTLP/JSON reader (`otlp_json::batches` in every layout, and
//! `parse_document`). Every document it accepts is encoded as protobuf and
//! fed to an engine: when its IDs have the sizes OTLP requires, the engine
//! must accept it and count exactly its spans. Errors must point inside the
//! input. Seeds: tests/fixtures (`make fuzz-seeds`).
#![no_main]
use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use servicemap::wire::json::{JsonError, Layout, batches, parse_document};
use servicemap_fuzz::{NOW, check, engine_for};

/// Spans in the request, and whether the engine's reader must accept it.
fn shape(r: &ExportTraceServiceRequest) -> (u64, bool) {
    let mut spans = 0;
    let mut valid = true;
    for rs in &r.resource_spans {
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                spans += 1;
                valid &= s.trace_id.len() == 16 && s.span_id.len() == 8;
                valid &= s.parent_span_id.is_empty() || s.parent_span_id.len() == 8;
                for l in &s.links {
                    valid &= l.trace_id.is_empty() || l.trace_id.len() == 16;
                    valid &= l.span_id.is_empty() || l.span_id.len() == 8;
                }
            }
        }
    }
    (spans, valid)
}

fn check_error(input: &[u8], e: &JsonError) {
    assert!(!e.message.is_empty());
    if let Some(o) = e.offset {
        assert!(o <= input.len(), "error offset {o} past the input ({} bytes): {e}", input.len());
    }
    if let Some(l) = e.line {
        let lines = 1 + input.iter().filter(|&&b| b == b'\n').count();
        assert!(l >= 1 && l <= lines, "error line {l} outside the input's {lines} lines: {e}");
    }
    // `column` is serde_json's: 1-based, except 0 for an error at the very
    // start of a line (`{\n` ends with "line 2, column 0").
    let _ = e.column;
    let _ = e.to_string();
}

fuzz_target!(|data: &[u8]| {
    let engine = engine_for((data.len() % 3) as u8);
    for layout in [Layout::Document, Layout::Lines, Layout::Detect] {
        let mut it = batches(data, layout);
        for _ in 0..64 {
            match it.next() {
                None => break,
                Some(Err(e)) => check_error(data, &e),
                Some(Ok(req)) => {
                    assert!(it.line() >= 1);
                    let (spans, valid) = shape(&req);
                    let bytes = req.encode_to_vec();
                    check::consume_checked(&engine, &bytes, NOW, valid.then_some(spans));
                }
            }
        }
    }
    match parse_document(data) {
        Ok(req) => {
            let _ = req.encode_to_vec();
        }
        Err(e) => check_error(data, &e),
    }
    check::finish(&engine, NOW + 1_000_000_000);
});
