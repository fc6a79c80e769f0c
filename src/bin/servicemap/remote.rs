//! The commands that read the map back from a Prometheus-compatible store
//! (`--prometheus URL`) instead of from trace files: `graph`, `impact`,
//! `diff` and `serve`. The whole map of every collector that store scrapes.

use serde_json::json;
use servicemap::config::parse_duration;
use servicemap::map::query::{Source, answer};
use servicemap::map::render;
use servicemap::prometheus::{Client, Store};
use servicemap::{Config, Error};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const USAGE: &str = "\
Reading the map back from Prometheus (or Mimir, Thanos, VictoriaMetrics):
  servicemap graph --prometheus URL [--format json|dot|mermaid] [OPTIONS]
  servicemap impact SERVICE --prometheus URL [--format json|text] [OPTIONS]
  servicemap diff --prometheus URL --from TIME [--to TIME] [OPTIONS]
  servicemap serve --prometheus URL [--listen ADDR] [OPTIONS]

  The map is built from PromQL over the service-graph series of every
  instance the store scrapes: rate() of traces_service_graph_request_total
  and _failed_total over the window, histogram_quantile() of the summed
  server-latency histogram (native where the store keeps it native, else
  its classic buckets), summed by client and server (instance, job and
  dimensions fall away). An edge is on the map as soon as its series exist.
  `serve` serves the map page and /api/* as the collector's processor does.

  --prometheus URL    The store's HTTP API root, e.g. http://localhost:9090.
  --config FILE       The catalog (owners, tiers, SLOs), graph_window and
                      snapshot_interval, as for the engine.
  --window DURATION   The rate window (default: graph_window, 5m).
  --at TIME           Evaluate at TIME (default: now).
  --history DURATION  How far back baselines reach (default 1h), in steps of
                      snapshot_interval (1m); --step DURATION overrides it.
  --header 'NAME: VALUE'  Sent with every query (authorization,
                      X-Scope-OrgID); may be repeated.
  --timeout DURATION  Per query (default 30s).
  --listen ADDR       Where `serve` listens (default 127.0.0.1:8080).
  TIME is RFC 3339, Unix seconds, or a duration before now (\"1h\").
";

/// What to do with the store's map.
#[derive(Debug, PartialEq)]
enum Action {
    Graph(&'static str),
    Impact(String, bool),
    Diff(u64, Option<u64>),
    Serve(String),
}

/// True when `args` ask for the map from a store.
pub fn wanted(args: &[String]) -> bool {
    matches!(args.first().map(String::as_str), Some("graph" | "impact" | "diff" | "serve"))
        && args.iter().any(|a| a == "--prometheus" || a.starts_with("--prometheus="))
}

/// Runs a store command; returns what to print, or the exit status and message.
pub fn run(args: &[String]) -> Result<Vec<u8>, (u8, String)> {
    let usage = |m: String| (2u8, m);
    let now_ns = unix_ns(SystemTime::now());
    let mut it = args.iter().cloned();
    let command = it.next().unwrap_or_default();
    let service = if command == "impact" {
        match it.next() {
            Some(s) if !s.starts_with('-') => Some(s),
            _ => return Err(usage("`impact` needs a service name first".into())),
        }
    } else {
        None
    };
    let (mut url, mut config_file, mut format) = (None, None, None);
    let (mut window, mut at, mut history, mut step) = (None, None, Duration::from_secs(3600), None);
    let (mut headers, mut timeout, mut listen) = (Vec::new(), Duration::from_secs(30), "127.0.0.1:8080".to_string());
    let (mut from, mut to) = (None, None);
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value =
            || inline.clone().or_else(|| it.next()).ok_or_else(|| usage(format!("option `{name}` needs a value")));
        let dur = |v: String| parse_duration(&v).ok_or_else(|| usage(format!("`{name}`: `{v}` is not a duration")));
        let time = |v: String| parse_time(&v, now_ns).ok_or_else(|| usage(format!("`{name}`: `{v}` is not a time")));
        match name.as_str() {
            "--prometheus" => url = Some(value()?),
            "-c" | "--config" => config_file = Some(value()?),
            "-f" | "--format" => format = Some(value()?),
            "--window" => window = Some(dur(value()?)?),
            "--at" => at = Some(time(value()?)?),
            "--history" => history = dur(value()?)?,
            "--step" => step = Some(dur(value()?)?),
            "--timeout" => timeout = dur(value()?)?,
            "--listen" => listen = value()?,
            "--from" => from = Some(time(value()?)?),
            "--to" => to = Some(time(value()?)?),
            "--header" => {
                let v = value()?;
                let (k, val) =
                    v.split_once(':').ok_or_else(|| usage(format!("`--header {v}`: expected NAME: VALUE")))?;
                headers.push((k.trim().to_string(), val.trim().to_string()));
            }
            _ => return Err(usage(format!("unknown option `{arg}` with --prometheus"))),
        }
    }
    let action = match (command.as_str(), format.as_deref()) {
        ("graph", None | Some("json")) => Action::Graph("json"),
        ("graph", Some(f @ ("dot" | "mermaid"))) => Action::Graph(if f == "dot" { "dot" } else { "mermaid" }),
        ("impact", None | Some("json")) => Action::Impact(service.unwrap_or_default(), false),
        ("impact", Some("text")) => Action::Impact(service.unwrap_or_default(), true),
        ("diff", None) => Action::Diff(from.ok_or_else(|| usage("`diff` needs --from TIME".into()))?, to),
        ("serve", None) => Action::Serve(listen),
        (c, Some(f)) => return Err(usage(format!("unknown format `{f}` for `{c}`"))),
        (c, None) => return Err(usage(format!("`{c}` does not read from --prometheus"))),
    };
    let url = url.ok_or_else(|| usage("`--prometheus` needs a URL".into()))?;
    let config = match config_file {
        Some(path) => {
            let text = std::fs::read(&path).map_err(|e| (1, format!("{path}: cannot read: {e}")))?;
            Config::from_json(&text).map_err(|e| (1, format!("config {path}: {e}")))?
        }
        None => Config::preset(servicemap::Compat::Tempo),
    };
    let client = Client::new(&url, headers, timeout).map_err(|e| (2, e.to_string()))?;
    let step = step.unwrap_or(config.snapshot_interval);
    let store = Store::new(client, window.unwrap_or(config.graph_window), history, step, config.catalog)
        .with_trace_label(&config.trace_id_label_name);
    let at = at.unwrap_or(now_ns);
    let failed = |e: Error| (1u8, e.to_string());
    match action {
        Action::Graph(f) => {
            let view = store.view(at, true).map_err(failed)?;
            Ok(match f {
                "dot" => render::dot(&view).into_bytes(),
                "mermaid" => render::mermaid(&view).into_bytes(),
                _ => render::graph_json(&view),
            })
        }
        Action::Impact(service, text) => {
            let answer = answer(&store, &serde_json::to_vec(&json!({"query":"impact","service":service})).unwrap(), at)
                .map_err(failed)?;
            if text {
                let view = store.view(at, false).map_err(failed)?;
                let history = store.history(at).map_err(failed)?;
                let impact = servicemap::map::impact(&view, &history, Source::catalog(&store), &service);
                return Ok(render::impact_text(&impact).into_bytes());
            }
            Ok(pretty(&answer))
        }
        Action::Diff(from, to) => {
            let req = json!({"query": "diff", "from": from, "to": to});
            Ok(pretty(&answer(&store, &serde_json::to_vec(&req).unwrap(), at).map_err(failed)?))
        }
        Action::Serve(listen) => super::serve::serve(&store, &listen).map(|_| Vec::new()).map_err(|m| (1, m)),
    }
}

fn pretty(v: &serde_json::Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(v).unwrap_or_default();
    out.push(b'\n');
    out
}

pub fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// RFC 3339 (`2026-12-05T08:00:00Z`, offsets and fractions allowed), Unix
/// seconds, or a duration before `now_ns` (`1h`), as the map page's API takes them.
pub fn parse_time(s: &str, now_ns: u64) -> Option<u64> {
    let s = s.trim();
    if s == "now" {
        return Some(now_ns);
    }
    if let Ok(secs) = s.parse::<f64>() {
        return (secs >= 0.0 && secs.is_finite()).then_some((secs * 1e9) as u64);
    }
    if let Some(d) = parse_duration(s) {
        return Some(now_ns.saturating_sub(d.as_nanos() as u64));
    }
    rfc3339(s)
}

fn rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, sec) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac_ns = 0i64;
    if let Some(f) = rest.strip_prefix('.') {
        let digits = f.find(|c: char| !c.is_ascii_digit()).unwrap_or(f.len());
        let padded: String = f[..digits].chars().chain(std::iter::repeat('0')).take(9).collect();
        frac_ns = padded.parse().ok()?;
        rest = &f[digits..];
    }
    let offset_s = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && matches!(&rest[3..4], ":") => {
            let sign = match &rest[..1] {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            sign * (rest[1..3].parse::<i64>().ok()? * 3600 + rest[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if mo <= 2 { (y - 1, mo + 9) } else { (y, mo - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_s;
    u64::try_from(secs).ok().map(|s| s * 1_000_000_000 + frac_ns as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let now = 1_800_000_000_000_000_000;
        assert_eq!(parse_time("2026-12-05T08:00:00Z", now), Some(1_796_457_600_000_000_000));
        assert_eq!(parse_time("2026-12-05T09:30:00.25+01:30", now), Some(1_796_457_600_250_000_000));
        assert_eq!(parse_time("1970-01-01T00:00:01Z", now), Some(1_000_000_000));
        assert_eq!(parse_time("1700000000.5", now), Some(1_700_000_000_500_000_000));
        assert_eq!(parse_time("1h", now), Some(now - 3_600_000_000_000));
        assert_eq!(parse_time("now", now), Some(now));
        assert_eq!(parse_time("yesterday", now), None);
        assert_eq!(parse_time("2026-13-05T08:00:00Z", now), None);
    }

    #[test]
    fn only_store_commands_are_taken() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(wanted(&v(&["graph", "--prometheus", "http://p:9090"])));
        assert!(wanted(&v(&["impact", "checkout", "--prometheus=http://p:9090"])));
        assert!(!wanted(&v(&["graph", "traces.json"])));
        assert!(!wanted(&v(&["metrics", "--prometheus", "x"])));
    }
}
