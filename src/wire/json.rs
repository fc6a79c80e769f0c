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

mod convert;

pub use convert::traces_from_value;

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

#[cfg(test)]
mod tests;
