//! Bad input gets a clear error, is counted, and changes nothing; odd but
//! valid input is handled without harm.

mod common;
use common::*;
use servicemap::ffi::*;

fn good_batch() -> Vec<u8> {
    batch(vec![
        resource(
            Some("a"),
            vec![s("deployment.environment", "prod")],
            vec![with_attrs(
                span(CLIENT, trace(1), sid(1), None, T0, T0 + SEC),
                vec![s("peer.service", "b"), i("http.status_code", 200)],
            )],
        ),
        resource(Some("b"), vec![], vec![span(SERVER, trace(1), sid(2), Some(sid(1)), T0, T0 + SEC)]),
        resource(Some("c"), vec![], vec![span(CLIENT, trace(2), sid(1), None, T0, T0 + SEC)]),
    ])
}

fn untouched(e: &servicemap::Engine) {
    let s = e.stats();
    assert_eq!((s.batches_rejected, s.batches_accepted, s.spans_received, s.waiting, s.active_series), (1, 0, 0, 0, 0));
}

#[test]
fn every_truncation_is_rejected_whole_or_read_as_a_shorter_batch() {
    let b = good_batch();
    let mut rejected = 0;
    for cut in 1..b.len() {
        let e = engine("{}");
        match e.consume(&b[..cut], T0) {
            Err(err) => {
                rejected += 1;
                assert!(err.to_string().starts_with("malformed OTLP traces batch at byte "), "{err}");
                untouched(&e);
            }
            // A cut at a message boundary is a valid, shorter batch.
            Ok(_) => assert_eq!(e.stats().batches_rejected, 0),
        }
    }
    assert!(rejected > b.len() / 2, "only {rejected} of {} truncations were rejected", b.len());
}

#[test]
fn garbage_never_panics_and_is_counted() {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let e = engine("{}");
    let mut rejected = 0;
    for n in 0..2000 {
        let len = n % 300;
        let data: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        if e.consume(&data, T0).is_err() {
            rejected += 1;
        }
    }
    assert_eq!(e.stats().batches_rejected, rejected);
    assert!(rejected > 1500, "{rejected}");
}

#[test]
fn ids_of_the_wrong_length_reject_the_batch() {
    let e = engine("{}");
    let bad = batch(vec![resource(Some("a"), vec![], vec![span(CLIENT, vec![1; 8], sid(1), None, T0, T0 + SEC)])]);
    let err = e.consume(&bad, T0).unwrap_err().to_string();
    assert!(err.contains("trace_id must be 16 bytes"), "{err}");
    let bad = batch(vec![resource(
        Some("a"),
        vec![],
        vec![span(SERVER, trace(1), sid(1), Some(vec![1, 2, 3]), T0, T0 + SEC)],
    )]);
    let err = e.consume(&bad, T0).unwrap_err().to_string();
    assert!(err.contains("parent_span_id must be empty or 8 bytes"), "{err}");
    assert_eq!(e.stats().batches_rejected, 2);
    assert_eq!(e.stats().spans_received, 0);
}

#[test]
fn oversized_batches_are_rejected_before_reading() {
    let e = engine(r#"{"max_batch_bytes":100}"#);
    let b = good_batch();
    assert!(b.len() > 100);
    let err = e.consume(&b, T0).unwrap_err().to_string();
    assert!(err.contains("larger than max_batch_bytes"), "{err}");
    untouched(&e);
}

#[test]
fn absurd_timestamps_give_zero_or_huge_durations() {
    let e = engine("{}");
    let b = batch(vec![
        // Ends before it starts: duration 0.
        resource(Some("a"), vec![], vec![span(CLIENT, trace(1), sid(1), None, T0, T0 - SEC)]),
        // Starts at the epoch and ends at the end of time.
        resource(Some("b"), vec![], vec![span(SERVER, trace(1), sid(2), Some(sid(1)), 0, u64::MAX)]),
    ]);
    e.consume(&b, T0).unwrap();
    let m = scrape(&e, T0);
    assert_eq!(m["traces_service_graph_request_client_seconds_sum{client=\"a\",server=\"b\"}"], 0.0);
    assert_eq!(m["traces_service_graph_request_server_seconds_sum{client=\"a\",server=\"b\"}"], u64::MAX as f64 / 1e9);
    assert_eq!(m["traces_service_graph_request_server_seconds_bucket{client=\"a\",le=\"12.8\",server=\"b\"}"], 0.0);
    assert_eq!(m["traces_service_graph_request_server_seconds_bucket{client=\"a\",le=\"+Inf\",server=\"b\"}"], 1.0);
}

#[test]
fn huge_attribute_values_are_truncated_in_labels() {
    let e = engine("{}");
    let long = "x".repeat(1 << 20);
    let b = batch(vec![
        resource(Some(&long), vec![], vec![span(CLIENT, trace(1), sid(1), None, T0, T0 + SEC)]),
        resource(Some("b"), vec![], vec![span(SERVER, trace(1), sid(2), Some(sid(1)), T0, T0 + SEC)]),
    ]);
    e.consume(&b, T0).unwrap();
    let m = scrape(&e, T0);
    let key = format!("traces_service_graph_request_total{{client=\"{}\",server=\"b\"}}", "x".repeat(2048));
    assert_eq!(m[&key], 1.0);
}

#[test]
fn label_values_are_escaped() {
    let e = engine("{}");
    let b = batch(vec![
        resource(Some("we\"ird\\na\nme"), vec![], vec![span(CLIENT, trace(1), sid(1), None, T0, T0 + SEC)]),
        resource(Some("b"), vec![], vec![span(SERVER, trace(1), sid(2), Some(sid(1)), T0, T0 + SEC)]),
    ]);
    e.consume(&b, T0).unwrap();
    let text = String::from_utf8(e.render(servicemap::Format::Prometheus, T0)).unwrap();
    assert!(text.contains(r#"traces_service_graph_request_total{client="we\"ird\\na\nme",server="b"} 1.0"#), "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("traces_service_graph_request_total")).count(), 1);
}

#[test]
fn ffi_rejects_nulls_and_bad_arguments_with_messages() {
    unsafe {
        let mut engine: *mut sm_engine = std::ptr::null_mut();
        assert_eq!(sm_engine_new(std::ptr::null(), 0, &mut engine, std::ptr::null_mut()), sm_status::Ok);
        assert!(!engine.is_null());

        let mut msg = sm_buf { ptr: std::ptr::null_mut(), len: 0 };
        assert_eq!(sm_engine_consume(engine, std::ptr::null(), 5, T0, &mut msg), sm_status::NullArgument);
        let text = std::str::from_utf8(std::slice::from_raw_parts(msg.ptr, msg.len)).unwrap();
        assert_eq!(text, "data is null but its length is 5");
        sm_buf_free(msg);

        assert_eq!(
            sm_engine_new(std::ptr::null(), 0, std::ptr::null_mut(), std::ptr::null_mut()),
            sm_status::NullArgument
        );
        assert_eq!(
            sm_engine_render(engine, 0, T0, std::ptr::null_mut(), std::ptr::null_mut()),
            sm_status::NullArgument
        );
        let mut out = sm_buf { ptr: std::ptr::null_mut(), len: 0 };
        assert_eq!(sm_engine_render(engine, SM_FORMAT_STATS_JSON, T0, &mut out, std::ptr::null_mut()), sm_status::Ok);
        let stats: serde_json::Value = serde_json::from_slice(std::slice::from_raw_parts(out.ptr, out.len)).unwrap();
        assert_eq!(stats["batches_rejected"], 0);
        sm_buf_free(out);
        sm_buf_free(sm_buf { ptr: std::ptr::null_mut(), len: 0 });

        // On error `*out` is emptied; on success `message` is.
        let mut stale = [0u8; 3];
        let mut out = sm_buf { ptr: stale.as_mut_ptr(), len: 3 };
        let mut msg = sm_buf { ptr: stale.as_mut_ptr(), len: 3 };
        assert_eq!(sm_engine_render(engine, 99, T0, &mut out, &mut msg), sm_status::InvalidArgument);
        assert!(out.ptr.is_null() && out.len == 0);
        assert_eq!(std::slice::from_raw_parts(msg.ptr, msg.len), b"unknown format 99");
        sm_buf_free(msg);
        let mut msg = sm_buf { ptr: stale.as_mut_ptr(), len: 3 };
        assert_eq!(sm_engine_render(engine, SM_FORMAT_PROMETHEUS, T0, &mut out, &mut msg), sm_status::Ok);
        assert!(msg.ptr.is_null() && msg.len == 0);
        sm_buf_free(out);
        sm_engine_free(engine);
    }
}
