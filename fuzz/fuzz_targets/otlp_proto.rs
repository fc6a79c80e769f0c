//! Raw bytes as an OTLP `ExportTraceServiceRequest` through the engine's
//! public API: consume (twice, the second time later, so spans meet their
//! own copies), expire, render every format, query. Checks: no panic, a
//! rejected batch changes nothing but `batches_rejected`, outputs well formed.
//! Seeds: the test fixtures as protobuf (`make fuzz-seeds`).
#![no_main]
use libfuzzer_sys::fuzz_target;
use servicemap_fuzz::{NOW, check, engine_for};

fuzz_target!(|data: &[u8]| {
    // The engine's configuration follows the length, so every byte of the
    // input stays protobuf (and the seeds stay plain batches).
    let engine = engine_for((data.len() % 3) as u8);
    check::consume_checked(&engine, data, NOW, None);
    check::consume_checked(&engine, data, NOW + 1_000_000_000, None);
    check::finish(&engine, NOW + 2_000_000_000);
});
