//! What every target checks besides "no panic": the engine's answers must be
//! well formed, and its self-report must add up.

use prost::Message;
use servicemap::{Config, Engine, Format};

/// Label names the exposition writes itself.
const OWN_LABELS: &[&str] = &["client", "server", "connection_type", "failed", "virtual_node", "le", "otel_metric_overflow"];

/// Whether the configuration's dimensions give a label name twice: one of
/// the exposition's own (`le`, `client`, ...) or two dimensions with the
/// same sanitised name (`a.b`, `a_b`). `Config::from_json` refuses such
/// dimensions (FUZZING.md, finding 2); this is the fuzzers' own statement of
/// the rule, checked against every configuration it accepts.
pub fn label_clash(config: &Config) -> bool {
    let mut names: Vec<String> =
        config.dimension_labels().iter().map(|n| servicemap::sanitize_label(n)).collect();
    if names.iter().any(|n| OWN_LABELS.contains(&n.as_str())) {
        return true;
    }
    let all = names.len();
    names.sort();
    names.dedup();
    names.len() != all
}

/// An accepted configuration never writes a label twice on a line
/// (`Config::from_json` refuses such dimensions, naming the key).
pub fn expect_label_clash(config: &Config) {
    assert!(!label_clash(config), "an accepted configuration writes a label twice: {:?}", config.dimensions);
}

pub const FORMATS: [Format; 7] = [
    Format::Prometheus,
    Format::OpenMetrics,
    Format::OtlpMetrics,
    Format::StatsJson,
    Format::GraphJson,
    Format::GraphDot,
    Format::GraphMermaid,
];

/// The self-report as JSON (the same on every version of `Stats`).
pub fn stats(engine: &Engine) -> serde_json::Value {
    engine.stats().to_json()
}

fn counter(s: &serde_json::Value, k: &str) -> u64 {
    s.get(k).and_then(|v| v.as_u64()).unwrap_or_else(|| panic!("stats has no counter {k}: {s}"))
}

/// Feeds one batch and checks the self-report around it:
/// - a rejected batch changes nothing but `batches_rejected` (+1);
/// - an accepted one adds 1 to `batches_accepted` and leaves `batches_rejected`;
/// - when the writer knows the batch is valid (`expect = Some(spans)`), it
///   must be accepted and `spans_received` must grow by exactly `spans`.
pub fn consume_checked(engine: &Engine, bytes: &[u8], now: u64, expect: Option<u64>) -> bool {
    let before = stats(engine);
    let result = engine.consume(bytes, now);
    let after = stats(engine);
    match &result {
        Err(e) => {
            assert!(expect.is_none(), "a valid batch of {} bytes was rejected: {e}", bytes.len());
            let mut want = before.clone();
            want["batches_rejected"] = (counter(&before, "batches_rejected") + 1).into();
            assert_eq!(after, want, "a rejected batch ({e}) changed the self-report");
            // The error names a place inside the batch.
            let text = e.to_string();
            assert!(!text.is_empty());
        }
        Ok(summary) => {
            assert_eq!(counter(&after, "batches_accepted"), counter(&before, "batches_accepted") + 1);
            assert_eq!(counter(&after, "batches_rejected"), counter(&before, "batches_rejected"));
            let received = counter(&after, "spans_received") - counter(&before, "spans_received");
            if let Some(spans) = expect {
                assert_eq!(received, spans, "spans_received grew by {received}, the batch holds {spans} spans");
            }
            let ignored = counter(&after, "spans_ignored") - counter(&before, "spans_ignored");
            let unnamed = counter(&after, "spans_unnamed") - counter(&before, "spans_unnamed");
            assert!(ignored + unnamed <= received, "ignored {ignored} + unnamed {unnamed} > received {received}");
            // `summary.spans` counts pairing entries: a CONSUMER span with
            // span links enters once per link, so it may exceed the spans.
            assert!(summary.dropped <= summary.spans, "{summary:?}");
        }
    }
    result.is_ok()
}

/// Renders every format at `now` and checks each is well formed.
pub fn render_all(engine: &Engine, now: u64) {
    for f in FORMATS {
        let out = engine.render(f, now);
        check_output(f, &out);
    }
}

pub fn check_output(f: Format, out: &[u8]) {
    match f {
        Format::Prometheus | Format::OpenMetrics => {
            let text = std::str::from_utf8(out).expect("exposition is not UTF-8");
            if let Err(e) = validate_exposition(text, f == Format::OpenMetrics) {
                panic!("malformed exposition: {e}");
            }
        }
        Format::OtlpMetrics => {
            opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest::decode(out)
                .expect("OTLP metrics output does not decode");
        }
        Format::StatsJson => {
            serde_json::from_slice::<serde_json::Value>(out).expect("stats JSON does not parse");
        }
        Format::GraphJson => {
            if !out.is_empty() {
                let v: serde_json::Value = serde_json::from_slice(out).expect("graph JSON does not parse");
                assert!(v.get("nodes").is_some_and(|n| n.is_array()), "graph JSON without nodes");
            }
        }
        Format::GraphDot | Format::GraphMermaid => {
            std::str::from_utf8(out).expect("graph text is not UTF-8");
        }
    }
}

/// Runs a query and checks its answer is an object (or an argument error).
pub fn query(engine: &Engine, request: &[u8], now: u64) {
    match engine.query(request, now) {
        Ok(v) => {
            assert!(v.is_object(), "query answer is not an object: {v}");
            // What the C ABI does with it.
            serde_json::to_vec(&v).expect("query answer does not serialise");
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// The fixed queries, plus impact on each name given.
pub fn queries(engine: &Engine, now: u64, services: &[&str]) {
    for q in [
        &br#"{"query":"root_causes"}"#[..],
        br#"{"query":"recovery_order"}"#,
        br#"{"query":"history"}"#,
        br#"{"query":"diff","from":0}"#,
        br#"{"query":"nope"}"#,
        b"not json",
    ] {
        query(engine, q, now);
    }
    let from = now.saturating_sub(600_000_000_000);
    query(engine, format!(r#"{{"query":"diff","from":{from},"to":{now}}}"#).as_bytes(), now);
    for s in services {
        query(engine, serde_json::json!({"query":"impact","service":s}).to_string().as_bytes(), now);
    }
}

/// The service names the map knows, from its JSON.
pub fn map_services(engine: &Engine, now: u64) -> Vec<String> {
    let out = engine.render(Format::GraphJson, now);
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out) else { return Vec::new() };
    v.get("nodes")
        .and_then(|n| n.as_array())
        .map(|n| n.iter().filter_map(|n| n.get("id")?.as_str().map(str::to_string)).take(8).collect())
        .unwrap_or_default()
}

/// The end of every engine target: expire, render everything, query.
pub fn finish(engine: &Engine, now: u64) {
    engine.expire(now);
    render_all(engine, now);
    let later = now.saturating_add(3_600_000_000_000);
    engine.expire_all(later);
    render_all(engine, later);
    let names = map_services(engine, later);
    let names: Vec<&str> = names.iter().map(String::as_str).chain(["", "user", "no such service"]).collect();
    queries(engine, later, &names);
}

// ---------------------------------------------------------------- exposition

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

/// A small checker of the Prometheus text format (0.0.4) and OpenMetrics
/// 1.0: every sample line is `name{label="value",...} number`, label names
/// are valid and not repeated within a line, values are escaped, and an
/// OpenMetrics exposition ends with `# EOF`.
pub fn validate_exposition(text: &str, openmetrics: bool) -> Result<(), String> {
    if text.is_empty() {
        return if openmetrics { Err("empty OpenMetrics exposition (no # EOF)".into()) } else { Ok(()) };
    }
    if !text.ends_with('\n') {
        return Err("does not end with a newline".into());
    }
    let mut lines: Vec<&str> = text.split('\n').collect();
    lines.pop();
    if openmetrics {
        if lines.last() != Some(&"# EOF") {
            return Err("OpenMetrics exposition does not end with # EOF".into());
        }
        lines.pop();
    }
    for (n, line) in lines.iter().enumerate() {
        let bad = |m: &str| Err(format!("line {}: {m}: {line:?}", n + 1));
        if line.is_empty() {
            if openmetrics {
                return bad("empty line");
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            if openmetrics && rest == " EOF" {
                return bad("# EOF before the end");
            }
            continue;
        }
        let b = line.as_bytes();
        let mut i = 0;
        if !is_name_start(b[0]) {
            return bad("metric name");
        }
        while i < b.len() && is_name_char(b[i]) {
            i += 1;
        }
        let mut seen: Vec<&str> = Vec::new();
        if i < b.len() && b[i] == b'{' {
            i += 1;
            loop {
                if i < b.len() && b[i] == b'}' {
                    i += 1;
                    break;
                }
                let start = i;
                if i >= b.len() || !(b[i].is_ascii_alphabetic() || b[i] == b'_') {
                    return bad("label name");
                }
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let name = &line[start..i];
                if seen.contains(&name) {
                    return bad(&format!("label {name} repeated"));
                }
                seen.push(name);
                if line.get(i..i + 2) != Some("=\"") {
                    return bad("expected =\"");
                }
                i += 2;
                loop {
                    match b.get(i) {
                        None => return bad("unterminated label value"),
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') => match b.get(i + 1) {
                            Some(b'\\' | b'"' | b'n') => i += 2,
                            _ => return bad("bad escape in label value"),
                        },
                        Some(_) => i += 1,
                    }
                }
                match b.get(i) {
                    Some(b',') => i += 1,
                    Some(b'}') => {}
                    _ => return bad("expected , or } after a label"),
                }
            }
        }
        if b.get(i) != Some(&b' ') {
            return bad("expected a space before the value");
        }
        let mut parts = line[i + 1..].split(' ');
        let value = parts.next().unwrap_or("");
        let ok = matches!(value, "NaN" | "+Inf" | "-Inf") || value.parse::<f64>().is_ok_and(|v| v.is_finite());
        if !ok {
            return bad("value");
        }
        if let Some(ts) = parts.next() {
            if ts.parse::<f64>().is_err() {
                return bad("timestamp");
            }
        }
        if parts.next().is_some() {
            return bad("trailing fields");
        }
    }
    Ok(())
}
