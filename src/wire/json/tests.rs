use super::*;
use serde_json::json;

fn doc(spans: Value) -> Value {
    json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
        "scopeSpans": [{"scope": {"name": "lib", "version": "1"}, "spans": spans}]
    }]})
}

fn one_span(span: Value) -> Result<Span, ConvertError> {
    traces_from_value(&doc(json!([span]))).map(|r| r.resource_spans[0].scope_spans[0].spans[0].clone())
}

const TRACE_HEX: &str = "5b8efff798038103d269b633813fc60c";
const SPAN_HEX: &str = "eee19b7ec3c1b174";
const TRACE: [u8; 16] =
    [0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c];
const SPAN: [u8; 8] = [0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74];

fn base(extra: Value) -> Value {
    let mut s = json!({"traceId": TRACE_HEX, "spanId": SPAN_HEX});
    s.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    s
}

#[test]
fn full_span_in_camel_case() {
    let s = one_span(base(json!({
        "parentSpanId": "0102030405060708",
        "traceState": "ot=th:8",
        "flags": 257,
        "name": "GET /",
        "kind": 3,
        "startTimeUnixNano": "1544712660000000000",
        "endTimeUnixNano": "1544712661000000000",
        "attributes": [
            {"key": "s", "value": {"stringValue": "v"}},
            {"key": "i", "value": {"intValue": "-5"}},
            {"key": "d", "value": {"doubleValue": 0.5}},
            {"key": "b", "value": {"boolValue": true}},
            {"key": "y", "value": {"bytesValue": "AQID"}},
            {"key": "a", "value": {"arrayValue": {"values": [{"stringValue": "x"}, {"intValue": 7}]}}},
            {"key": "k", "value": {"kvlistValue": {"values": [{"key": "n", "value": {"boolValue": false}}]}}},
            {"key": "e", "value": {}},
            {"key": "none"}
        ],
        "droppedAttributesCount": 2,
        "events": [{"timeUnixNano": "1544712660500000000", "name": "ev", "attributes": []}],
        "droppedEventsCount": 1,
        "links": [{"traceId": TRACE_HEX, "spanId": "0000000000000009", "traceState": "x", "flags": 1}],
        "droppedLinksCount": 3,
        "status": {"code": 2, "message": "boom"}
    })))
    .unwrap();
    use any_value::Value as V;
    assert_eq!(s.trace_id, TRACE);
    assert_eq!(s.span_id, SPAN);
    assert_eq!(s.parent_span_id, [1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(s.trace_state, "ot=th:8");
    assert_eq!(s.flags, 257);
    assert_eq!(s.name, "GET /");
    assert_eq!(s.kind, span::SpanKind::Client as i32);
    assert_eq!(s.start_time_unix_nano, 1_544_712_660_000_000_000);
    assert_eq!(s.end_time_unix_nano, 1_544_712_661_000_000_000);
    let vals: Vec<_> = s.attributes.iter().map(|kv| (kv.key.as_str(), kv.value.clone())).collect();
    let v = |x: V| Some(AnyValue { value: Some(x) });
    assert_eq!(vals[0], ("s", v(V::StringValue("v".into()))));
    assert_eq!(vals[1], ("i", v(V::IntValue(-5))));
    assert_eq!(vals[2], ("d", v(V::DoubleValue(0.5))));
    assert_eq!(vals[3], ("b", v(V::BoolValue(true))));
    assert_eq!(vals[4], ("y", v(V::BytesValue(vec![1, 2, 3]))));
    assert_eq!(
        vals[5],
        (
            "a",
            v(V::ArrayValue(ArrayValue {
                values: vec![
                    AnyValue { value: Some(V::StringValue("x".into())) },
                    AnyValue { value: Some(V::IntValue(7)) }
                ]
            }))
        )
    );
    assert_eq!(
        vals[6],
        (
            "k",
            v(V::KvlistValue(KeyValueList {
                values: vec![KeyValue {
                    key: "n".into(),
                    value: Some(AnyValue { value: Some(V::BoolValue(false)) }),
                    ..Default::default()
                }]
            }))
        )
    );
    assert_eq!(vals[7], ("e", Some(AnyValue { value: None })));
    assert_eq!(vals[8], ("none", None));
    assert_eq!(s.dropped_attributes_count, 2);
    assert_eq!(s.events.len(), 1);
    assert_eq!(s.events[0].time_unix_nano, 1_544_712_660_500_000_000);
    assert_eq!(s.events[0].name, "ev");
    assert_eq!(s.dropped_events_count, 1);
    assert_eq!(s.links.len(), 1);
    assert_eq!(s.links[0].trace_id, TRACE);
    assert_eq!(s.links[0].span_id, [0, 0, 0, 0, 0, 0, 0, 9]);
    assert_eq!((s.links[0].trace_state.as_str(), s.links[0].flags), ("x", 1));
    assert_eq!(s.dropped_links_count, 3);
    assert_eq!(s.status, Some(Status { code: 2, message: "boom".into() }));
}

#[test]
fn snake_case_names_enum_names_and_numbers() {
    let s = one_span(json!({
        "trace_id": TRACE_HEX,
        "span_id": SPAN_HEX,
        "parent_span_id": "",
        "kind": "SPAN_KIND_PRODUCER",
        "start_time_unix_nano": 1_544_712_660_000_000_000u64,
        "end_time_unix_nano": 1_544_712_661_000_000_000u64,
        "attributes": [{"key": "i", "value": {"int_value": 12}}, {"key": "d", "value": {"double_value": "NaN"}}],
        "status": {"code": "STATUS_CODE_ERROR"}
    }))
    .unwrap();
    assert_eq!(s.trace_id, TRACE);
    assert!(s.parent_span_id.is_empty());
    assert_eq!(s.kind, span::SpanKind::Producer as i32);
    assert_eq!(s.end_time_unix_nano, 1_544_712_661_000_000_000);
    assert_eq!(s.attributes[0].value, Some(AnyValue { value: Some(any_value::Value::IntValue(12)) }));
    match s.attributes[1].value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::DoubleValue(d)) => assert!(d.is_nan()),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.status.unwrap().code, status::StatusCode::Error as i32);
}

#[test]
fn base64_ids_as_in_protobuf_json() {
    // 24 base64 characters carry 16 bytes, 12 carry 8.
    let s = one_span(json!({"traceId": "W47/95gDgQPSabYzgT/GDA==", "spanId": "7uGbfsPBsXQ=", "kind": 2})).unwrap();
    assert_eq!(s.trace_id, TRACE);
    assert_eq!(s.span_id, SPAN);
    let s = one_span(json!({"traceId": "W47_95gDgQPSabYzgT_GDA", "spanId": "7uGbfsPBsXQ"})).unwrap();
    assert_eq!((s.trace_id, s.span_id), (TRACE.to_vec(), SPAN.to_vec()));
    // Upper-case hex is hex.
    let s = one_span(json!({"traceId": TRACE_HEX.to_uppercase(), "spanId": SPAN_HEX})).unwrap();
    assert_eq!(s.trace_id, TRACE);
}

#[test]
fn legacy_and_tempo_container_names() {
    let d = json!({"batches": [{
        "resource": {"attributes": []},
        "instrumentationLibrarySpans": [{"instrumentationLibrary": {"name": "old"}, "spans": [
            {"traceId": TRACE_HEX, "spanId": SPAN_HEX}
        ]}]
    }]});
    let r = traces_from_value(&d).unwrap();
    assert_eq!(r.resource_spans[0].scope_spans[0].scope.as_ref().unwrap().name, "old");
    assert_eq!(r.resource_spans[0].scope_spans[0].spans.len(), 1);
}

#[test]
fn conversion_errors_name_the_path() {
    let e = traces_from_value(&doc(json!([{"traceId": TRACE_HEX, "spanId": SPAN_HEX},
        {"traceId": "abc", "spanId": SPAN_HEX}])))
    .unwrap_err();
    assert_eq!(e.path, "resourceSpans[0].scopeSpans[0].spans[1].traceId");
    assert_eq!(e.message, "expected 16 bytes as 32 hex digits (or base64), got \"abc\"");

    let e = one_span(json!({"traceId": TRACE_HEX})).unwrap_err();
    assert_eq!(e.path, "resourceSpans[0].scopeSpans[0].spans[0].spanId");
    let e = one_span(json!({"traceId": "", "spanId": SPAN_HEX})).unwrap_err();
    assert_eq!(e.path, "resourceSpans[0].scopeSpans[0].spans[0].traceId");
    let e = one_span(base(json!({"kind": "SPAN_KIND_SIDEWAYS"}))).unwrap_err();
    assert_eq!(e.path, "resourceSpans[0].scopeSpans[0].spans[0].kind");
    assert_eq!(e.message, "expected a span kind (a number or a name), got \"SPAN_KIND_SIDEWAYS\"");
    let e = one_span(base(json!({"endTimeUnixNano": "soon"}))).unwrap_err();
    assert_eq!(e.path, "resourceSpans[0].scopeSpans[0].spans[0].endTimeUnixNano");
    let e = one_span(base(json!({"attributes": [{"key": "k", "value": {"intValue": "1.5"}}]}))).unwrap_err();
    assert_eq!(e.path, "resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value.intValue");
    let e = one_span(base(json!({"parent_span_id": "0102"}))).unwrap_err();
    assert_eq!(e.path, "resourceSpans[0].scopeSpans[0].spans[0].parent_span_id");
    let e = traces_from_value(&json!({"resourceSpans": {}})).unwrap_err();
    assert_eq!((e.path.as_str(), e.message.as_str()), ("resourceSpans", "expected an array, got an object"));
    let e = traces_from_value(&json!([1])).unwrap_err();
    assert_eq!(e.to_string(), "at the top level: expected an object, got an array");
    let e = traces_from_value(&json!({"resourceMetrics": []})).unwrap_err();
    assert_eq!(e.message, "this is an OTLP metrics document, not traces");
}

#[test]
fn unknown_fields_and_nulls_are_ignored() {
    let r = traces_from_value(&json!({"resourceSpans": null, "extra": 1})).unwrap();
    assert!(r.resource_spans.is_empty());
    let s = one_span(base(json!({"futureField": {"x": 1}, "status": null, "kind": null}))).unwrap();
    assert_eq!((s.kind, s.status), (0, None));
}

fn collect(input: &str, layout: Layout) -> Vec<Result<usize, String>> {
    batches(input.as_bytes(), layout).map(|r| r.map(|b| b.resource_spans.len()).map_err(|e| e.to_string())).collect()
}

fn line(spans: usize) -> String {
    let rs = json!({"resource": {}, "scopeSpans": []});
    json!({"resourceSpans": vec![rs; spans]}).to_string()
}

#[test]
fn layouts() {
    // One pretty-printed document.
    let pretty = serde_json::to_string_pretty(&serde_json::from_str::<Value>(&line(2)).unwrap()).unwrap();
    assert_eq!(collect(&pretty, Layout::Document), vec![Ok(2)]);
    assert_eq!(collect(&pretty, Layout::Detect), vec![Ok(2)]);
    // JSON lines, with a blank line and CRLF endings.
    let jsonl = format!("{}\r\n\r\n{}\n{}", line(1), line(2), line(3));
    assert_eq!(collect(&jsonl, Layout::Lines), vec![Ok(1), Ok(2), Ok(3)]);
    assert_eq!(collect(&jsonl, Layout::Detect), vec![Ok(1), Ok(2), Ok(3)]);
    // Pretty documents one after another.
    let stream = format!("{pretty}\n{pretty}\n");
    assert_eq!(collect(&stream, Layout::Detect), vec![Ok(2), Ok(2)]);
    // Empty input: no batches.
    assert_eq!(collect(" \n", Layout::Detect), vec![]);
    assert_eq!(collect("", Layout::Lines), vec![]);
    // A document with trailing data is an error when one document is expected.
    let e = collect(&format!("{}\n{}", line(1), line(1)), Layout::Document);
    let at = line(1).len() + 1;
    assert_eq!(
        e,
        vec![Err(format!("line 2, column 1, byte {at}: unexpected data after the end of the JSON document"))]
    );
}

#[test]
fn json_lines_errors_name_the_line() {
    let input = format!("{}\n{}\n{{\"resourceSpans\": [\n{}\n", line(1), line(1), line(1));
    let got = collect(&input, Layout::Lines);
    assert_eq!(got.len(), 3);
    assert_eq!(got[..2], [Ok(1), Ok(1)]);
    let e = batches(input.as_bytes(), Layout::Lines).nth(2).unwrap().unwrap_err();
    assert_eq!(e.line, Some(3));
    assert_eq!(e.offset, Some(2 * (line(1).len() + 1) + e.column.unwrap() - 1));
    assert!(e.message.starts_with("invalid JSON: EOF while parsing"), "{}", e.message);
    // Detection switches to lines after a one-line first document.
    let e = batches(input.as_bytes(), Layout::Detect).find_map(Result::err).unwrap();
    assert_eq!(e.line, Some(3));
    // A conversion error names the line and the path.
    let bad = format!("{}\n{{\"resourceSpans\":[{{\"scopeSpans\":[{{\"spans\":[{{\"traceId\":1}}]}}]}}]}}\n", line(1));
    let e = batches(bad.as_bytes(), Layout::Detect).find_map(Result::err).unwrap();
    assert_eq!(
        e.to_string(),
        "line 2, at resourceSpans[0].scopeSpans[0].spans[0].traceId: expected a hex string, got a number"
    );
}

#[test]
fn document_syntax_error_has_line_column_and_offset() {
    let input = "{\n  \"resourceSpans\": [\n    {\"resource\": }\n  ]\n}\n";
    let e = parse_document(input.as_bytes()).unwrap_err();
    assert_eq!(e.line, Some(3));
    assert_eq!(e.column, Some(18));
    assert_eq!(&input[e.offset.unwrap()..e.offset.unwrap() + 1], "}");
    assert_eq!(e.path, None);
}

#[test]
fn converted_batch_is_read_by_the_engine() {
    use prost::Message;
    let d = doc(json!([
        {"traceId": TRACE_HEX, "spanId": SPAN_HEX, "kind": "SPAN_KIND_CLIENT",
         "startTimeUnixNano": "1000000000", "endTimeUnixNano": "3000000000"}
    ]));
    let mut server = d.clone();
    server["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"] = json!("db");
    server["resourceSpans"][0]["scopeSpans"][0]["spans"][0] = json!({
        "traceId": TRACE_HEX, "spanId": "0000000000000002", "parentSpanId": SPAN_HEX, "kind": 2,
        "startTimeUnixNano": "1500000000", "endTimeUnixNano": "2500000000"
    });
    let config = crate::Config::from_json(br#"{"initial_zero":false}"#).unwrap();
    let engine = crate::Engine::new(config);
    for d in [d, server] {
        let bytes = traces_from_value(&d).unwrap().encode_to_vec();
        engine.consume(&bytes, 3_000_000_000).unwrap();
    }
    let text = String::from_utf8(engine.render(crate::Format::Prometheus, 3_000_000_000)).unwrap();
    assert!(text.contains("traces_service_graph_request_total{client=\"svc\",server=\"db\"} 1"), "{text}");
}
