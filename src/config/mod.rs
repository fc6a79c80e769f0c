//! Engine configuration: two presets that reproduce the peers' defaults and
//! semantics, and every option settable on its own on top of a preset.
//!
//! The configuration arrives as JSON (from the C ABI, the collector shim or a
//! CLI file). Parsing is done key by key rather than through a derived
//! deserializer so that every error names the key it is about.

pub mod catalog;
pub mod filter;
pub mod options;

use crate::error::Error;
use serde_json::{Map, Value};
use std::time::Duration;

/// Which peer's behaviour to reproduce where Tempo and contrib disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compat {
    /// Grafana Tempo's metrics-generator `service-graphs` processor (the default).
    Tempo,
    /// The OpenTelemetry Collector contrib `servicegraph` connector.
    Contrib,
}

/// How a database node is named when a client span carries a database attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseNaming {
    /// `peer.service`, then `server.address`, then `network.peer.address[:port]`,
    /// then the database attribute's value (Tempo).
    PeerFirst,
    /// The database attribute's value (contrib).
    AttributeValue,
}

/// Which latency histograms are kept and written (Tempo's
/// `generate_native_histograms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Histograms {
    /// Classic buckets at `histogram_buckets`.
    Classic,
    /// Native buckets only; the text formats carry just the +Inf bucket, sum and count.
    Native,
    /// Both, in the same histogram.
    Both,
}

impl Histograms {
    pub fn name(self) -> &'static str {
        match self {
            Histograms::Classic => "classic",
            Histograms::Native => "native",
            Histograms::Both => "both",
        }
    }

    /// Whether native buckets are kept.
    pub fn native(self) -> bool {
        self != Histograms::Classic
    }

    /// Whether classic buckets are written.
    pub fn classic(self) -> bool {
        self != Histograms::Native
    }
}

/// Fully resolved configuration. Build it with [`Config::from_json`] or
/// [`Config::preset`].
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub compat: Compat,
    /// Extra labels, looked up in resource attributes first, then span attributes.
    pub dimensions: Vec<String>,
    /// Write dimensions as `client_<dim>`/`server_<dim>` (always on in contrib).
    pub enable_client_server_prefix: bool,
    /// Span attributes that name an uninstrumented peer (virtual node), in priority order.
    pub peer_attributes: Vec<String>,
    /// Peer attributes are also read from server/consumer spans (Tempo) or only
    /// from client/producer spans (contrib).
    pub peer_attributes_on_server_spans: bool,
    /// A root server span's virtual client takes its name from a peer attribute (Tempo)
    /// instead of always being `user` (contrib).
    pub virtual_client_from_peer: bool,
    /// Server name for an expired client span without a peer attribute. `None`
    /// means no series is written and the edge counts as expired (Tempo);
    /// contrib writes `unknown`.
    pub virtual_server_fallback: Option<String>,
    /// Attributes that mark a client/producer span as a database call, in priority order.
    pub database_name_attributes: Vec<String>,
    pub database_naming: DatabaseNaming,
    /// Classic histogram bucket upper bounds, in seconds, ascending.
    pub histogram_buckets: Vec<f64>,
    /// How long a half-built edge waits for its other side, at most [`MAX_WAIT`].
    pub wait: Duration,
    /// Maximum number of waiting half-edges; a span that finds the store full is dropped.
    pub max_items: usize,
    /// Attribute holding a sampling ratio; counts are weighted by `1/ratio`.
    pub span_multiplier_key: Option<String>,
    pub enable_messaging_system_latency_histogram: bool,
    /// Adds the `virtual_node` label (`client`/`server`) to virtual-node edges.
    pub enable_virtual_node_label: bool,
    /// Adds the `traces_service_graph_connection_info` gauge.
    pub enable_connection_info: bool,
    /// Adds a `failed="true|false"` label to every series (contrib).
    pub failed_label: bool,
    /// Count every expired edge, including those written as virtual nodes (contrib),
    /// instead of only the unmatched ones (Tempo).
    pub expired_includes_virtual: bool,
    /// Unpaired producer/consumer spans never become virtual nodes (contrib).
    pub messaging_never_virtual: bool,
    /// Pair a consumer with its producer through span links, one edge per link.
    pub span_links: bool,
    /// Remove a series after this long without an update.
    pub series_idle_timeout: Duration,
    /// Data-point timestamps are `now - offset` (contrib `metrics_timestamp_offset`).
    pub metrics_timestamp_offset: Duration,
    /// Upper bound on request series (label sets of the edge metrics); a new
    /// series beyond it is not created and the edge is counted as refused.
    pub max_series: usize,
    /// Label values longer than this many bytes are truncated (Tempo: 2048).
    pub max_label_value_length: usize,
    /// Independent store shards; spans are routed by trace ID.
    pub shards: usize,
    /// Text exposition shows a new series at zero for `initial_zero_hold`
    /// after it is created, so that every scraper's `rate()` sees its first
    /// increment (Tempo writes a 0 sample first for the same reason). One-shot
    /// renders (the CLI) turn this off.
    pub initial_zero: bool,
    /// How long a new series reads as zero; at least the scrape interval.
    pub initial_zero_hold: Duration,
    /// A batch larger than this is rejected before it is read.
    pub max_batch_bytes: usize,
    /// Keep the live service map (graph, health, queries, history).
    pub graph: bool,
    /// Sliding window for the map's rates, error rates and percentiles.
    pub graph_window: Duration,
    /// Number of slots the window is kept in (its resolution).
    pub graph_window_slots: usize,
    /// Resource attribute naming a service's owner or team.
    pub owner_attribute: String,
    /// How often a topology snapshot is kept for history and diffs.
    pub snapshot_interval: Duration,
    /// How many snapshots are kept (the oldest is dropped).
    pub history_length: usize,
    /// Nodes the live map holds at most (see [`crate::map::graph::Limits`]).
    pub max_graph_nodes: usize,
    /// Edges the live map holds at most.
    pub max_graph_edges: usize,
    /// Nodes and edges summed over every kept snapshot at most; the oldest
    /// snapshots are dropped first.
    pub max_history_entries: usize,
    /// Unpaired and dropped span counters (label sets) at most, apart from
    /// `max_series`; beyond it their counts fold into one series per metric
    /// labelled `otel_metric_overflow="true"`.
    pub max_unpaired_series: usize,
    /// Owners, tiers and SLOs that traces do not carry.
    pub catalog: catalog::Catalog,
    /// Keep the last request of each histogram bucket as its exemplar, and
    /// write them where the format carries them (OpenMetrics, OTLP).
    pub exemplars: bool,
    /// The exemplar label holding the trace ID in OpenMetrics (Tempo: `traceID`).
    pub trace_id_label_name: String,
    /// Which spans take part (Tempo's `filter_policies`); none: every span.
    pub filter_policies: Vec<filter::FilterPolicy>,
    /// Classic, native or both latency histograms.
    pub histograms: Histograms,
    /// Native buckets grow by at most this factor (> 1); it picks the schema.
    pub native_histogram_bucket_factor: f64,
    /// Populated native buckets per histogram at most (0: no limit).
    pub native_histogram_max_bucket_number: usize,
    /// A native histogram over its budget starts again from zero if it is
    /// this old, else halves its resolution (0: never resets).
    pub native_histogram_min_reset_duration: Duration,
    /// contrib's `exponential_histogram_max_size`: when not 0, the latency
    /// histograms are exponential only, built as contrib builds them (scale
    /// 20 and down, the populated keys spanning fewer than this many).
    pub exponential_histogram_max_size: usize,
}

const TEMPO_BUCKETS: [f64; 8] = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8];
const CONTRIB_BUCKETS: [f64; 16] =
    [0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.4, 2.0, 5.0, 10.0, 15.0];

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl Config {
    /// The defaults of one peer.
    pub fn preset(compat: Compat) -> Config {
        let tempo = Config {
            compat: Compat::Tempo,
            dimensions: vec![],
            enable_client_server_prefix: false,
            peer_attributes: strings(&["peer.service", "db.name", "db.system", "db.system.name"]),
            peer_attributes_on_server_spans: true,
            virtual_client_from_peer: true,
            virtual_server_fallback: None,
            database_name_attributes: strings(&["db.namespace", "db.name", "db.system", "db.system.name"]),
            database_naming: DatabaseNaming::PeerFirst,
            histogram_buckets: TEMPO_BUCKETS.to_vec(),
            wait: Duration::from_secs(10),
            max_items: 10_000,
            span_multiplier_key: None,
            enable_messaging_system_latency_histogram: false,
            enable_virtual_node_label: false,
            enable_connection_info: false,
            failed_label: false,
            expired_includes_virtual: false,
            messaging_never_virtual: false,
            span_links: false,
            series_idle_timeout: Duration::from_secs(15 * 60),
            metrics_timestamp_offset: Duration::ZERO,
            max_series: 100_000,
            max_label_value_length: 2048,
            shards: 16,
            initial_zero: true,
            initial_zero_hold: Duration::from_secs(60),
            max_batch_bytes: 64 << 20,
            graph: true,
            graph_window: Duration::from_secs(300),
            graph_window_slots: 10,
            owner_attribute: "service.owner".to_string(),
            snapshot_interval: Duration::from_secs(60),
            history_length: 1440,
            max_graph_nodes: 10_000,
            max_graph_edges: 50_000,
            max_history_entries: 1_000_000,
            max_unpaired_series: 1_000,
            catalog: catalog::Catalog::default(),
            exemplars: true,
            trace_id_label_name: "traceID".to_string(),
            filter_policies: Vec::new(),
            histograms: Histograms::Classic,
            native_histogram_bucket_factor: 1.1,
            native_histogram_max_bucket_number: 100,
            native_histogram_min_reset_duration: Duration::from_secs(15 * 60),
            exponential_histogram_max_size: 0,
        };
        match compat {
            Compat::Tempo => tempo,
            // Where contrib's connector differs from Tempo; the rest (the
            // engine's own options) is the same in both.
            Compat::Contrib => Config {
                compat,
                enable_client_server_prefix: true,
                peer_attributes: strings(&["peer.service", "db.name", "db.namespace", "db.system", "db.system.name"]),
                peer_attributes_on_server_spans: false,
                virtual_client_from_peer: false,
                virtual_server_fallback: Some("unknown".to_string()),
                database_name_attributes: strings(&["db.name", "db.namespace"]),
                database_naming: DatabaseNaming::AttributeValue,
                histogram_buckets: CONTRIB_BUCKETS.to_vec(),
                wait: Duration::from_secs(2),
                max_items: 1000,
                failed_label: true,
                expired_includes_virtual: true,
                messaging_never_virtual: true,
                span_links: true,
                ..tempo
            },
        }
    }

    /// Parses a JSON object. `compat` picks the preset; every other key
    /// overrides one option. Unknown keys are errors. Empty input means the
    /// Tempo preset.
    pub fn from_json(text: &[u8]) -> Result<Config, Error> {
        if text.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(Config::preset(Compat::Tempo));
        }
        let value: Value =
            serde_json::from_slice(text).map_err(|e| Error::config("(document)", format!("not valid JSON: {e}")))?;
        let Value::Object(map) = value else {
            return Err(Error::config("(document)", "expected a JSON object"));
        };
        Config::from_map(&map)
    }

    fn from_map(map: &Map<String, Value>) -> Result<Config, Error> {
        let compat = match map.get("compat") {
            None | Some(Value::Null) => Compat::Tempo,
            Some(Value::String(s)) if s == "tempo" => Compat::Tempo,
            Some(Value::String(s)) if s == "contrib" => Compat::Contrib,
            Some(other) => {
                return Err(Error::config("compat", format!("expected \"tempo\" or \"contrib\", got {other}")));
            }
        };
        let mut c = Config::preset(compat);
        for (key, v) in map {
            let spec = options::find(key).ok_or_else(|| Error::config(key.as_str(), "unknown key"))?;
            spec.set(&mut c, key, v)?;
        }
        c.check_dimension_labels()?;
        c.check_exponential(map)?;
        Ok(c)
    }

    /// contrib's exponential histograms replace the classic ones: as
    /// contrib's own validation says, they do not go with explicit bounds,
    /// and here not with a `histograms` mode that keeps classic buckets
    /// either. Set alone, they turn the native buckets on.
    fn check_exponential(&mut self, map: &Map<String, Value>) -> Result<(), Error> {
        const KEY: &str = "exponential_histogram_max_size";
        if self.exponential_histogram_max_size == 0 {
            return Ok(());
        }
        for other in ["histogram_buckets", "latency_histogram_buckets"] {
            if map.contains_key(other) {
                return Err(Error::config(KEY, format!("use either `{other}` or `{KEY}`")));
            }
        }
        for other in ["histograms", "generate_native_histograms"] {
            if map.contains_key(other) && self.histograms != Histograms::Native {
                let mode = self.histograms.name();
                return Err(Error::config(
                    KEY,
                    format!("exponential histograms only; `{other}: {mode}` keeps classic ones"),
                ));
            }
        }
        self.histograms = Histograms::Native;
        Ok(())
    }

    /// The dimensions' label names as written in OTLP, before Prometheus'
    /// sanitising: `client_<dim>` and `server_<dim>` with the prefix, else
    /// the dimension itself.
    pub fn dimension_labels(&self) -> Vec<String> {
        let mut out = Vec::new();
        for d in &self.dimensions {
            if self.enable_client_server_prefix {
                out.push(format!("client_{d}"));
                out.push(format!("server_{d}"));
            } else {
                out.push(d.clone());
            }
        }
        out
    }

    /// Every dimension must become a label of its own: one named as a label
    /// servicemap writes (`client`, `le`, ...), one starting with `__`
    /// (reserved by Prometheus), or two that sanitise to the same name would
    /// write a label twice on a line, which Prometheus refuses, and would let
    /// a span attribute stand in for `client` or `server`.
    fn check_dimension_labels(&self) -> Result<(), Error> {
        const WRITTEN: [&str; 7] =
            ["client", "server", "connection_type", "failed", "virtual_node", "le", "otel_metric_overflow"];
        let mut seen: Vec<(String, &str)> = Vec::new();
        let per_dimension = if self.enable_client_server_prefix { 2 } else { 1 };
        let names = self.dimension_labels();
        for (i, d) in self.dimensions.iter().enumerate() {
            let key = format!("dimensions[{i}]");
            for label in names[i * per_dimension..(i + 1) * per_dimension].iter().map(|n| sanitize_label(n)) {
                if WRITTEN.contains(&label.as_str()) {
                    return Err(Error::config(
                        key.as_str(),
                        format!("{d:?} would be the label `{label}`, which servicemap writes itself"),
                    ));
                }
                if label.starts_with("__") {
                    return Err(Error::config(
                        key.as_str(),
                        format!("{d:?} would be the label `{label}`: names starting with `__` are reserved"),
                    ));
                }
                if let Some((_, other)) = seen.iter().find(|(l, _)| *l == label) {
                    return Err(Error::config(
                        key.as_str(),
                        format!("{d:?} would be the label `{label}`, as {other:?} is already"),
                    ));
                }
                seen.push((label, d));
            }
        }
        Ok(())
    }
}

fn optional_string(key: &str, v: &Value) -> Result<Option<String>, Error> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(Error::config(key, format!("expected a string or null, got {v}"))),
    }
}

fn non_empty_string(key: &str, v: &Value) -> Result<String, Error> {
    v.as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| Error::config(key, format!("expected a non-empty string, got {v}")))
}

fn database_naming(key: &str, v: &Value) -> Result<DatabaseNaming, Error> {
    match v.as_str() {
        Some("peer_first") | Some("tempo") => Ok(DatabaseNaming::PeerFirst),
        Some("attribute_value") | Some("contrib") => Ok(DatabaseNaming::AttributeValue),
        _ => Err(Error::config(key, "expected \"peer_first\" or \"attribute_value\"")),
    }
}

fn histograms(key: &str, v: &Value) -> Result<Histograms, Error> {
    match v.as_str() {
        Some("classic") => Ok(Histograms::Classic),
        Some("native") => Ok(Histograms::Native),
        Some("both") => Ok(Histograms::Both),
        _ => Err(Error::config(key, format!("expected \"classic\", \"native\" or \"both\", got {v}"))),
    }
}

fn bucket_factor(key: &str, v: &Value) -> Result<f64, Error> {
    match v.as_f64() {
        Some(f) if f > 1.0 && f.is_finite() => Ok(f),
        _ => Err(Error::config(key, format!("expected a number greater than 1, got {v}"))),
    }
}

fn shards(key: &str, v: &Value) -> Result<usize, Error> {
    match count(key, v, 1)? {
        n if n > 1024 => Err(Error::config(key, "must be between 1 and 1024")),
        n => Ok(n),
    }
}

fn boolean(key: &str, v: &Value) -> Result<bool, Error> {
    v.as_bool().ok_or_else(|| Error::config(key, format!("expected true or false, got {v}")))
}

fn count(key: &str, v: &Value, min: u64) -> Result<usize, Error> {
    match v.as_u64() {
        Some(n) if n >= min && n <= u32::MAX as u64 => Ok(n as usize),
        _ => Err(Error::config(key, format!("expected a whole number from {min} to {}, got {v}", u32::MAX))),
    }
}

fn string_list(key: &str, v: &Value) -> Result<Vec<String>, Error> {
    let Value::Array(items) = v else {
        return Err(Error::config(key, format!("expected a list of strings, got {v}")));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) if !s.is_empty() => Ok(s.clone()),
            _ => Err(Error::config(format!("{key}[{i}]"), format!("expected a non-empty string, got {item}"))),
        })
        .collect()
}

/// Bucket bounds: numbers are seconds, strings are durations ("100ms").
fn buckets(key: &str, v: &Value) -> Result<Vec<f64>, Error> {
    let Value::Array(items) = v else {
        return Err(Error::config(key, format!("expected a list of bucket bounds, got {v}")));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let k = format!("{key}[{i}]");
        let b = match item {
            Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
            Value::String(_) => duration(&k, item)?.as_secs_f64(),
            _ => f64::NAN,
        };
        if !b.is_finite() || b <= 0.0 {
            return Err(Error::config(k, format!("expected a positive number of seconds or a duration, got {item}")));
        }
        if let Some(&prev) = out.last() {
            if b <= prev {
                return Err(Error::config(k, "bucket bounds must be strictly increasing"));
            }
        }
        out.push(b);
    }
    if out.is_empty() {
        return Err(Error::config(key, "at least one bucket bound is needed"));
    }
    Ok(out)
}

/// The longest `wait`: the pairing store counts expiry times in 32 bits of
/// milliseconds, which hold 49.7 days, and keeps half of that as room.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 24 * 3600);

fn positive_duration(key: &str, v: &Value) -> Result<Duration, Error> {
    let d = duration(key, v)?;
    if d.is_zero() {
        return Err(Error::config(key, "must be greater than zero"));
    }
    Ok(d)
}

/// A duration: a number of seconds, or a Go-style string such as "10s",
/// "1m30s", "250ms", "2h".
pub(crate) fn duration(key: &str, v: &Value) -> Result<Duration, Error> {
    let bad = || Error::config(key, format!("expected a duration such as \"10s\" or a number of seconds, got {v}"));
    match v {
        Value::Number(n) => {
            let s = n.as_f64().ok_or_else(bad)?;
            if !(0.0..=1e9).contains(&s) {
                return Err(bad());
            }
            Ok(Duration::from_secs_f64(s))
        }
        Value::String(s) => parse_duration(s).ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// Parses Go's `time.ParseDuration` syntax for non-negative values.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * scale;
    }
    if !total.is_finite() || total > 1e9 {
        return None;
    }
    Some(Duration::from_secs_f64(total))
}

/// Prometheus label name rules: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn sanitize_label(name: &str) -> String {
    let mut s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

#[cfg(test)]
mod tests;
