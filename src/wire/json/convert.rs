//! One OTLP/JSON document, already parsed by serde_json, turned into the
//! protobuf messages: each field under its lowerCamelCase or snake_case name,
//! IDs in hex or base64, integers as strings or numbers, enums by number or
//! name. An error names the JSON path of the value it could not convert.

use super::*;

/// Converts one parsed OTLP/JSON traces document.
pub fn traces_from_value(doc: &Value) -> Result<ExportTraceServiceRequest, ConvertError> {
    let root = At::ROOT;
    let m = object(doc, &root)?;
    let Some((k, list)) = field(m, &["resourceSpans", "resource_spans", "batches"]) else {
        for (key, what) in [("resourceMetrics", "metrics"), ("resourceLogs", "logs"), ("resourceProfiles", "profiles")]
        {
            if m.contains_key(key) {
                return Err(root.err(format!("this is an OTLP {what} document, not traces")));
            }
        }
        return Ok(ExportTraceServiceRequest::default());
    };
    let at = root.key(k);
    let resource_spans: R<Vec<_>> =
        array(list, &at)?.iter().enumerate().map(|(i, v)| resource_spans(v, &at.index(i))).collect();
    Ok(ExportTraceServiceRequest { resource_spans: resource_spans? })
}

/// A position in a document, built on the stack and rendered only on error.
#[derive(Clone, Copy)]
struct At<'a> {
    parent: Option<&'a At<'a>>,
    seg: Seg<'a>,
}

#[derive(Clone, Copy)]
enum Seg<'a> {
    Root,
    Key(&'a str),
    Index(usize),
}

impl<'a> At<'a> {
    const ROOT: At<'static> = At { parent: None, seg: Seg::Root };

    fn key<'b>(&'b self, k: &'b str) -> At<'b> {
        At { parent: Some(self), seg: Seg::Key(k) }
    }

    fn index(&self, i: usize) -> At<'_> {
        At { parent: Some(self), seg: Seg::Index(i) }
    }

    fn path(&self) -> String {
        let mut segs = Vec::new();
        let mut cur = Some(self);
        while let Some(a) = cur {
            segs.push(a.seg);
            cur = a.parent;
        }
        let mut s = String::new();
        for seg in segs.iter().rev() {
            match seg {
                Seg::Root => {}
                Seg::Key(k) => {
                    if !s.is_empty() {
                        s.push('.');
                    }
                    s.push_str(k);
                }
                Seg::Index(i) => s.push_str(&format!("[{i}]")),
            }
        }
        s
    }

    fn err(&self, message: impl Into<String>) -> ConvertError {
        ConvertError { path: self.path(), message: message.into() }
    }
}

type R<T> = Result<T, ConvertError>;

/// The first of `names` present with a non-null value.
fn field<'v>(m: &'v Map<String, Value>, names: &[&'static str]) -> Option<(&'static str, &'v Value)> {
    names.iter().find_map(|&n| match m.get(n) {
        None | Some(Value::Null) => None,
        Some(v) => Some((n, v)),
    })
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn object<'v>(v: &'v Value, at: &At) -> R<&'v Map<String, Value>> {
    v.as_object().ok_or_else(|| at.err(format!("expected an object, got {}", kind_of(v))))
}

fn array<'v>(v: &'v Value, at: &At) -> R<&'v Vec<Value>> {
    v.as_array().ok_or_else(|| at.err(format!("expected an array, got {}", kind_of(v))))
}

fn string(v: &Value, at: &At) -> R<String> {
    v.as_str().map(str::to_string).ok_or_else(|| at.err(format!("expected a string, got {}", kind_of(v))))
}

fn boolean(v: &Value, at: &At) -> R<bool> {
    v.as_bool().ok_or_else(|| at.err(format!("expected true or false, got {}", kind_of(v))))
}

fn uint64(v: &Value, at: &At) -> R<u64> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    n.ok_or_else(|| at.err(format!("expected an unsigned 64-bit integer (a string or a number), got {v}")))
}

fn int64(v: &Value, at: &At) -> R<i64> {
    let n = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    n.ok_or_else(|| at.err(format!("expected a 64-bit integer (a string or a number), got {v}")))
}

fn uint32(v: &Value, at: &At) -> R<u32> {
    let n = match v {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.trim().parse::<u32>().ok(),
        _ => None,
    };
    n.ok_or_else(|| at.err(format!("expected an unsigned 32-bit integer, got {v}")))
}

fn double(v: &Value, at: &At) -> R<f64> {
    let n = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            s => s.trim().parse::<f64>().ok(),
        },
        _ => None,
    };
    n.ok_or_else(|| at.err(format!("expected a number, got {v}")))
}

/// An enum: its number, or its name as `from_name` knows it.
fn enumeration(v: &Value, at: &At, what: &str, from_name: fn(&str) -> Option<i32>) -> R<i32> {
    let n = match v {
        Value::Number(n) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
        Value::String(s) => from_name(s).or_else(|| s.parse::<i32>().ok()),
        _ => None,
    };
    n.ok_or_else(|| at.err(format!("expected a {what} (a number or a name), got {v}")))
}

/// Base64 with or without padding, standard or URL-safe alphabet, as
/// protobuf's JSON mapping allows for bytes.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let cfg = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    GeneralPurpose::new(&alphabet::STANDARD, cfg)
        .decode(s)
        .or_else(|_| GeneralPurpose::new(&alphabet::URL_SAFE, cfg).decode(s))
        .ok()
}

fn bytes(v: &Value, at: &At) -> R<Vec<u8>> {
    let s = v.as_str().ok_or_else(|| at.err(format!("expected a base64 string, got {}", kind_of(v))))?;
    base64_decode(s).ok_or_else(|| at.err(format!("expected base64, got {s:?}")))
}

fn hex_decode(s: &str) -> Vec<u8> {
    let digit = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
    s.as_bytes().chunks(2).map(|p| digit(p[0]) << 4 | digit(p[1])).collect()
}

/// A trace or span ID of `n` bytes: `2n` hex digits, or base64 of `n`
/// bytes. The lengths tell the two apart. An empty string is an empty ID.
fn id(v: &Value, at: &At, n: usize) -> R<Vec<u8>> {
    let s = v.as_str().ok_or_else(|| at.err(format!("expected a hex string, got {}", kind_of(v))))?;
    if s.is_empty() {
        return Ok(Vec::new());
    }
    if s.len() == 2 * n && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(hex_decode(s));
    }
    match base64_decode(s) {
        Some(b) if b.len() == n => Ok(b),
        _ => Err(at.err(format!("expected {n} bytes as {} hex digits (or base64), got {s:?}", 2 * n))),
    }
}

fn required_id(m: &Map<String, Value>, names: &[&'static str], at: &At, n: usize) -> R<Vec<u8>> {
    match field(m, names) {
        Some((k, v)) => {
            let at = at.key(k);
            let b = id(v, &at, n)?;
            if b.is_empty() {
                return Err(at.err(format!("must not be empty: a span needs {n} bytes as {} hex digits", 2 * n)));
            }
            Ok(b)
        }
        None => Err(at.key(names[0]).err("missing: every span needs a trace ID and a span ID")),
    }
}

fn optional_id(m: &Map<String, Value>, names: &[&'static str], at: &At, n: usize) -> R<Vec<u8>> {
    match field(m, names) {
        Some((k, v)) => id(v, &at.key(k), n),
        None => Ok(Vec::new()),
    }
}

/// Applies `f` to the field if present; `None` leaves the default.
fn opt<T>(
    m: &Map<String, Value>,
    names: &[&'static str],
    at: &At,
    f: impl FnOnce(&Value, &At) -> R<T>,
) -> R<Option<T>> {
    match field(m, names) {
        Some((k, v)) => f(v, &at.key(k)).map(Some),
        None => Ok(None),
    }
}

/// A list field converted item by item; absent means empty.
fn list<T>(m: &Map<String, Value>, names: &[&'static str], at: &At, f: impl Fn(&Value, &At) -> R<T>) -> R<Vec<T>> {
    match field(m, names) {
        Some((k, v)) => {
            let at = at.key(k);
            array(v, &at)?.iter().enumerate().map(|(i, x)| f(x, &at.index(i))).collect()
        }
        None => Ok(Vec::new()),
    }
}

fn strings(v: &Value, at: &At) -> R<String> {
    string(v, at)
}

fn resource_spans(v: &Value, at: &At) -> R<ResourceSpans> {
    let m = object(v, at)?;
    Ok(ResourceSpans {
        resource: opt(m, &["resource"], at, resource)?,
        scope_spans: list(
            m,
            &["scopeSpans", "scope_spans", "instrumentationLibrarySpans", "instrumentation_library_spans"],
            at,
            scope_spans,
        )?,
        schema_url: opt(m, &["schemaUrl", "schema_url"], at, string)?.unwrap_or_default(),
    })
}

fn resource(v: &Value, at: &At) -> R<Resource> {
    let m = object(v, at)?;
    Ok(Resource {
        attributes: list(m, &["attributes"], at, key_value)?,
        dropped_attributes_count: opt(m, &["droppedAttributesCount", "dropped_attributes_count"], at, uint32)?
            .unwrap_or(0),
        entity_refs: list(m, &["entityRefs", "entity_refs"], at, entity_ref)?,
    })
}

fn entity_ref(v: &Value, at: &At) -> R<EntityRef> {
    let m = object(v, at)?;
    Ok(EntityRef {
        schema_url: opt(m, &["schemaUrl", "schema_url"], at, string)?.unwrap_or_default(),
        r#type: opt(m, &["type"], at, string)?.unwrap_or_default(),
        id_keys: list(m, &["idKeys", "id_keys"], at, strings)?,
        description_keys: list(m, &["descriptionKeys", "description_keys"], at, strings)?,
    })
}

fn scope_spans(v: &Value, at: &At) -> R<ScopeSpans> {
    let m = object(v, at)?;
    Ok(ScopeSpans {
        scope: opt(m, &["scope", "instrumentationLibrary", "instrumentation_library"], at, scope)?,
        spans: list(m, &["spans"], at, span)?,
        schema_url: opt(m, &["schemaUrl", "schema_url"], at, string)?.unwrap_or_default(),
    })
}

fn scope(v: &Value, at: &At) -> R<InstrumentationScope> {
    let m = object(v, at)?;
    Ok(InstrumentationScope {
        name: opt(m, &["name"], at, string)?.unwrap_or_default(),
        version: opt(m, &["version"], at, string)?.unwrap_or_default(),
        attributes: list(m, &["attributes"], at, key_value)?,
        dropped_attributes_count: opt(m, &["droppedAttributesCount", "dropped_attributes_count"], at, uint32)?
            .unwrap_or(0),
    })
}

fn span_kind(v: &Value, at: &At) -> R<i32> {
    enumeration(v, at, "span kind", |s| span::SpanKind::from_str_name(s).map(|k| k as i32))
}

fn status_code(v: &Value, at: &At) -> R<i32> {
    enumeration(v, at, "status code", |s| status::StatusCode::from_str_name(s).map(|c| c as i32))
}

fn span(v: &Value, at: &At) -> R<Span> {
    let m = object(v, at)?;
    Ok(Span {
        trace_id: required_id(m, &["traceId", "trace_id"], at, 16)?,
        span_id: required_id(m, &["spanId", "span_id"], at, 8)?,
        trace_state: opt(m, &["traceState", "trace_state"], at, string)?.unwrap_or_default(),
        parent_span_id: optional_id(m, &["parentSpanId", "parent_span_id"], at, 8)?,
        flags: opt(m, &["flags"], at, uint32)?.unwrap_or(0),
        name: opt(m, &["name"], at, string)?.unwrap_or_default(),
        kind: opt(m, &["kind"], at, span_kind)?.unwrap_or(0),
        start_time_unix_nano: opt(m, &["startTimeUnixNano", "start_time_unix_nano"], at, uint64)?.unwrap_or(0),
        end_time_unix_nano: opt(m, &["endTimeUnixNano", "end_time_unix_nano"], at, uint64)?.unwrap_or(0),
        attributes: list(m, &["attributes"], at, key_value)?,
        dropped_attributes_count: opt(m, &["droppedAttributesCount", "dropped_attributes_count"], at, uint32)?
            .unwrap_or(0),
        events: list(m, &["events"], at, event)?,
        dropped_events_count: opt(m, &["droppedEventsCount", "dropped_events_count"], at, uint32)?.unwrap_or(0),
        links: list(m, &["links"], at, link)?,
        dropped_links_count: opt(m, &["droppedLinksCount", "dropped_links_count"], at, uint32)?.unwrap_or(0),
        status: opt(m, &["status"], at, span_status)?,
    })
}

fn event(v: &Value, at: &At) -> R<span::Event> {
    let m = object(v, at)?;
    Ok(span::Event {
        time_unix_nano: opt(m, &["timeUnixNano", "time_unix_nano"], at, uint64)?.unwrap_or(0),
        name: opt(m, &["name"], at, string)?.unwrap_or_default(),
        attributes: list(m, &["attributes"], at, key_value)?,
        dropped_attributes_count: opt(m, &["droppedAttributesCount", "dropped_attributes_count"], at, uint32)?
            .unwrap_or(0),
    })
}

fn link(v: &Value, at: &At) -> R<span::Link> {
    let m = object(v, at)?;
    Ok(span::Link {
        trace_id: optional_id(m, &["traceId", "trace_id"], at, 16)?,
        span_id: optional_id(m, &["spanId", "span_id"], at, 8)?,
        trace_state: opt(m, &["traceState", "trace_state"], at, string)?.unwrap_or_default(),
        attributes: list(m, &["attributes"], at, key_value)?,
        dropped_attributes_count: opt(m, &["droppedAttributesCount", "dropped_attributes_count"], at, uint32)?
            .unwrap_or(0),
        flags: opt(m, &["flags"], at, uint32)?.unwrap_or(0),
    })
}

fn span_status(v: &Value, at: &At) -> R<Status> {
    let m = object(v, at)?;
    Ok(Status {
        message: opt(m, &["message"], at, string)?.unwrap_or_default(),
        code: opt(m, &["code"], at, status_code)?.unwrap_or(0),
    })
}

fn key_value(v: &Value, at: &At) -> R<KeyValue> {
    let m = object(v, at)?;
    Ok(KeyValue {
        key: opt(m, &["key"], at, string)?.unwrap_or_default(),
        value: opt(m, &["value"], at, any_value)?,
        ..Default::default()
    })
}

fn any_value(v: &Value, at: &At) -> R<AnyValue> {
    use any_value::Value as V;
    let m = object(v, at)?;
    let pick = |names: &[&'static str]| field(m, names).map(|(k, v)| (v, at.key(k)));
    let value = if let Some((v, at)) = pick(&["stringValue", "string_value"]) {
        Some(V::StringValue(string(v, &at)?))
    } else if let Some((v, at)) = pick(&["boolValue", "bool_value"]) {
        Some(V::BoolValue(boolean(v, &at)?))
    } else if let Some((v, at)) = pick(&["intValue", "int_value"]) {
        Some(V::IntValue(int64(v, &at)?))
    } else if let Some((v, at)) = pick(&["doubleValue", "double_value"]) {
        Some(V::DoubleValue(double(v, &at)?))
    } else if let Some((v, at)) = pick(&["arrayValue", "array_value"]) {
        let m = object(v, &at)?;
        Some(V::ArrayValue(ArrayValue { values: list(m, &["values"], &at, any_value)? }))
    } else if let Some((v, at)) = pick(&["kvlistValue", "kvlist_value"]) {
        let m = object(v, &at)?;
        Some(V::KvlistValue(KeyValueList { values: list(m, &["values"], &at, key_value)? }))
    } else if let Some((v, at)) = pick(&["bytesValue", "bytes_value"]) {
        Some(V::BytesValue(bytes(v, &at)?))
    } else {
        None
    };
    Ok(AnyValue { value })
}
