//! Runs OTLP/JSON fixtures through the engine and reads the Prometheus text
//! back as a map `name{sorted labels}` → value, for exact comparisons.
#![allow(dead_code)]

use prost::Message;
use servicemap::wire::json::{self as otlp_json, Layout};
use servicemap::{Config, Engine, Format};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub type Series = BTreeMap<String, f64>;

/// What a run produced.
pub struct Outcome {
    /// The metrics after feeding everything, before expiry.
    pub before_expiry: Series,
    /// The metrics after `expire_all`.
    pub metrics: Series,
    /// The self-report after `expire_all`.
    pub stats: serde_json::Value,
}

impl Outcome {
    pub fn stat(&self, name: &str) -> u64 {
        self.stats[name].as_u64().unwrap_or_else(|| panic!("no stat {name} in {}", self.stats))
    }

    pub fn expired(&self, kind: &str) -> u64 {
        self.stats["expired_by_kind"][kind].as_u64().unwrap_or_else(|| panic!("no expired kind {kind}"))
    }
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Feeds the fixtures, in order, one batch per document, each at the latest
/// span end time seen so far; renders; expires everything; renders again.
pub fn run(config: &str, fixtures: &[&str]) -> Outcome {
    let engine = Engine::new(Config::from_json(config.as_bytes()).expect("config"));
    let mut now = 0;
    for name in fixtures {
        let data = std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        for batch in otlp_json::batches(&data, Layout::Detect) {
            let batch = batch.unwrap_or_else(|e| panic!("{name}: {e}"));
            let ends = batch.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans);
            now = ends.map(|s| s.end_time_unix_nano).fold(now, u64::max);
            engine.consume(&batch.encode_to_vec(), now).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
    let before_expiry = parse(&text(&engine, now));
    engine.expire_all(now);
    let metrics = parse(&text(&engine, now));
    let stats = serde_json::from_slice(&engine.render(Format::StatsJson, now)).expect("stats JSON");
    Outcome { before_expiry, metrics, stats }
}

fn text(engine: &Engine, now: u64) -> String {
    String::from_utf8(engine.render(Format::Prometheus, now)).expect("UTF-8 exposition")
}

/// The service-graph families both peers define; the engine's own
/// unpaired/dropped span counters are left out.
pub fn graph_only(all: &Series) -> Series {
    all.iter()
        .filter(|(k, _)| {
            k.starts_with("traces_service_graph_request") || k.starts_with("traces_service_graph_connection_info")
        })
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// Parses Prometheus text exposition samples. Label order is normalised
/// (sorted by name) and `le` values are normalised (`1.0` and `1` are the
/// same bound).
pub fn parse(text: &str) -> Series {
    let mut out = Series::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, labels, rest) = match line.find('{') {
            Some(open) => {
                let (labels, after) = parse_labels(&line[open + 1..]).unwrap_or_else(|| panic!("bad labels: {line}"));
                (&line[..open], labels, after)
            }
            None => {
                let sp = line.find(' ').unwrap_or_else(|| panic!("no value: {line}"));
                (&line[..sp], Vec::new(), &line[sp..])
            }
        };
        let value = rest.split_whitespace().next().unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let key = key(name, &labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>());
        assert!(out.insert(key.clone(), value).is_none(), "duplicate series {key}");
    }
    out
}

/// Label pairs up to the closing brace; returns them and the rest of the line.
fn parse_labels(s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches(',');
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = rest.find('=')?;
        let name = rest[..eq].trim().to_string();
        let mut chars = rest[eq + 1..].char_indices();
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => {
                    end = Some(eq + 1 + i + 1);
                    break;
                }
                c => value.push(c),
            }
        }
        labels.push((name, value));
        rest = &rest[end?..];
    }
}

fn norm_le(v: &str) -> String {
    match v {
        "+Inf" | "inf" | "Inf" => "+Inf".into(),
        v => format!("{}", v.parse::<f64>().unwrap_or_else(|_| panic!("bad le {v}"))),
    }
}

/// The map key of a series: `name{a="1",b="2"}` with labels sorted by name
/// and empty values left out.
pub fn key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut l: Vec<(String, String)> = labels
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), if *k == "le" { norm_le(v) } else { v.to_string() }))
        .collect();
    l.sort();
    let body: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{name}{{{}}}", body.join(","))
}

/// Builds an expected map.
#[derive(Default)]
pub struct Expect {
    pub series: Series,
}

pub const REQUEST: &str = "traces_service_graph_request_total";
pub const FAILED: &str = "traces_service_graph_request_failed_total";
pub const SERVER: &str = "traces_service_graph_request_server_seconds";
pub const CLIENT: &str = "traces_service_graph_request_client_seconds";
pub const MESSAGING: &str = "traces_service_graph_request_messaging_system_seconds";
pub const CONNECTION_INFO: &str = "traces_service_graph_connection_info";

impl Expect {
    pub fn new() -> Expect {
        Expect::default()
    }

    pub fn sample(mut self, name: &str, labels: &[(&str, &str)], value: f64) -> Expect {
        let k = key(name, labels);
        assert!(self.series.insert(k.clone(), value).is_none(), "expected twice: {k}");
        self
    }

    /// A classic histogram with upper-inclusive `bounds` after the weighted
    /// observations `(value, weight)`, in this order.
    pub fn histogram(mut self, name: &str, labels: &[(&str, &str)], bounds: &[f64], obs: &[(f64, f64)]) -> Expect {
        let mut sum = 0.0;
        let mut count = 0.0;
        for &(v, w) in obs {
            sum += v * w;
            count += w;
        }
        self = self.sample(&format!("{name}_sum"), labels, sum).sample(&format!("{name}_count"), labels, count);
        for b in bounds.iter().copied().chain([f64::INFINITY]) {
            let cumulative: f64 = obs.iter().filter(|(v, _)| *v <= b).map(|(_, w)| w).sum();
            let le = if b.is_infinite() { "+Inf".to_string() } else { format!("{b}") };
            let mut l = labels.to_vec();
            l.push(("le", &le));
            self = self.sample(&format!("{name}_bucket"), &l, cumulative);
        }
        self
    }

    /// One edge series: request counter, failed counter when `failed > 0`,
    /// and the server and client histograms (one observation each, weight `w`).
    pub fn edge(
        self,
        labels: &[(&str, &str)],
        bounds: &[f64],
        requests: f64,
        failed: f64,
        server: &[(f64, f64)],
        client: &[(f64, f64)],
    ) -> Expect {
        let mut e = self.sample(REQUEST, labels, requests);
        if failed > 0.0 {
            e = e.sample(FAILED, labels, failed);
        }
        e.histogram(SERVER, labels, bounds, server).histogram(CLIENT, labels, bounds, client)
    }
}

/// Compares two maps and, on a difference, lists exactly what differs.
#[track_caller]
pub fn assert_series(got: &Series, want: &Expect) {
    let want = &want.series;
    if got == want {
        return;
    }
    let mut report = String::new();
    for (k, v) in want {
        match got.get(k) {
            None => report.push_str(&format!("  missing   {k} = {v:?}\n")),
            Some(g) if g != v => report.push_str(&format!("  different {k}: got {g:?}, want {v:?}\n")),
            _ => {}
        }
    }
    for (k, v) in got {
        if !want.contains_key(k) {
            report.push_str(&format!("  unexpected {k} = {v:?}\n"));
        }
    }
    panic!("series differ:\n{report}");
}

/// The subset of `all` whose key contains every one of `needles`.
pub fn select(all: &Series, needles: &[&str]) -> Series {
    all.iter().filter(|(k, _)| needles.iter().all(|n| k.contains(n))).map(|(k, v)| (k.clone(), *v)).collect()
}
