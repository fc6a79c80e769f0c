//! Hostile input: values nested far deeper than any stack, floods of names
//! that never pair, and what a real edge sent afterwards still gets. Each
//! reader is tried: the engine, the C ABI, the command line tool (protobuf
//! and OTLP/JSON), the configuration and the edge feed.

mod common;
use common::hostile::*;
use common::*;
use servicemap::ffi::*;
use std::process::Command;

const DEEP: usize = 1_000_000;

/// A JSON array `depth` levels deep around `inner`, as the engine writes
/// nested values: at most 32 levels, the rest cut to "...".
fn nested_json(depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", "[".repeat(depth), "]".repeat(depth))
}

/// A pair a→b whose client resource is named by a nested value and whose
/// client span names its peer with a nested key-value list.
fn nested_pair(depth: usize) -> Vec<u8> {
    let name = raw_key_value("service.name", &nested_any_value(depth, false));
    let client = with_attrs(span(CLIENT, trace(1), sid(1), None, T0, T0 + SEC), vec![]);
    let server = span(SERVER, trace(1), sid(2), Some(sid(1)), T0, T0 + SEC / 2);
    raw_batch(&[raw_resource_spans(None, &[name], &[client]), raw_resource_spans(Some("b"), &[], &[server])])
}

fn request_total(client: &str, server: &str) -> String {
    let esc = client.replace('\\', "\\\\").replace('"', "\\\"");
    format!("traces_service_graph_request_total{{client=\"{esc}\",server=\"{server}\"}}")
}

#[test]
fn nesting_up_to_the_limit_is_written_whole_and_deeper_is_cut_and_counted() {
    for (depth, name, truncated) in [
        (1, nested_json(1, "\"x\""), 0),
        (32, nested_json(32, "\"x\""), 0),
        (33, nested_json(32, "\"...\""), 1),
        (DEEP, nested_json(32, "\"...\""), 1),
    ] {
        let e = engine("{}");
        e.consume(&nested_pair(depth), T0 + SEC).expect("a deep value is not a bad batch");
        let got = scrape(&e, T0 + SEC);
        assert_eq!(got.get(&request_total(&name, "b")), Some(&1.0), "depth {depth}: {got:?}");
        let stats = e.stats();
        assert_eq!((stats.values_truncated, stats.batches_accepted), (truncated, 1), "depth {depth}");
    }
}

#[test]
fn nested_key_value_lists_are_cut_the_same_way() {
    let peer = raw_key_value("peer.service", &nested_any_value(DEEP, true));
    let mut client = Vec::new();
    len_field(&mut client, 1, &trace(7));
    len_field(&mut client, 2, &sid(1));
    len_field(&mut client, 5, b"op");
    client.extend_from_slice(&[0x30, 0x03]); // kind CLIENT
    client.push(0x39);
    client.extend_from_slice(&T0.to_le_bytes());
    client.push(0x41);
    client.extend_from_slice(&(T0 + SEC).to_le_bytes());
    len_field(&mut client, 9, &peer);
    let mut scope = Vec::new();
    len_field(&mut scope, 2, &client);
    let mut resource = Vec::new();
    len_field(&mut resource, 1, &s("service.name", "a").encode_to_vec());
    let mut rs = Vec::new();
    len_field(&mut rs, 1, &resource);
    len_field(&mut rs, 2, &scope);
    let e = engine("{}");
    e.consume(&raw_batch(&[rs]), T0).unwrap();
    // The client waits, then expires into a virtual peer named by the cut value.
    e.expire(T0 + 60 * SEC);
    let peer = format!("{}\"...\"{}", "{\"k\":".repeat(32), "}".repeat(32));
    let got = scrape(&e, T0 + 60 * SEC);
    let server = peer.replace('"', "\\\"");
    let key = format!(
        "traces_service_graph_request_total{{client=\"a\",connection_type=\"virtual_node\",server=\"{server}\"}}"
    );
    assert_eq!(got.get(&key), Some(&1.0));
    assert_eq!(e.stats().values_truncated, 1);
}

use prost::Message;

#[test]
fn the_c_abi_takes_a_deep_batch_and_reports_the_cut() {
    let data = nested_pair(DEEP);
    unsafe {
        let mut engine = std::ptr::null_mut();
        assert_eq!(sm_engine_new(std::ptr::null(), 0, &mut engine, std::ptr::null_mut()), sm_status::Ok);
        let mut msg = sm_buf { ptr: std::ptr::null_mut(), len: 0 };
        assert_eq!(sm_engine_consume(engine, data.as_ptr(), data.len(), T0 + SEC, &mut msg), sm_status::Ok);
        assert!(msg.ptr.is_null());
        let mut out = sm_buf { ptr: std::ptr::null_mut(), len: 0 };
        assert_eq!(
            sm_engine_render(engine, SM_FORMAT_STATS_JSON, T0 + SEC, &mut out, std::ptr::null_mut()),
            sm_status::Ok
        );
        let stats: serde_json::Value = serde_json::from_slice(std::slice::from_raw_parts(out.ptr, out.len)).unwrap();
        assert_eq!(stats["values_truncated"], 1);
        assert_eq!(stats["batches_accepted"], 1);
        sm_buf_free(out);
        sm_engine_free(engine);
    }
}

fn scratch(name: &str, bytes: &[u8]) -> String {
    let dir = std::env::temp_dir().join(format!("servicemap-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_string_lossy().into_owned()
}

fn servicemap(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_servicemap")).args(args).output().expect("run servicemap")
}

#[test]
fn the_command_line_tool_reads_a_deep_protobuf_file() {
    let file = scratch("deep.pb", &nested_pair(DEEP));
    let out = servicemap(&["stats", &file]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((stats["values_truncated"].as_u64(), stats["edges_completed"].as_u64()), (Some(1), Some(1)));
}

/// An OTLP/JSON document whose client resource is named by arrays `depth` deep.
fn nested_json_document(depth: usize) -> String {
    let value =
        format!("{}{{\"stringValue\":\"x\"}}{}", "{\"arrayValue\":{\"values\":[".repeat(depth), "]}}".repeat(depth));
    let id = |n: u8| format!("{:016x}", n);
    format!(
        r#"{{"resourceSpans":[
          {{"resource":{{"attributes":[{{"key":"service.name","value":{value}}}]}},
            "scopeSpans":[{{"spans":[{{"traceId":"{t}","spanId":"{c}","name":"op","kind":3,"startTimeUnixNano":"{t0}","endTimeUnixNano":"{t1}"}}]}}]}},
          {{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"b"}}}}]}},
            "scopeSpans":[{{"spans":[{{"traceId":"{t}","spanId":"{s}","parentSpanId":"{c}","name":"op","kind":2,"startTimeUnixNano":"{t0}","endTimeUnixNano":"{t1}"}}]}}]}}]}}"#,
        t = "ab".repeat(16),
        c = id(1),
        s = id(2),
        t0 = T0,
        t1 = T0 + SEC,
    )
}

#[test]
fn the_json_reader_cuts_what_it_can_read_and_refuses_deeper_with_a_clear_error() {
    // 40 levels fit the JSON parser's own limit (three JSON levels per value
    // level), so the value reaches the engine and is cut there.
    let file = scratch("forty.json", nested_json_document(40).as_bytes());
    let out = servicemap(&["stats", &file]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((stats["values_truncated"].as_u64(), stats["edges_completed"].as_u64()), (Some(1), Some(1)));

    let file = scratch("deep.json", nested_json_document(DEEP).as_bytes());
    let out = servicemap(&["metrics", &file]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&file) && err.contains("recursion limit exceeded"), "{err}");
}

#[test]
fn deep_configuration_and_edge_lines_are_errors() {
    let deep = format!("{{\"catalog\":{}}}", nested_json(DEEP, "1"));
    let err = servicemap::Config::from_json(deep.as_bytes()).unwrap_err().to_string();
    assert!(err.contains("recursion limit exceeded"), "{err}");
    let e = engine("{}");
    let line = format!("{{\"client\":\"a\",\"server\":{}}}\n", nested_json(DEEP, "\"b\""));
    let err = e.observe_edges(line.as_bytes(), T0).unwrap_err().to_string();
    assert!(err.contains("recursion limit exceeded"), "{err}");
    assert_eq!(e.graph_view(T0).unwrap().edges.len(), 0);
}

/// A flood of client spans from `n` made-up services, each in its own trace,
/// that no server answers: fed in batches of 1,000 at one second apart,
/// expiring as a collector's ticker would.
fn flood(e: &servicemap::Engine, n: u64, start: u64) -> u64 {
    let mut now = start;
    for first in (0..n).step_by(1000) {
        e.consume(&junk_batch(first, 1000.min(n - first), now), now).unwrap();
        now += SEC;
        e.expire(now);
    }
    now
}

#[test]
fn a_flood_of_unpaired_names_stays_within_every_cap_and_real_edges_still_count() {
    let config = r#"{"compat":"contrib","max_series":400,"max_unpaired_series":50,"max_graph_nodes":200,
                     "max_graph_edges":150,"max_items":5000,"wait":"2s"}"#;
    let e = engine(config);
    let junk = 20_000;
    let now = flood(&e, junk, T0) + 10 * SEC;
    e.expire(now);
    let s = e.stats();
    assert_eq!(s.waiting, 0);
    // Every junk span expired into a virtual edge junk-n → unknown; the
    // inferred edges had half of max_series, the rest were refused.
    assert_eq!(s.edges_virtual, junk);
    assert_eq!(s.series_refused, junk - 200);
    // The unpaired counters had their own 50, the rest went to the overflow counter.
    assert_eq!(s.overflow.unpaired_series, junk - 50);
    // The map held at most its caps; what it no longer holds was counted.
    assert!(s.graph_nodes <= 200 && s.graph_edges <= 150, "{s:?}");
    assert_eq!(s.graph_edges + s.overflow.graph_edges, junk);
    // Each junk name became a node twice (from its resource, then from its
    // virtual edge), and at most 200 of them are held.
    assert!(s.overflow.graph_nodes >= junk - 200, "{s:?}");

    // A real pair after the flood is counted in the series and in the map.
    e.consume(&real_pair("checkout", "payment", 1, now), now).unwrap();
    let got = scrape(&e, now);
    let key = "traces_service_graph_request_total{client=\"checkout\",failed=\"false\",server=\"payment\"}";
    assert_eq!(got.get(key), Some(&1.0));
    let view = e.graph_view(now).unwrap();
    assert!(view.edges.iter().any(|x| x.client == "checkout" && x.server == "payment"));
    // The overflow is visible to a scraper.
    assert_eq!(
        got.get("traces_service_graph_unpaired_spans_total{otel_metric_overflow=\"true\"}"),
        Some(&((junk - 50) as f64))
    );
    assert_eq!(got.get("servicemap_overflow_total{option=\"max_series\"}"), Some(&((junk - 200) as f64)));
    assert_eq!(
        got.get("servicemap_overflow_total{option=\"max_graph_edges\"}"),
        Some(&(e.stats().overflow.graph_edges as f64))
    );
}

#[test]
fn a_flood_of_posted_edges_counts_against_the_map_caps() {
    let e = engine(r#"{"max_graph_nodes":100,"max_graph_edges":50}"#);
    let lines: String =
        (0..5_000).map(|i| format!("{{\"client\":\"lb\",\"server\":\"s{i}\",\"count\":1}}\n")).collect();
    assert_eq!(e.observe_edges(lines.as_bytes(), T0).unwrap(), 5_000);
    let s = e.stats();
    assert!(s.graph_edges <= 50 && s.graph_nodes <= 100, "{s:?}");
    assert_eq!(s.graph_edges + s.overflow.graph_edges, 5_000);
    // An edge with steady traffic outlives a flood of edges seen once.
    let steady = "{\"client\":\"web\",\"server\":\"api\",\"count\":100}\n";
    e.observe_edges(steady.as_bytes(), T0 + SEC).unwrap();
    e.observe_edges(lines.as_bytes(), T0 + 2 * SEC).unwrap();
    let view = e.graph_view(T0 + 2 * SEC).unwrap();
    assert!(view.edges.iter().any(|x| x.client == "web" && x.server == "api"));
}

#[test]
fn the_c_abi_says_how_many_spans_a_full_store_dropped() {
    let config = br#"{"max_items":1}"#;
    let data = junk_batch(0, 3, T0);
    unsafe {
        let mut engine = std::ptr::null_mut();
        assert_eq!(sm_engine_new(config.as_ptr(), config.len(), &mut engine, std::ptr::null_mut()), sm_status::Ok);
        let mut dropped = u64::MAX;
        let status =
            sm_engine_consume_counted(engine, data.as_ptr(), data.len(), T0, &mut dropped, std::ptr::null_mut());
        assert_eq!((status, dropped), (sm_status::Ok, 2));
        // NULL is allowed for the count; a rejected batch reports 0.
        assert_eq!(
            sm_engine_consume_counted(
                engine,
                data.as_ptr(),
                data.len(),
                T0,
                std::ptr::null_mut(),
                std::ptr::null_mut()
            ),
            sm_status::Ok
        );
        let garbage = [0xffu8; 7];
        let mut msg = sm_buf { ptr: std::ptr::null_mut(), len: 0 };
        let status = sm_engine_consume_counted(engine, garbage.as_ptr(), garbage.len(), T0, &mut dropped, &mut msg);
        assert_eq!((status, dropped), (sm_status::InvalidInput, 0));
        sm_buf_free(msg);
        sm_engine_free(engine);
    }
}
