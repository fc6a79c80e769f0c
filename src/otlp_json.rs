//! OTLP/JSON trace documents, turned into the protobuf messages that
//! [`crate::Engine::consume`] reads.
//!
//! The encoding is the one the OTLP specification gives for JSON: field names
//! in lowerCamelCase, trace and span IDs as hex strings, 64-bit integers as
//! decimal strings, enums as integers. Readers in the wild are more lenient
//! than writers, and so is this one: snake_case field names, IDs in base64
//! (protobuf's own JSON mapping, which Tempo's trace files use), integers as
//! numbers and enums by name are all accepted. Unknown fields are ignored, as
//! the specification asks of receivers.
//!
//! Inputs come in three layouts ([`Layout`]): one document
//! `{"resourceSpans":[...]}`; JSON lines, one document per line, as the
//! collector's file exporter writes them; or documents one after another.
//! Errors say where they happened: the line (and column and byte offset) of
//! a syntax error, and the JSON path of a value that could not be converted.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span, status};
use serde_json::{Map, Value};
use std::fmt;

/// How the documents of an input are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Exactly one document (it may span many lines).
    Document,
    /// One document per line; blank lines are skipped.
    Lines,
    /// Decide from the content: one document, one document per line, or
    /// several multi-line documents one after another.
    Detect,
}

/// Why a JSON input could not be read, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// 1-based line: of the record (JSON lines), of the document's start
    /// (several documents), or of a syntax error.
    pub line: Option<usize>,
    /// 1-based column of a syntax error.
    pub column: Option<usize>,
    /// Byte offset of a syntax error in the whole input.
    pub offset: Option<usize>,
    /// JSON path of the value that could not be converted, inside its document.
    pub path: Option<String>,
    pub message: String,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(l) = self.line {
            parts.push(format!("line {l}"));
        }
        if let Some(c) = self.column {
            parts.push(format!("column {c}"));
        }
        if let Some(o) = self.offset {
            parts.push(format!("byte {o}"));
        }
        if let Some(p) = &self.path {
            parts.push(if p.is_empty() { "at the top level".to_string() } else { format!("at {p}") });
        }
        if parts.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", parts.join(", "), self.message)
        }
    }
}

impl std::error::Error for JsonError {}

/// A value that could not be converted: its JSON path and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "at the top level: {}", self.message)
        } else {
            write!(f, "at {}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConvertError {}

/// Reads the trace batches of a JSON input, one per document, in order.
/// After the first error the iterator ends.
pub fn batches(input: &[u8], layout: Layout) -> Batches<'_> {
    Batches { input, state: State::Start(layout), line: 0 }
}

/// Parses one OTLP/JSON document (`{"resourceSpans":[...]}`) into a request.
pub fn parse_document(input: &[u8]) -> Result<ExportTraceServiceRequest, JsonError> {
    let mut it = batches(input, Layout::Document);
    match it.next() {
        Some(r) => r,
        None => Ok(ExportTraceServiceRequest::default()),
    }
}

/// Iterator over the batches of a JSON input; see [`batches`].
pub struct Batches<'a> {
    input: &'a [u8],
    state: State<'a>,
    /// Line of the last document returned.
    line: usize,
}

enum State<'a> {
    Start(Layout),
    /// One document per line. `pos` is the start of line `next_line`.
    Lines {
        pos: usize,
        next_line: usize,
    },
    /// Documents one after another, in one stream.
    Stream(serde_json::StreamDeserializer<'a, serde_json::de::SliceRead<'a>, Value>),
    Done,
}

impl<'a> Batches<'a> {
    /// The 1-based line where the document last returned starts.
    pub fn line(&self) -> usize {
        self.line
    }

    fn start(&mut self, layout: Layout) -> Option<Result<ExportTraceServiceRequest, JsonError>> {
        let input = self.input;
        let Some(first) = input.iter().position(|b| !b.is_ascii_whitespace()) else {
            self.state = State::Done;
            return None;
        };
        if layout == Layout::Lines {
            self.state = State::Lines { pos: 0, next_line: 1 };
            return self.next();
        }
        let mut stream = serde_json::Deserializer::from_slice(input).into_iter::<Value>();
        let value = match stream.next() {
            Some(Ok(v)) => v,
            Some(Err(e)) => return Some(Err(syntax_error(input, &e, 0, 0))),
            None => return None,
        };
        let end = stream.byte_offset();
        self.line = line_of(input, first);
        let rest = &input[end..];
        let more = rest.iter().position(|b| !b.is_ascii_whitespace());
        match (layout, more) {
            (_, None) => self.state = State::Done,
            (Layout::Document, Some(at)) => {
                self.state = State::Done;
                let at = end + at;
                return Some(Err(JsonError {
                    line: Some(line_of(input, at)),
                    column: Some(at - line_start(input, at) + 1),
                    offset: Some(at),
                    path: None,
                    message: "unexpected data after the end of the JSON document".into(),
                }));
            }
            (_, Some(_)) => {
                // Several documents. If the first fits on its line, the input is
                // JSON lines: read line by line, so an error names its own line.
                let one_line = !input[first..end].contains(&b'\n');
                let line_end = rest.iter().position(|&b| b == b'\n').map(|i| end + i);
                let alone = line_end.is_some_and(|le| input[end..le].iter().all(|b| b.is_ascii_whitespace()));
                if one_line && alone {
                    let next = line_end.unwrap() + 1;
                    self.state = State::Lines { pos: next, next_line: self.line + 1 };
                } else {
                    self.state = State::Stream(stream);
                }
            }
        }
        // A lone document is located by its path alone; among several, by its line too.
        Some(convert(&value, more.map(|_| self.line)))
    }
}

impl Iterator for Batches<'_> {
    type Item = Result<ExportTraceServiceRequest, JsonError>;

    fn next(&mut self) -> Option<Self::Item> {
        let input = self.input;
        let result = match &mut self.state {
            State::Done => return None,
            State::Start(layout) => {
                let layout = *layout;
                self.state = State::Done;
                self.start(layout)?
            }
            State::Lines { pos, next_line } => loop {
                if *pos >= input.len() {
                    self.state = State::Done;
                    return None;
                }
                let start = *pos;
                let end = input[start..].iter().position(|&b| b == b'\n').map(|i| start + i).unwrap_or(input.len());
                let n = *next_line;
                *pos = end + 1;
                *next_line += 1;
                let text = &input[start..end];
                if text.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                self.line = n;
                break match serde_json::from_slice::<Value>(text) {
                    Ok(v) => convert(&v, Some(n)),
                    Err(e) => Err(syntax_error(input, &e, start, n - 1)),
                };
            },
            State::Stream(stream) => {
                let before = stream.byte_offset();
                match stream.next() {
                    None => {
                        self.state = State::Done;
                        return None;
                    }
                    Some(Err(e)) => Err(syntax_error(input, &e, 0, 0)),
                    Some(Ok(v)) => {
                        let first = input[before..].iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(0);
                        self.line = line_of(input, before + first);
                        convert(&v, Some(self.line))
                    }
                }
            }
        };
        if result.is_err() {
            self.state = State::Done;
        }
        Some(result)
    }
}

fn convert(v: &Value, line: Option<usize>) -> Result<ExportTraceServiceRequest, JsonError> {
    traces_from_value(v).map_err(|e| JsonError {
        line,
        column: None,
        offset: None,
        path: Some(e.path),
        message: e.message,
    })
}

/// 1-based line of byte `at`.
fn line_of(input: &[u8], at: usize) -> usize {
    1 + input[..at.min(input.len())].iter().filter(|&&b| b == b'\n').count()
}

/// Offset of the start of the line holding byte `at`.
fn line_start(input: &[u8], at: usize) -> usize {
    input[..at.min(input.len())].iter().rposition(|&b| b == b'\n').map(|i| i + 1).unwrap_or(0)
}

/// A serde_json syntax error in a slice starting at byte `base` of `input`,
/// line `lines_before + 1`.
fn syntax_error(input: &[u8], e: &serde_json::Error, base: usize, lines_before: usize) -> JsonError {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = format!("invalid JSON: {}", text.strip_suffix(&suffix).unwrap_or(&text));
    if e.line() == 0 {
        return JsonError { line: Some(lines_before + 1), column: None, offset: None, path: None, message };
    }
    // Byte offset: start of the error's line within the slice, plus the column.
    let mut at = base;
    let mut line = 1;
    while line < e.line() {
        match input[at..].iter().position(|&b| b == b'\n') {
            Some(i) => at += i + 1,
            None => break,
        }
        line += 1;
    }
    let offset = (at + e.column().saturating_sub(1)).min(input.len());
    JsonError {
        line: Some(lines_before + e.line()),
        column: Some(e.column()),
        offset: Some(offset),
        path: None,
        message,
    }
}

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

#[cfg(test)]
mod tests {
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
        batches(input.as_bytes(), layout)
            .map(|r| r.map(|b| b.resource_spans.len()).map_err(|e| e.to_string()))
            .collect()
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
        let bad =
            format!("{}\n{{\"resourceSpans\":[{{\"scopeSpans\":[{{\"spans\":[{{\"traceId\":1}}]}}]}}]}}\n", line(1));
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
}
