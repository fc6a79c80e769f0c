//! The C ABI (`servicemap::ffi`), called as a C program would: an engine made
//! from fuzzed configuration bytes, then a sequence of calls with fuzzed
//! buffers, formats, clocks and NULL pointers. Checks: no call reports
//! SM_STATUS_PANIC; a failing call writes a message and an OK call none; a
//! buffer is NULL exactly when it is empty; the status of each call is the
//! one its arguments call for. Every buffer is freed with sm_buf_free, so
//! LeakSanitizer sees what the ABI leaks.
#![no_main]
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use servicemap::ffi::*;
use servicemap_fuzz::generate::{BatchSpec, Keys, T0, write_batch};
use std::ptr;

#[derive(Debug, Arbitrary)]
enum Bytes {
    Raw(Vec<u8>),
    /// NULL with this length (an error unless 0).
    Null(u8),
}

#[derive(Debug, Arbitrary)]
enum Call {
    Consume(Bytes),
    ConsumeBatch(BatchSpec),
    Expire(u32),
    Flush,
    Render(u32, bool),
    Query(Bytes, bool),
    ObserveEdges(Bytes),
    WantedKeys(bool),
    NullEngine(u8),
    NoMessage(Bytes),
}

#[derive(Debug, Arbitrary)]
struct Program {
    config: Bytes,
    calls: Vec<Call>,
}

fn ptr_len(b: &Bytes) -> (*const u8, usize) {
    match b {
        Bytes::Raw(v) => (if v.is_empty() { ptr::null() } else { v.as_ptr() }, v.len()),
        Bytes::Null(n) => (ptr::null(), *n as usize % 3),
    }
}

fn empty() -> sm_buf {
    sm_buf { ptr: ptr::null_mut(), len: 0 }
}

fn take(b: sm_buf) -> Vec<u8> {
    assert_eq!(b.ptr.is_null(), b.len == 0, "sm_buf with ptr {:?} and len {}", b.ptr, b.len);
    let v = if b.ptr.is_null() { Vec::new() } else { unsafe { std::slice::from_raw_parts(b.ptr, b.len) }.to_vec() };
    unsafe { sm_buf_free(b) };
    v
}

/// Checks a status against its message; returns the status.
fn done(status: sm_status, message: sm_buf, what: &str) -> sm_status {
    let text = take(message);
    assert_ne!(status, sm_status::Panic, "{what} panicked: {}", String::from_utf8_lossy(&text));
    if status == sm_status::Ok {
        assert!(text.is_empty(), "{what} succeeded with a message");
    } else {
        assert!(!text.is_empty(), "{what} failed ({status:?}) without a message");
    }
    status
}

fuzz_target!(|p: Program| {
    let (cp, cl) = ptr_len(&p.config);
    let mut engine: *mut sm_engine = ptr::null_mut();
    let mut msg = empty();
    let st = done(unsafe { sm_engine_new(cp, cl, &mut engine, &mut msg) }, msg, "sm_engine_new");
    if st != sm_status::Ok {
        assert!(engine.is_null());
        if cp.is_null() && cl > 0 {
            assert_eq!(st, sm_status::NullArgument);
        }
        return;
    }
    assert!(!engine.is_null());
    let mut keys = empty();
    let mut msg = empty();
    done(unsafe { sm_engine_wanted_keys(engine, &mut keys, &mut msg) }, msg, "sm_engine_wanted_keys");
    let keys = Keys::from_wanted(&serde_json::from_slice(&take(keys)).expect("wanted keys JSON"));
    let mut now = T0;
    for call in p.calls.iter().take(24) {
        now += 250_000_000;
        let mut msg = empty();
        match call {
            Call::Consume(b) => {
                let (d, l) = ptr_len(b);
                let st = done(unsafe { sm_engine_consume(engine, d, l, now, &mut msg) }, msg, "sm_engine_consume");
                if d.is_null() && l > 0 {
                    assert_eq!(st, sm_status::NullArgument);
                } else {
                    assert!(matches!(st, sm_status::Ok | sm_status::InvalidInput), "{st:?}");
                }
            }
            Call::ConsumeBatch(spec) => {
                let w = write_batch(spec, &keys, now);
                let st = done(
                    unsafe { sm_engine_consume(engine, w.bytes.as_ptr(), w.bytes.len(), now, &mut msg) },
                    msg,
                    "sm_engine_consume",
                );
                if w.valid {
                    assert_eq!(st, sm_status::Ok, "a valid batch was refused");
                }
            }
            Call::Expire(ms) => {
                now += *ms as u64 * 1_000_000;
                done(unsafe { sm_engine_expire(engine, now, &mut msg) }, msg, "sm_engine_expire");
            }
            Call::Flush => {
                done(unsafe { sm_engine_flush(engine, now, &mut msg) }, msg, "sm_engine_flush");
            }
            Call::Render(format, null_out) => {
                let mut out = empty();
                let o: *mut sm_buf = if *null_out { ptr::null_mut() } else { &mut out };
                let st = done(unsafe { sm_engine_render(engine, *format, now, o, &mut msg) }, msg, "sm_engine_render");
                let body = take(out);
                if *null_out {
                    assert_eq!(st, sm_status::NullArgument);
                } else if *format > SM_FORMAT_GRAPH_MERMAID {
                    assert_eq!(st, sm_status::InvalidArgument);
                    assert!(body.is_empty());
                } else {
                    assert_eq!(st, sm_status::Ok);
                }
            }
            Call::Query(b, null_out) => {
                let (d, l) = ptr_len(b);
                let mut out = empty();
                let o: *mut sm_buf = if *null_out { ptr::null_mut() } else { &mut out };
                let st = done(unsafe { sm_engine_query(engine, d, l, now, o, &mut msg) }, msg, "sm_engine_query");
                let body = take(out);
                if st == sm_status::Ok {
                    serde_json::from_slice::<serde_json::Value>(&body).expect("query answer is not JSON");
                } else {
                    assert!(body.is_empty());
                }
            }
            Call::ObserveEdges(b) => {
                let (d, l) = ptr_len(b);
                let st = done(unsafe { sm_engine_observe_edges(engine, d, l, now, &mut msg) }, msg, "sm_engine_observe_edges");
                assert!(matches!(st, sm_status::Ok | sm_status::InvalidArgument | sm_status::NullArgument), "{st:?}");
            }
            Call::WantedKeys(null_out) => {
                let mut out = empty();
                let o: *mut sm_buf = if *null_out { ptr::null_mut() } else { &mut out };
                done(unsafe { sm_engine_wanted_keys(engine, o, &mut msg) }, msg, "sm_engine_wanted_keys");
                take(out);
            }
            Call::NullEngine(which) => {
                let mut out = empty();
                let st = unsafe {
                    match which % 5 {
                        0 => sm_engine_consume(ptr::null(), ptr::null(), 0, now, &mut msg),
                        1 => sm_engine_expire(ptr::null(), now, &mut msg),
                        2 => sm_engine_render(ptr::null(), 0, now, &mut out, &mut msg),
                        3 => sm_engine_query(ptr::null(), b"{}".as_ptr(), 2, now, &mut out, &mut msg),
                        _ => sm_engine_observe_edges(ptr::null(), ptr::null(), 0, now, &mut msg),
                    }
                };
                assert_eq!(done(st, msg, "a call on a NULL engine"), sm_status::NullArgument);
                assert!(take(out).is_empty());
            }
            Call::NoMessage(b) => {
                // A NULL message pointer: the error is not written anywhere.
                let (d, l) = ptr_len(b);
                let st = unsafe { sm_engine_consume(engine, d, l, now, ptr::null_mut()) };
                assert_ne!(st, sm_status::Panic);
            }
        }
    }
    unsafe { sm_engine_free(engine) };
    unsafe { sm_engine_free(ptr::null_mut()) };
});
