//! Edges observed outside traces: the JSON lines `POST /api/edges` and
//! `sm_engine_observe_edges` accept, one edge with its counts per line.

use super::Observation;
use crate::error::Error;
use crate::series::ConnType;
use serde_json::Value;

/// An edge observed outside traces, parsed from one JSON line.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeLine {
    pub client: String,
    pub server: String,
    pub count: f64,
    pub errors: f64,
    pub latency_s: f64,
    pub conn: ConnType,
    pub protocol: String,
}

impl EdgeLine {
    pub fn observation(&self) -> Observation<'_> {
        Observation {
            client: &self.client,
            server: &self.server,
            conn: self.conn,
            protocol: &self.protocol,
            count: self.count,
            errors: self.errors,
            latency_s: self.latency_s,
            virtual_client: false,
            virtual_server: false,
        }
    }
}

/// Parses JSON lines of edges: `client` and `server` (required), `count`
/// (default 1), `errors` (default 0), `latency_seconds` (or `latency` as a
/// number of seconds or a duration string), `connection_type`, `protocol`.
/// Blank lines are skipped; any bad line fails the whole input, naming it.
pub fn parse_edge_lines(text: &[u8]) -> Result<Vec<EdgeLine>, Error> {
    let text = std::str::from_utf8(text).map_err(|e| Error::Argument(format!("edge lines are not UTF-8: {e}")))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad = |m: String| Error::Argument(format!("edge line {}: {m}", n + 1));
        let v: Value = serde_json::from_str(line).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let name = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .ok_or_else(|| bad(format!("`{k}` must be a non-empty string")))
        };
        let number = |k: &str, default: f64| match v.get(k) {
            None | Some(Value::Null) => Ok(default),
            Some(x) => x
                .as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .ok_or_else(|| bad(format!("`{k}` must be a number >= 0"))),
        };
        let latency_s = match v.get("latency_seconds").or_else(|| v.get("latency")) {
            None | Some(Value::Null) => 0.0,
            Some(x) => crate::config::duration("latency", x).map_err(|e| bad(e.to_string()))?.as_secs_f64(),
        };
        let conn = match v.get("connection_type").and_then(Value::as_str).unwrap_or("") {
            "" => ConnType::Plain,
            "messaging_system" => ConnType::MessagingSystem,
            "database" => ConnType::Database,
            "virtual_node" => ConnType::VirtualNode,
            other => return Err(bad(format!("unknown connection_type {other:?}"))),
        };
        let count = number("count", 1.0)?;
        let errors = number("errors", 0.0)?;
        if errors > count {
            return Err(bad("`errors` is larger than `count`".into()));
        }
        out.push(EdgeLine {
            client: name("client")?,
            server: name("server")?,
            count,
            errors,
            latency_s,
            conn,
            protocol: v.get("protocol").and_then(Value::as_str).unwrap_or("").to_string(),
        });
    }
    Ok(out)
}
