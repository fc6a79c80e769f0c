//! Memory under a flood of made-up names plateaus once the caps are full:
//! the command line tool's peak over 600,000 junk spans is within 1.5× of
//! its peak over 150,000. Alone in its test binary, because it reads the
//! peak of this process's children, which other tests' children would move.

mod common;
use common::hostile::junk_batch;
use common::{SEC, T0};
use std::process::Command;

/// Peak resident set of the largest child waited for so far, in KiB.
fn children_peak_kib() -> i64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) }, 0);
    usage.ru_maxrss
}

/// Writes `spans` junk spans as files of 10,000 (one batch each), each
/// span from a service of its own, none of them answered.
fn junk_files(dir: &std::path::Path, spans: u64) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    (0..spans)
        .step_by(10_000)
        .map(|first| {
            let path = dir.join(format!("junk-{first:07}.pb"));
            std::fs::write(&path, junk_batch(first, 10_000, T0 + first / 10_000 * SEC)).unwrap();
            path.to_string_lossy().into_owned()
        })
        .collect()
}

fn metrics(files: &[String]) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_servicemap")).arg("metrics").args(files).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn peak_memory_plateaus_under_a_flood_of_unique_names() {
    let dir = std::env::temp_dir().join(format!("servicemap-flood-{}", std::process::id()));
    let small = junk_files(&dir.join("small"), 150_000);
    let large = junk_files(&dir.join("large"), 600_000);
    let out_small = metrics(&small);
    let peak_small = children_peak_kib();
    let out_large = metrics(&large);
    let peak_large = children_peak_kib();
    std::fs::remove_dir_all(&dir).ok();
    // Both runs overflowed the unpaired budget into the one overflow counter.
    for (out, spans) in [(&out_small, 150_000), (&out_large, 600_000)] {
        let text = String::from_utf8_lossy(out);
        let overflow_of = |metric: &str| -> f64 {
            let prefix = format!("{metric}{{otel_metric_overflow=\"true\"}} ");
            text.lines().find_map(|l| l.strip_prefix(prefix.as_str())).expect("overflow counter").parse().unwrap()
        };
        let overflow = overflow_of("traces_service_graph_unpaired_spans_total");
        let dropped = overflow_of("traces_service_graph_dropped_spans_total");
        // The store keeps 10,000 (Tempo's max_items) until the end; the rest
        // is dropped; 1,000 counters have names of their own.
        assert_eq!(overflow + dropped, (spans - 1_000) as f64, "{spans} spans");
    }
    eprintln!("peak resident: {peak_small} KiB over 150,000 junk spans, {peak_large} KiB over 600,000");
    assert!(
        peak_large as f64 <= 1.5 * peak_small as f64,
        "peak {peak_large} KiB over 600,000 junk spans, {peak_small} KiB over 150,000"
    );
}
