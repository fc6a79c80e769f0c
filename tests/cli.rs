//! The `servicemap` command, run as a user would run it.
//!
//! Fixtures in tests/fixtures/cli: `pair.jsonl` holds, one batch per line, a
//! failing frontend→backend request (client 2 s with http.method=GET,
//! server 1 s) and a 0.25 s call from backend to redis; `client.json` and
//! `server.json` hold the two halves of that request as pretty documents.

#[path = "incidents/table.rs"]
mod table;

use prost::Message;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cli").join(name).to_string_lossy().into_owned()
}

fn servicemap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_servicemap")).args(args).output().expect("run servicemap")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("UTF-8 stdout")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("UTF-8 stderr")
}

/// The sample lines (no comments) of an exposition.
fn samples(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect()
}

/// A file in this test binary's scratch directory.
fn scratch(name: &str, bytes: &[u8]) -> String {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_string_lossy().into_owned()
}

/// Line `n` (1-based) of `pair.jsonl` as an OTLP protobuf batch.
fn protobuf_line(n: usize) -> Vec<u8> {
    let data = std::fs::read(fixture("pair.jsonl")).unwrap();
    let batch =
        servicemap::wire::json::batches(&data, servicemap::wire::json::Layout::Lines).nth(n - 1).unwrap().unwrap();
    batch.encode_to_vec()
}

const PAIR_METRICS: &[&str] = &[
    r#"traces_service_graph_request_total{client="backend",server="redis",connection_type="database"} 1.0"#,
    r#"traces_service_graph_request_total{client="frontend",server="backend",http_method="GET"} 1.0"#,
    r#"traces_service_graph_request_failed_total{client="frontend",server="backend",http_method="GET"} 1.0"#,
    r#"traces_service_graph_request_server_seconds_sum{client="backend",server="redis",connection_type="database"} 0.25"#,
    r#"traces_service_graph_request_server_seconds_count{client="backend",server="redis",connection_type="database"} 1"#,
    r#"traces_service_graph_request_server_seconds_bucket{le="0.5",client="backend",server="redis",connection_type="database"} 1"#,
    r#"traces_service_graph_request_server_seconds_bucket{le="1.5",client="backend",server="redis",connection_type="database"} 1"#,
    r#"traces_service_graph_request_server_seconds_bucket{le="+Inf",client="backend",server="redis",connection_type="database"} 1"#,
    r#"traces_service_graph_request_server_seconds_sum{client="frontend",server="backend",http_method="GET"} 1.0"#,
    r#"traces_service_graph_request_server_seconds_count{client="frontend",server="backend",http_method="GET"} 1"#,
    r#"traces_service_graph_request_server_seconds_bucket{le="0.5",client="frontend",server="backend",http_method="GET"} 0"#,
    r#"traces_service_graph_request_server_seconds_bucket{le="1.5",client="frontend",server="backend",http_method="GET"} 1"#,
    r#"traces_service_graph_request_server_seconds_bucket{le="+Inf",client="frontend",server="backend",http_method="GET"} 1"#,
    r#"traces_service_graph_request_client_seconds_sum{client="backend",server="redis",connection_type="database"} 0.25"#,
    r#"traces_service_graph_request_client_seconds_count{client="backend",server="redis",connection_type="database"} 1"#,
    r#"traces_service_graph_request_client_seconds_bucket{le="0.5",client="backend",server="redis",connection_type="database"} 1"#,
    r#"traces_service_graph_request_client_seconds_bucket{le="1.5",client="backend",server="redis",connection_type="database"} 1"#,
    r#"traces_service_graph_request_client_seconds_bucket{le="+Inf",client="backend",server="redis",connection_type="database"} 1"#,
    r#"traces_service_graph_request_client_seconds_sum{client="frontend",server="backend",http_method="GET"} 2.0"#,
    r#"traces_service_graph_request_client_seconds_count{client="frontend",server="backend",http_method="GET"} 1"#,
    r#"traces_service_graph_request_client_seconds_bucket{le="0.5",client="frontend",server="backend",http_method="GET"} 0"#,
    r#"traces_service_graph_request_client_seconds_bucket{le="1.5",client="frontend",server="backend",http_method="GET"} 0"#,
    r#"traces_service_graph_request_client_seconds_bucket{le="+Inf",client="frontend",server="backend",http_method="GET"} 1"#,
];

#[test]
fn metrics_from_json_lines() {
    let o = servicemap(&["metrics", "--config", &fixture("config.json"), &fixture("pair.jsonl")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), "");
    let out = stdout(&o);
    assert_eq!(samples(&out), PAIR_METRICS);
    assert!(out.contains("# TYPE traces_service_graph_request_total counter\n"), "{out}");
    assert!(out.contains("# TYPE traces_service_graph_request_server_seconds histogram\n"), "{out}");
    assert!(!out.contains("# EOF"), "{out}");
}

/// The same spans split over three inputs of three encodings, in one run:
/// the halves of a request pair across files.
#[test]
fn metrics_from_mixed_inputs() {
    let pb = scratch("redis-call.pb", &protobuf_line(3));
    let o =
        servicemap(&["metrics", "-c", &fixture("config.json"), &fixture("client.json"), &pb, &fixture("server.json")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(samples(&stdout(&o)), PAIR_METRICS);
}

#[test]
fn openmetrics_format() {
    let o = servicemap(&["metrics", "--format", "openmetrics", "-c", &fixture("config.json"), &fixture("pair.jsonl")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.ends_with("# EOF\n"), "{out}");
    assert!(out.contains("# TYPE traces_service_graph_request counter\n"), "{out}");
    assert!(
        out.contains(r#"traces_service_graph_request_total{client="frontend",server="backend",http_method="GET"} 1.0"#),
        "{out}"
    );
}

/// `--format protobuf` writes the bytes a scrape in that format gets:
/// length-delimited families, with native buckets when they are on.
#[test]
fn protobuf_format() {
    use prost::Message;
    let cfg = scratch("native.json", br#"{"histogram_buckets": [0.5, 1.5], "histograms": "both"}"#);
    let o = servicemap(&["metrics", "--format", "protobuf", "-c", &cfg, &fixture("pair.jsonl")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut buf = &o.stdout[..];
    let mut names = Vec::new();
    while !buf.is_empty() {
        let f = servicemap::client_model::MetricFamily::decode_length_delimited(&mut buf).unwrap();
        if let Some(h) = f.metric[0].histogram.as_ref() {
            assert_eq!((h.sample_count, h.schema, h.bucket.len()), (Some(1), Some(3), 2), "{f:?}");
        }
        names.push(f.name.unwrap());
    }
    assert_eq!(
        names,
        [
            "traces_service_graph_request_total",
            "traces_service_graph_request_failed_total",
            "traces_service_graph_request_server_seconds",
            "traces_service_graph_request_client_seconds"
        ]
    );
}

#[test]
fn reads_standard_input() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_servicemap"))
        .args(["metrics", "-c", &fixture("config.json"), "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&std::fs::read(fixture("pair.jsonl")).unwrap()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(samples(&stdout(&o)), PAIR_METRICS);
}

#[test]
fn stats_is_the_self_report() {
    let o = servicemap(&["stats", &fixture("pair.jsonl")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stats is JSON");
    assert_eq!(v["batches_accepted"], 3);
    assert_eq!(v["spans_received"], 3);
    assert_eq!(v["edges_new"], 2);
    assert_eq!(v["edges_completed"], 2);
    assert_eq!(v["edges_expired"], 0);
    assert_eq!(v["waiting"], 0);
    assert_eq!(v["spans_dropped"], 0);
}

/// The clock is the latest span end time read so far. With one store slot
/// and a one-second wait, the first lone span has expired when a span ending
/// ten seconds later arrives, so the second span finds room ...
#[test]
fn clock_follows_span_end_times() {
    let cfg = fixture("clock-config.json");
    let o = servicemap(&["stats", "-c", &cfg, &fixture("clock-late.jsonl")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v["spans_dropped"].as_u64(), v["edges_virtual"].as_u64()), (Some(0), Some(2)));
    let o = servicemap(&["metrics", "-c", &cfg, &fixture("clock-late.jsonl")]);
    let out = stdout(&o);
    let totals: Vec<&str> =
        samples(&out).into_iter().filter(|l| l.starts_with("traces_service_graph_request_total")).collect();
    assert_eq!(
        totals,
        [
            r#"traces_service_graph_request_total{client="edge",server="first",connection_type="virtual_node"} 1.0"#,
            r#"traces_service_graph_request_total{client="edge",server="second",connection_type="virtual_node"} 1.0"#,
        ]
    );
}

/// ... but when the second span ends only half a second later, the first is
/// still waiting and the second is dropped.
#[test]
fn clock_does_not_run_ahead_of_the_spans() {
    let o = servicemap(&["stats", "-c", &fixture("clock-config.json"), &fixture("clock-early.jsonl")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v["spans_dropped"].as_u64(), v["edges_virtual"].as_u64()), (Some(1), Some(1)));
}

#[test]
fn malformed_json_line_names_file_and_line() {
    let bad = fixture("bad-line3.jsonl");
    let o = servicemap(&["metrics", &fixture("pair.jsonl"), &bad]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "", "no partial output");
    let err = stderr(&o);
    assert!(err.starts_with(&format!("servicemap: error: {bad}: line 3, column ")), "{err}");
    assert!(err.contains("invalid JSON: EOF while parsing"), "{err}");
}

#[test]
fn truncated_protobuf_names_file_and_offset() {
    let full = protobuf_line(1);
    let cut = scratch("truncated.pb", &full[..full.len() - 5]);
    let o = servicemap(&["stats", &fixture("pair.jsonl"), &cut]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "", "no partial output");
    let err = stderr(&o);
    assert!(err.starts_with(&format!("servicemap: error: {cut}: malformed OTLP traces batch at byte ")), "{err}");
}

#[test]
fn bad_value_in_json_document_names_its_path() {
    let text = std::fs::read_to_string(fixture("server.json")).unwrap().replace("c111000000000002", "not-an-id");
    let path = scratch("bad-id.json", text.as_bytes());
    let o = servicemap(&["metrics", &path]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "");
    assert_eq!(
        stderr(&o),
        format!(
            "servicemap: error: {path}: at resourceSpans[0].scopeSpans[0].spans[0].spanId: \
             expected 8 bytes as 16 hex digits (or base64), got \"not-an-id\"\n"
        )
    );
}

#[test]
fn missing_file_and_bad_config() {
    let o = servicemap(&["metrics", "/nonexistent/traces.json"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "");
    assert!(stderr(&o).starts_with("servicemap: error: /nonexistent/traces.json: cannot read:"), "{}", stderr(&o));

    let cfg = scratch("bad-config.json", br#"{"max_itmes": 3}"#);
    let o = servicemap(&["metrics", "-c", &cfg, &fixture("pair.jsonl")]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "");
    assert_eq!(stderr(&o), format!("servicemap: error: config {cfg}: config key `max_itmes`: unknown key\n"));
}

/// A batch limit set in the configuration is kept, and a batch the engine
/// refuses is named by its line.
#[test]
fn configured_batch_limit_is_kept() {
    let cfg = scratch("small-batches.json", br#"{"max_batch_bytes": 100}"#);
    let o = servicemap(&["metrics", "-c", &cfg, &fixture("pair.jsonl")]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "");
    assert_eq!(
        stderr(&o),
        format!(
            "servicemap: error: {}: line 1: malformed OTLP traces batch at byte 0 in ExportTraceServiceRequest: \
             batch is larger than max_batch_bytes\n",
            fixture("pair.jsonl")
        )
    );
}

#[test]
fn help_and_usage_errors() {
    let o = servicemap(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("Usage:\n  servicemap metrics [--config FILE]"), "{}", stdout(&o));
    let o = servicemap(&["--version"]);
    assert_eq!(stdout(&o), format!("servicemap {}\n", env!("CARGO_PKG_VERSION")));

    for (args, message) in [
        (&[][..], "no command given"),
        (&["metrics"][..], "no input files given"),
        (&["draw", "x.json"][..], "unknown command `draw`"),
        (
            &["metrics", "--format", "json", "x.json"][..],
            "unknown format `json`: expected prometheus, openmetrics or protobuf",
        ),
        (&["metrics", "--verbose", "x.json"][..], "unknown option `--verbose`"),
        (&["stats", "-f", "openmetrics", "x.json"][..], "`--format` does not apply to `stats`"),
    ] {
        let o = servicemap(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert_eq!(stdout(&o), "", "{args:?}");
        assert_eq!(stderr(&o), format!("servicemap: {message}\nTry `servicemap --help`.\n"), "{args:?}");
    }
}

fn tempo_fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tempo").join(name).to_string_lossy().into_owned()
}

#[test]
fn impact_answers_who_depends_on_a_database() {
    let o = servicemap(&["impact", "postgres", &tempo_fixture("queue-database.json")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["service"], "postgres");
    assert_eq!(v["dependents"], serde_json::json!(["mythical-server", "mythical-requester"]));
    assert_eq!(v["dependencies"], serde_json::json!([]));
    // Postgres first, then who calls it, each caller after what it calls.
    assert_eq!(v["recovery_order"], serde_json::json!(["postgres", "mythical-server", "mythical-requester"]));
    assert_eq!(v["degraded_dependents"], serde_json::json!([]));
    assert_eq!((v["root_cause_direction"].as_str(), v["suspects"].as_array().map(Vec::len)), (Some("none"), Some(0)));
    // One request in the 5-minute window.
    assert_eq!(v["blast_radius_rps"].as_f64(), Some(1.0 / 300.0));

    let o = servicemap(&["impact", "mythical-requester", "--format", "text", &tempo_fixture("queue-database.json")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "mythical-requester is unknown (no calls into it in the window).\n\
         No dependents.\n\
         Users affected: up to 0 rps, 0% of user traffic (an upper bound computed from the graph).\n\
         Cause: none: it and everything it depends on are healthy.\n\
         Bring back: mythical-recorder, postgres → mythical-server → mythical-requester.\n\
         Dependents: (none)\n\
         Dependencies: mythical-recorder, mythical-server, postgres\n\
         Direct traffic: 0 rps\n"
    );
}

/// Every generated incident (tests/fixtures/incidents), asked about as a
/// person would: the JSON and the text are those of `expected.json`.
#[test]
fn impact_answers_the_generated_incidents() {
    for case in table::cases() {
        let file = case.file.to_string_lossy().into_owned();
        for a in &case.answers {
            let o = servicemap(&["impact", &a.service, "--format", "json", &file]);
            assert!(o.status.success(), "{}", stderr(&o));
            let got: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
            assert_eq!(got, a.impact, "{} / {}", case.name, a.service);
            let o = servicemap(&["impact", &a.service, "--format", "text", &file]);
            assert!(o.status.success(), "{}", stderr(&o));
            assert_eq!(stdout(&o), a.text, "{} / {}", case.name, a.service);
        }
    }
}

#[test]
fn graph_prints_json_dot_and_mermaid_and_takes_other_edges() {
    let fx = tempo_fixture("queue-database.json");
    let o = servicemap(&["graph", &fx]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let edges: Vec<String> = v["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}->{} {}",
                e["client"].as_str().unwrap(),
                e["server"].as_str().unwrap(),
                e["connection_type"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        edges,
        [
            "mythical-requester->mythical-recorder messaging_system",
            "mythical-requester->mythical-server ",
            "mythical-server->postgres database"
        ]
    );
    let o = servicemap(&["graph", "-f", "mermaid", &fx]);
    assert!(stdout(&o).contains("  n3[(\"postgres\")]:::green\n"), "{}", stdout(&o));
    let edges_file = scratch("edges.jsonl", b"{\"client\":\"lb\",\"server\":\"mythical-requester\",\"count\":3}\n");
    let o = servicemap(&["graph", "-f", "dot", "--edges", &edges_file, &fx]);
    assert!(stdout(&o).contains("\"lb\" -> \"mythical-requester\""), "{}", stdout(&o));
    let bad = scratch("bad-edges.jsonl", b"{\"client\":\"lb\"}\n");
    let o = servicemap(&["graph", "--edges", &bad, &fx]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).is_empty());
    assert!(stderr(&o).contains("edge line 1: `server` must be a non-empty string"), "{}", stderr(&o));
}

/// Exit status when no input file held a span.
const NO_SPANS: i32 = 3;

#[test]
fn empty_file_is_named_and_nothing_printed() {
    let empty = scratch("empty.json", b"");
    let o = servicemap(&["metrics", &empty]);
    assert_eq!(o.status.code(), Some(NO_SPANS));
    assert_eq!(stdout(&o), "");
    assert_eq!(
        stderr(&o),
        format!("servicemap: warning: {empty}: empty\nservicemap: error: the input held no span: nothing to report\n")
    );

    // Without an extension an input is read as protobuf unless it is JSON
    // text; whitespace is neither, and is no batch in either.
    let bare = scratch("empty-traces", b"");
    let blank = scratch("blank.jsonl", b"\n  \r\n");
    let o = servicemap(&["stats", &bare, &blank]);
    assert_eq!(o.status.code(), Some(NO_SPANS));
    assert_eq!(stdout(&o), "");
    assert_eq!(
        stderr(&o),
        format!(
            "servicemap: warning: {bare}: empty\nservicemap: warning: {blank}: empty (only whitespace)\n\
             servicemap: error: no input file held a span: nothing to report\n"
        )
    );
}

#[test]
fn empty_standard_input_is_named() {
    let o = Command::new(env!("CARGO_BIN_EXE_servicemap"))
        .args(["graph", "-"])
        .stdin(Stdio::null())
        .output()
        .expect("run servicemap");
    assert_eq!(o.status.code(), Some(NO_SPANS));
    assert_eq!(stdout(&o), "");
    assert_eq!(
        stderr(&o),
        "servicemap: warning: standard input: empty\nservicemap: error: the input held no span: nothing to report\n"
    );
}

/// The warning's text for one JSON input, and the run fails.
fn json_warning(name: &str, text: &str) -> String {
    let path = scratch(name, text.as_bytes());
    let o = servicemap(&["metrics", &path]);
    assert_eq!(o.status.code(), Some(NO_SPANS), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
    let err = stderr(&o);
    let warning = err
        .strip_suffix("servicemap: error: the input held no span: nothing to report\n")
        .and_then(|w| w.strip_prefix(&format!("servicemap: warning: {path}: ")))
        .unwrap_or_else(|| panic!("{err}"));
    warning.to_string()
}

#[test]
fn json_without_resource_spans_names_its_top_level_keys() {
    let w = json_warning("hello.json", r#"{"hello":"world"}"#);
    assert_eq!(w, "no spans: the JSON has no `resourceSpans` (top-level keys: `hello`)\n");

    let w = json_warning("empty-object.json", "{}\n");
    assert_eq!(w, "no spans: the JSON is `{}`, and OTLP/JSON traces are `{\"resourceSpans\": [...]}`\n");

    // Keys are listed sorted, every document's, at most eight.
    let lines = "{\"b\":1,\"a\":2}\n{\"c\":3,\"d\":4,\"e\":5,\"f\":6,\"g\":7,\"h\":8,\"i\":9}\n";
    let w = json_warning("other.jsonl", lines);
    assert_eq!(
        w,
        "no spans: none of its 2 JSON documents has `resourceSpans` \
         (top-level keys: `a`, `b`, `c`, `d`, `e`, `f`, `g`, `h`, ...)\n"
    );

    // A near miss of the key's spelling is pointed out.
    let w = json_warning("pascal.json", r#"{"ResourceSpans": [{"scopeSpans": []}], "x": 1}"#);
    assert_eq!(
        w,
        "no spans: the JSON has no `resourceSpans` (top-level keys: `ResourceSpans`, `x`); \
         OTLP/JSON spells `ResourceSpans` as `resourceSpans` (camelCase)\n"
    );
}

#[test]
fn json_with_resource_spans_but_no_span_says_so() {
    let w = json_warning("no-spans.json", r#"{"resourceSpans": []}"#);
    assert_eq!(w, "no spans: its `resourceSpans` hold no span\n");
    let w = json_warning(
        "no-spans-snake.json",
        r#"{"resource_spans": [{"resource": {}, "scope_spans": [{"spans": []}]}]}"#,
    );
    assert_eq!(w, "no spans: its `resource_spans` hold no span\n");
}

#[test]
fn protobuf_without_spans_says_what_it_holds() {
    // Field 2, a varint: not a field of ExportTraceServiceRequest, so skipped.
    let nothing = scratch("unknown-field.pb", &[0x10, 0x01]);
    let doc = br#"{"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "idle"}}]}}]}"#;
    let idle = servicemap::wire::json::parse_document(doc).unwrap().encode_to_vec();
    let idle = scratch("idle.pb", &idle);
    let o = servicemap(&["metrics", &nothing, &idle]);
    assert_eq!(o.status.code(), Some(NO_SPANS));
    assert_eq!(stdout(&o), "");
    assert_eq!(
        stderr(&o),
        format!(
            "servicemap: warning: {nothing}: no spans: read as OTLP protobuf, it holds no resource spans\n\
             servicemap: warning: {idle}: no spans: read as OTLP protobuf, its resource spans hold no span\n\
             servicemap: error: no input file held a span: nothing to report\n"
        )
    );
}

/// One file without spans among files with spans is a warning, not a failure.
#[test]
fn a_file_without_spans_among_others_is_only_a_warning() {
    let empty = scratch("empty-too.json", b"");
    let o = servicemap(&["metrics", "-c", &fixture("config.json"), &fixture("pair.jsonl"), &empty]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(samples(&stdout(&o)), PAIR_METRICS);
    assert_eq!(stderr(&o), format!("servicemap: warning: {empty}: empty\n"));
}

/// Edges from elsewhere make a map without any span.
#[test]
fn edges_alone_make_a_map() {
    let empty = scratch("empty-with-edges.json", b"");
    let edges = scratch("only-edges.jsonl", b"{\"client\":\"lb\",\"server\":\"web\",\"count\":3}\n");
    let o = servicemap(&["graph", "-f", "dot", "--edges", &edges, &empty]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("  \"lb\" -> \"web\" [color="), "{}", stdout(&o));
    assert_eq!(stderr(&o), format!("servicemap: warning: {empty}: empty\n"));
}

/// Every object key from lowerCamelCase to snake_case.
fn snake_keys(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let mut snake = String::new();
                    for c in k.chars() {
                        if c.is_ascii_uppercase() {
                            snake.push('_');
                        }
                        snake.push(c.to_ascii_lowercase());
                    }
                    (snake, snake_keys(v))
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(snake_keys).collect()),
        other => other,
    }
}

/// Protobuf's JSON field names (`resource_spans`, `trace_id`, ...) are read
/// as OTLP/JSON's: such a file holds spans, and nothing is warned about.
#[test]
fn snake_case_documents_are_read() {
    let data = std::fs::read_to_string(fixture("pair.jsonl")).unwrap();
    let mut lines = String::new();
    for line in data.lines() {
        let snake = snake_keys(serde_json::from_str(line).unwrap());
        assert!(snake.get("resource_spans").is_some(), "{snake}");
        lines.push_str(&snake.to_string());
        lines.push('\n');
    }
    assert!(lines.contains("\"start_time_unix_nano\"") && !lines.contains("Spans"), "{lines}");
    let path = scratch("pair-snake.jsonl", lines.as_bytes());
    let o = servicemap(&["metrics", "-c", &fixture("config.json"), &path]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), "");
    assert_eq!(samples(&stdout(&o)), PAIR_METRICS);
}

/// The README's console blocks (`$ servicemap ...` and what it prints) are
/// run from the top of the repository: the output shown is the output given.
#[test]
fn readme_console_blocks_show_what_the_commands_print() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut blocks = 0;
    let mut rest = readme.as_str();
    while let Some(at) = rest.find("```console\n") {
        rest = &rest[at + "```console\n".len()..];
        let end = rest.find("```\n").expect("a console block ends");
        let (block, after) = rest.split_at(end);
        rest = after;
        let (command, shown) = block.split_once('\n').unwrap();
        let args: Vec<&str> = command.strip_prefix("$ servicemap ").expect("a servicemap command").split(' ').collect();
        let o = Command::new(env!("CARGO_BIN_EXE_servicemap")).args(&args).current_dir(root).output().unwrap();
        assert!(o.status.success(), "{command}: {}", stderr(&o));
        assert_eq!(stdout(&o), shown, "README: {command}");
        blocks += 1;
    }
    assert_eq!(blocks, 3, "the README's incident walk-through has three console blocks");
}
