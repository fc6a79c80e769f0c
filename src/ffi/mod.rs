//! The C ABI. It translates between C and [`Engine`] and does nothing else.
//!
//! Rules every export follows:
//! - Its body runs inside [`boundary`], so a panic becomes `SM_STATUS_PANIC`
//!   and never unwinds into C (or Go).
//! - Null pointers and zero lengths are accepted where the header says so;
//!   otherwise they give `SM_STATUS_NULL_ARGUMENT`.
//! - Whoever allocates frees: buffers the library returns are freed with
//!   `sm_buf_free`, engines with `sm_engine_free`. The library never keeps a
//!   caller's pointer after a call returns.
//! - A non-null `message` always receives a buffer: on error a human-readable
//!   UTF-8 message, freed with `sm_buf_free`; on success the empty buffer.
#![allow(non_camel_case_types)]

use crate::config::Config;
use crate::engine::{Engine, Format};
use crate::error::Error;
use std::ffi::c_char;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;

/// Major version of this library; changes when the ABI breaks.
pub const SERVICEMAP_VERSION_MAJOR: u32 = 0;
/// Minor version of this library; changes when functions are added.
pub const SERVICEMAP_VERSION_MINOR: u32 = 4;
/// Patch version of this library.
pub const SERVICEMAP_VERSION_PATCH: u32 = 0;
/// `MAJOR * 10000 + MINOR * 100 + PATCH`, comparable with `sm_version_number()`.
pub const SERVICEMAP_VERSION_NUMBER: u32 =
    SERVICEMAP_VERSION_MAJOR * 10000 + SERVICEMAP_VERSION_MINOR * 100 + SERVICEMAP_VERSION_PATCH;

/// `sm_engine_render` format: Prometheus text exposition 0.0.4.
pub const SM_FORMAT_PROMETHEUS: u32 = 0;
/// `sm_engine_render` format: OpenMetrics 1.0 text.
pub const SM_FORMAT_OPENMETRICS: u32 = 1;
/// `sm_engine_render` format: OTLP `ExportMetricsServiceRequest` protobuf (cumulative).
pub const SM_FORMAT_OTLP_METRICS: u32 = 2;
/// `sm_engine_render` format: the engine's self-report as a JSON object.
pub const SM_FORMAT_STATS_JSON: u32 = 3;
/// `sm_engine_render` format: the service map as JSON (schema `servicemap.graph/v1`).
pub const SM_FORMAT_GRAPH_JSON: u32 = 4;
/// `sm_engine_render` format: the service map as Graphviz DOT, coloured by health.
pub const SM_FORMAT_GRAPH_DOT: u32 = 5;
/// `sm_engine_render` format: the service map as a Mermaid flowchart.
pub const SM_FORMAT_GRAPH_MERMAID: u32 = 6;
/// `sm_engine_render` format: Prometheus protobuf exposition, length-delimited
/// `io.prometheus.client.MetricFamily` messages (carries native histograms).
pub const SM_FORMAT_PROMETHEUS_PROTOBUF: u32 = 7;

/// Attribute values are followed this many levels deep when they become
/// label strings; deeper containers are written as "..." and counted in the
/// self-report's `values_truncated`. No input chooses a recursion depth.
pub const SM_MAX_VALUE_DEPTH: u32 = 32;
const _: () = assert!(SM_MAX_VALUE_DEPTH as usize == crate::wire::attributes::MAX_VALUE_DEPTH);

/// Result of every fallible call.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum sm_status {
    /// Success.
    Ok = 0,
    /// A required pointer was null.
    NullArgument = 1,
    /// The configuration was rejected; the message names the key.
    InvalidConfig = 2,
    /// The trace batch was rejected whole (malformed protobuf); nothing from it was applied.
    InvalidInput = 3,
    /// Another argument was out of range (for example an unknown format).
    InvalidArgument = 4,
    /// The library panicked; the engine is still usable but the call had no effect
    /// that can be relied on.
    Panic = 5,
}

/// A byte buffer owned by the library. Free it with `sm_buf_free`. An empty
/// buffer has `ptr == NULL` and `len == 0`.
#[repr(C)]
#[derive(Debug)]
pub struct sm_buf {
    pub ptr: *mut u8,
    pub len: usize,
}

impl sm_buf {
    fn empty() -> sm_buf {
        sm_buf { ptr: ptr::null_mut(), len: 0 }
    }

    fn from_vec(v: Vec<u8>) -> sm_buf {
        if v.is_empty() {
            return sm_buf::empty();
        }
        let boxed: Box<[u8]> = v.into_boxed_slice();
        let len = boxed.len();
        let ptr = Box::into_raw(boxed) as *mut u8;
        sm_buf { ptr, len }
    }
}

/// An engine: a pairing store plus the series it feeds. Opaque; create it
/// with `sm_engine_new`, free it with `sm_engine_free`. Safe to use from many
/// threads at once.
pub struct sm_engine {
    engine: Engine,
}

type Failure = (sm_status, String);

fn failure(e: Error) -> Failure {
    let status = match e {
        Error::Config { .. } => sm_status::InvalidConfig,
        Error::Decode(_) => sm_status::InvalidInput,
        // No export reads a metrics store; the arm keeps the match whole.
        Error::Argument(_) | Error::Store(_) => sm_status::InvalidArgument,
    };
    (status, e.to_string())
}

/// The one panic boundary: runs `f`, turns its error or panic into a status,
/// and writes the message for the caller (empty on success).
fn boundary(message: *mut sm_buf, f: impl FnOnce() -> Result<(), Failure>) -> sm_status {
    let outcome = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        Err((sm_status::Panic, format!("internal error (panic): {what}")))
    });
    let (status, text) = match outcome {
        Ok(()) => (sm_status::Ok, Vec::new()),
        Err((status, text)) => (status, text.into_bytes()),
    };
    if !message.is_null() {
        // SAFETY: the caller passed a writable sm_buf or null (checked). On
        // success it becomes the empty buffer, so it never holds a stale pointer.
        unsafe { message.write(sm_buf::from_vec(text)) };
    }
    status
}

/// Borrows `(ptr, len)` as a slice; `(NULL, 0)` is the empty slice.
unsafe fn bytes<'a>(ptr: *const u8, len: usize, what: &str) -> Result<&'a [u8], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err((sm_status::NullArgument, format!("{what} is null but its length is {len}")));
    }
    // SAFETY: the caller guarantees ptr points to len readable bytes for the call.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

unsafe fn engine_ref<'a>(engine: *const sm_engine) -> Result<&'a Engine, Failure> {
    if engine.is_null() {
        return Err((sm_status::NullArgument, "engine is null".to_string()));
    }
    // SAFETY: a non-null engine came from sm_engine_new and is not yet freed.
    Ok(unsafe { &(*engine).engine })
}

/// The shape of every export that answers with a new buffer: `*out` is
/// emptied first (so it is never left dangling on an error), then set to
/// what `answer` returns for the engine.
unsafe fn answer_into(
    engine: *const sm_engine,
    out: *mut sm_buf,
    answer: impl FnOnce(&Engine) -> Result<Vec<u8>, Failure>,
) -> Result<(), Failure> {
    if out.is_null() {
        return Err((sm_status::NullArgument, "out is null".to_string()));
    }
    // SAFETY: checked non-null above; the caller promises it is writable.
    unsafe { out.write(sm_buf::empty()) };
    let bytes = answer(unsafe { engine_ref(engine) }?)?;
    unsafe { out.write(sm_buf::from_vec(bytes)) };
    Ok(())
}

/// The library version as a static NUL-terminated string such as "0.4.0". Never free it.
#[unsafe(no_mangle)]
pub extern "C" fn sm_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

/// The library version as `SERVICEMAP_VERSION_NUMBER` of the build, to compare
/// with the header's macro at run time.
#[unsafe(no_mangle)]
pub extern "C" fn sm_version_number() -> u32 {
    SERVICEMAP_VERSION_NUMBER
}

/// Creates an engine from a JSON configuration (`config`, `config_len` bytes,
/// not NUL-terminated; `(NULL, 0)` means all defaults of the Tempo preset).
/// On success `*engine_out` owns a new engine: free it with `sm_engine_free`.
/// On failure `*engine_out` is set to NULL and `message` (if not NULL) receives
/// an error naming the offending key.
///
/// # Safety
/// `config` must point to `config_len` readable bytes; `engine_out` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sm_engine_new(
    config: *const u8,
    config_len: usize,
    engine_out: *mut *mut sm_engine,
    message: *mut sm_buf,
) -> sm_status {
    boundary(message, || {
        if engine_out.is_null() {
            return Err((sm_status::NullArgument, "engine_out is null".to_string()));
        }
        // SAFETY: checked non-null above.
        unsafe { engine_out.write(ptr::null_mut()) };
        let text = unsafe { bytes(config, config_len, "config") }?;
        let cfg = Config::from_json(text).map_err(failure)?;
        let boxed = Box::new(sm_engine { engine: Engine::new(cfg) });
        unsafe { engine_out.write(Box::into_raw(boxed)) };
        Ok(())
    })
}

/// Frees an engine and everything it holds. NULL is a no-op. The engine must
/// not be in use by another thread, and must not be used afterwards.
///
/// # Safety
/// `engine` must be NULL or a pointer from `sm_engine_new` not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sm_engine_free(engine: *mut sm_engine) {
    if engine.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the pointer came from Box::into_raw in sm_engine_new.
        drop(unsafe { Box::from_raw(engine) });
    }));
}

/// Feeds one batch of spans: OTLP `ExportTraceServiceRequest` (or `TracesData`)
/// protobuf bytes, borrowed for the call only. `now_unix_nano` is the caller's
/// clock. A malformed batch gives `SM_STATUS_INVALID_INPUT`, is counted as
/// rejected, and changes nothing else. Thread-safe.
///
/// # Safety
/// `engine` must be a live engine; `data` must point to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sm_engine_consume(
    engine: *const sm_engine,
    data: *const u8,
    len: usize,
    now_unix_nano: u64,
    message: *mut sm_buf,
) -> sm_status {
    boundary(message, || {
        let engine = unsafe { engine_ref(engine) }?;
        let batch = unsafe { bytes(data, len, "data") }?;
        engine.consume(batch, now_unix_nano).map(|_| ()).map_err(failure)
    })
}

/// As `sm_engine_consume`, and writes to `*dropped_out` (when not NULL) how
/// many of the batch's spans were dropped because the pairing store was
/// full: what an OTLP server reports as rejected in a partial success. It is
/// 0 when the call fails (the batch was rejected whole). Thread-safe.
///
/// # Safety
/// As `sm_engine_consume`; `dropped_out` must be NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sm_engine_consume_counted(
    engine: *const sm_engine,
    data: *const u8,
    len: usize,
    now_unix_nano: u64,
    dropped_out: *mut u64,
    message: *mut sm_buf,
) -> sm_status {
    boundary(message, || {
        if !dropped_out.is_null() {
            // SAFETY: checked non-null; the caller guarantees it is writable.
            unsafe { dropped_out.write(0) };
        }
        let engine = unsafe { engine_ref(engine) }?;
        let batch = unsafe { bytes(data, len, "data") }?;
        let summary = engine.consume(batch, now_unix_nano).map_err(failure)?;
        if !dropped_out.is_null() {
            unsafe { dropped_out.write(summary.dropped) };
        }
        Ok(())
    })
}

/// Expires half-edges whose wait has passed at `now_unix_nano`: they become
/// virtual-node edges or are counted as expired, and idle series are removed.
/// Call it on a ticker. Thread-safe.
///
/// # Safety
/// `engine` must be a live engine.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sm_engine_expire(
    engine: *const sm_engine,
    now_unix_nano: u64,
    message: *mut sm_buf,
) -> sm_status {
    boundary(message, || {
        let engine = unsafe { engine_ref(engine) }?;
        engine.expire(now_unix_nano);
        Ok(())
    })
}

/// Expires every waiting half-edge now, whatever its deadline (end of input,
/// shutdown). Thread-safe.
///
/// # Safety
/// `engine` must be a live engine.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sm_engine_flush(
    engine: *const sm_engine,
    now_unix_nano: u64,
    message: *mut sm_buf,
) -> sm_status {
    boundary(message, || {
        let engine = unsafe { engine_ref(engine) }?;
        engine.expire_all(now_unix_nano);
        Ok(())
    })
}

/// Renders the engine's state at `now_unix_nano` in `format` (one of the
/// `SM_FORMAT_*` values) into `*out`, a new buffer the caller frees with
/// `sm_buf_free`. Thread-safe.
///
/// # Safety
/// `engine` must be a live engine; `out` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sm_engine_render(
    engine: *const sm_engine,
    format: u32,
    now_unix_nano: u64,
    out: *mut sm_buf,
    message: *mut sm_buf,
) -> sm_status {
    boundary(message, || unsafe {
        answer_into(engine, out, |engine| {
            let format = match format {
                SM_FORMAT_PROMETHEUS => Format::Prometheus,
                SM_FORMAT_OPENMETRICS => Format::OpenMetrics,
                SM_FORMAT_OTLP_METRICS => Format::OtlpMetrics,
                SM_FORMAT_STATS_JSON => Format::StatsJson,
                SM_FORMAT_GRAPH_JSON => Format::GraphJson,
                SM_FORMAT_GRAPH_DOT => Format::GraphDot,
                SM_FORMAT_GRAPH_MERMAID => Format::GraphMermaid,
                SM_FORMAT_PROMETHEUS_PROTOBUF => Format::PrometheusProtobuf,
                other => return Err((sm_status::InvalidArgument, format!("unknown format {other}"))),
            };
            Ok(engine.render(format, now_unix_nano))
        })
    })
}

/// Answers a service-map query given as JSON (`request`, `request_len`
/// bytes): `{"query":"impact","service":"NAME"}`, `{"query":"root_causes"}`,
/// `{"query":"recovery_order"}`, `{"query":"diff","from":UNIX_NANO,"to":UNIX_NANO}`
/// or `{"query":"history"}`. The JSON answer goes to `*out`, a new buffer the
/// caller frees with `sm_buf_free`. Thread-safe.
///
/// # Safety
/// `engine` must be a live engine; `request` must point to `request_len`
/// readable bytes; `out` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sm_engine_query(
    engine: *const sm_engine,
    request: *const u8,
    request_len: usize,
    now_unix_nano: u64,
    out: *mut sm_buf,
    message: *mut sm_buf,
) -> sm_status {
    boundary(message, || unsafe {
        answer_into(engine, out, |engine| {
            let request = bytes(request, request_len, "request")?;
            let answer = engine.query(request, now_unix_nano).map_err(failure)?;
            let mut text = serde_json::to_vec(&answer).unwrap_or_default();
            text.push(b'\n');
            Ok(text)
        })
    })
}

/// Adds edges observed outside traces (network flows, gateway logs) to the
/// service map: JSON lines of `{"client","server","count","errors",
/// "latency_seconds","connection_type","protocol"}`, borrowed for the call.
/// A bad line rejects the whole input (`SM_STATUS_INVALID_ARGUMENT`, the
/// message names the line). Thread-safe.
///
/// # Safety
/// `engine` must be a live engine; `data` must point to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sm_engine_observe_edges(
    engine: *const sm_engine,
    data: *const u8,
    len: usize,
    now_unix_nano: u64,
    message: *mut sm_buf,
) -> sm_status {
    boundary(message, || {
        let engine = unsafe { engine_ref(engine) }?;
        let lines = unsafe { bytes(data, len, "data") }?;
        engine.observe_edges(lines, now_unix_nano).map(|_| ()).map_err(failure)
    })
}

/// Writes to `*out` the attribute keys this engine reads from a batch, as a
/// JSON object `{"resource":[KEY...],"span":[KEY...],"span_name":BOOL}`:
/// resource attributes and span attributes with other keys (and, when
/// `span_name` is false, span names) never change its output, so a caller
/// that encodes batches itself may leave them out. The list follows the
/// configuration and does not change over the engine's life. `*out` is a new
/// buffer the caller frees with `sm_buf_free`. Thread-safe.
///
/// # Safety
/// `engine` must be a live engine; `out` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sm_engine_wanted_keys(
    engine: *const sm_engine,
    out: *mut sm_buf,
    message: *mut sm_buf,
) -> sm_status {
    boundary(message, || unsafe {
        answer_into(engine, out, |engine| Ok(serde_json::to_vec(&engine.wanted_keys()).unwrap_or_default()))
    })
}

/// Frees a buffer returned by this library. A buffer with a NULL `ptr` is a no-op.
///
/// # Safety
/// `buf` must come from this library and not have been freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sm_buf_free(buf: sm_buf) {
    if buf.ptr.is_null() {
        return;
    }
    // SAFETY: ptr/len came from sm_buf::from_vec (a boxed slice of exactly len bytes).
    drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(buf.ptr, buf.len)) });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_macros_follow_the_crate_version() {
        let v = |s: &str| s.parse::<u32>().unwrap();
        assert_eq!(SERVICEMAP_VERSION_MAJOR, v(env!("CARGO_PKG_VERSION_MAJOR")));
        assert_eq!(SERVICEMAP_VERSION_MINOR, v(env!("CARGO_PKG_VERSION_MINOR")));
        assert_eq!(SERVICEMAP_VERSION_PATCH, v(env!("CARGO_PKG_VERSION_PATCH")));
        let s = unsafe { std::ffi::CStr::from_ptr(sm_version()) };
        assert_eq!(s.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }
}
