//! `servicemap`: reads OpenTelemetry trace files (OTLP protobuf or JSON),
//! feeds them to one engine, and prints one answer at the end: the metrics,
//! the map, an incident answer for a service, or the engine's self-report.

use prost::Message;
use serde_json::Value;
use servicemap::wire;
use servicemap::wire::KeySet;
use servicemap::wire::json::{self as otlp_json, Layout};
use servicemap::{Config, Engine, Format};
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

#[path = "servicemap/remote.rs"]
mod remote;
#[path = "servicemap/serve.rs"]
mod serve;

const USAGE: &str = "\
servicemap: builds a service graph from OpenTelemetry trace files.

Usage:
  servicemap metrics [--config FILE] [--format prometheus|openmetrics|protobuf] FILE...
  servicemap stats [--config FILE] FILE...
  servicemap graph [--config FILE] [--format json|dot|mermaid] [--edges FILE] FILE...
  servicemap impact SERVICE [--config FILE] [--format json|text] [--edges FILE] FILE...
  servicemap --help | --version

Commands:
  metrics   Print the service-graph metrics as Prometheus text (the default)
            or OpenMetrics.
  stats     Print the engine's self-report as JSON: spans read, edges made,
            expired and dropped, series that would exist. A dry run for sizing.
  graph     Print the service map: JSON (schema servicemap.graph/v1, the
            default), Graphviz DOT or Mermaid, coloured by health.
  impact    When SERVICE is in trouble, or might be: who depends on it
            (transitively) and which of them are degraded, how many user
            requests per second are at stake (an upper bound computed from
            the graph), which way the cause lies (here, downstream or
            upstream) with the evidence, and the order to bring things back.
            JSON (the default) or text.

Options:
  -c, --config FILE   Engine configuration: a JSON object, e.g.
                      {\"compat\":\"contrib\",\"dimensions\":[\"service.namespace\"]}.
                      Without it, the Tempo defaults.
  -f, --format NAME   Output format (see each command).
  -e, --edges FILE    Also add edges observed elsewhere (graph, impact): JSON
                      lines of {\"client\",\"server\",\"count\",\"errors\",
                      \"latency_seconds\",\"connection_type\",\"protocol\"}.
  -h, --help          Show this help.
  -V, --version       Show the version.

Input, read in the order given (\"-\" is standard input):
  *.json            OTLP/JSON: one {\"resourceSpans\":[...]} document, or one
                    document per line.
  *.jsonl, *.ndjson JSON lines, one document per line, as the collector's file
                    exporter writes them.
  anything else     OTLP protobuf (ExportTraceServiceRequest or TracesData),
                    unless the content is JSON text.

Time is trace time: each batch is fed at the latest span end time read so far;
then what has waited longer than `wait` expires and the map's history takes a
snapshot when one is due (every snapshot_interval, 1m), as a collector does on
its ticker; whatever still waits for its other side at the end of the input
expires then. The map's rates cover the last graph_window (5m) of trace time,
and a surge is measured against the history of the input before that window.
The output depends only on the input. Series are printed once, with their
full values. Unless the configuration sets them, series_idle_timeout
and max_batch_bytes are unlimited: nothing is dropped for being idle, and a
file of any size is read.

A file that holds no span (an empty file, a JSON object without
resourceSpans, a protobuf without resource spans) is named in a warning on
standard error, with what it holds instead.

Exit status: 0 on success, 1 if a file or the configuration cannot be read,
2 for a usage error, 3 if no input file held a span (and no --edges file was
given). Nothing is printed on standard output unless the status is 0.
";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Command {
    Metrics,
    Stats,
    Graph,
    Impact(String),
}

/// What `impact` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ImpactFormat {
    Json,
    Text,
}

#[derive(Debug)]
struct Args {
    command: Command,
    config: Option<String>,
    format: Format,
    impact_format: ImpactFormat,
    edges: Option<String>,
    files: Vec<String>,
}

#[derive(Debug)]
enum Parsed {
    Help,
    Version,
    Run(Args),
}

fn parse_args(args: Vec<OsString>) -> Result<Parsed, String> {
    let mut args = args.into_iter().map(|a| a.into_string().map_err(|a| format!("argument is not UTF-8: {a:?}")));
    let command = match args.next().transpose()?.as_deref() {
        None => return Err("no command given".into()),
        Some("-h" | "--help" | "help") => return Ok(Parsed::Help),
        Some("-V" | "--version") => return Ok(Parsed::Version),
        Some("metrics") => Command::Metrics,
        Some("stats") => Command::Stats,
        Some("graph") => Command::Graph,
        Some("impact") => match args.next().transpose()? {
            Some(service) if !service.starts_with('-') => Command::Impact(service),
            _ => return Err("`impact` needs a service name first, as in `servicemap impact checkout FILE...`".into()),
        },
        Some(other) => return Err(format!("unknown command `{other}`")),
    };
    let format = if command == Command::Graph { Format::GraphJson } else { Format::Prometheus };
    let mut parsed =
        Args { command, config: None, format, impact_format: ImpactFormat::Json, edges: None, files: Vec::new() };
    let mut only_files = false;
    while let Some(arg) = args.next().transpose()? {
        if only_files || arg == "-" || !arg.starts_with('-') {
            parsed.files.push(arg);
            continue;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => args.next().transpose()?.ok_or_else(|| format!("option `{name}` needs {what}")),
            }
        };
        match name.as_str() {
            "--" => only_files = true,
            "-h" | "--help" => return Ok(Parsed::Help),
            "-c" | "--config" => parsed.config = Some(value("a file name")?),
            "-f" | "--format" => match &parsed.command {
                Command::Metrics => {
                    parsed.format = match value("prometheus, openmetrics or protobuf")?.as_str() {
                        "prometheus" => Format::Prometheus,
                        "openmetrics" => Format::OpenMetrics,
                        "protobuf" => Format::PrometheusProtobuf,
                        other => {
                            return Err(format!(
                                "unknown format `{other}`: expected prometheus, openmetrics or protobuf"
                            ));
                        }
                    }
                }
                Command::Graph => {
                    parsed.format = match value("json, dot or mermaid")?.as_str() {
                        "json" => Format::GraphJson,
                        "dot" => Format::GraphDot,
                        "mermaid" => Format::GraphMermaid,
                        other => return Err(format!("unknown format `{other}`: expected json, dot or mermaid")),
                    }
                }
                Command::Impact(_) => {
                    parsed.impact_format = match value("json or text")?.as_str() {
                        "json" => ImpactFormat::Json,
                        "text" => ImpactFormat::Text,
                        other => return Err(format!("unknown format `{other}`: expected json or text")),
                    }
                }
                Command::Stats => return Err("`--format` does not apply to `stats`".into()),
            },
            "-e" | "--edges" => {
                if !matches!(parsed.command, Command::Graph | Command::Impact(_)) {
                    return Err("`--edges` applies to `graph` and `impact` only".into());
                }
                parsed.edges = Some(value("a file name")?);
            }
            _ => return Err(format!("unknown option `{arg}`")),
        }
    }
    if parsed.files.is_empty() && parsed.edges.is_none() {
        return Err("no input files given".into());
    }
    Ok(Parsed::Run(parsed))
}

fn main() -> ExitCode {
    let raw: Vec<OsString> = std::env::args_os().skip(1).collect();
    let strings: Vec<String> = raw.iter().filter_map(|a| a.to_str().map(str::to_string)).collect();
    if strings.len() == raw.len() && remote::wanted(&strings) {
        return match remote::run(&strings) {
            Ok(out) => print(&out),
            Err((code, message)) => {
                eprintln!("servicemap: error: {message}");
                if code == 2 {
                    eprintln!("Try `servicemap --help`.");
                }
                ExitCode::from(code)
            }
        };
    }
    let parsed = match parse_args(raw) {
        Ok(p) => p,
        Err(msg) => {
            eprintln!("servicemap: {msg}\nTry `servicemap --help`.");
            return ExitCode::from(2);
        }
    };
    let args = match parsed {
        Parsed::Help => return print(format!("{USAGE}\n{}", remote::USAGE).as_bytes()),
        Parsed::Version => return print(format!("servicemap {}\n", env!("CARGO_PKG_VERSION")).as_bytes()),
        Parsed::Run(a) => a,
    };
    match run(&args) {
        Ok(out) => print(&out),
        Err(Failure { code, message }) => {
            eprintln!("servicemap: error: {message}");
            ExitCode::from(code)
        }
    }
}

/// Why a run printed nothing, and its exit status.
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
}

/// Exit status when no input file held a span: distinct from 1, an input
/// that could not be read, since every file was read and there was nothing
/// in them to report.
const EXIT_NO_SPANS: u8 = 3;

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure { code: 1, message }
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Failure {
        Failure { code: 1, message: message.to_string() }
    }
}

fn print(bytes: &[u8]) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that went away (`| head`) is not an error of ours.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("servicemap: error: writing the output: {e}");
            ExitCode::from(1)
        }
    }
}

/// Reads every file into one engine and returns what to print. A file that
/// holds no span is named in a warning on standard error as it is read.
fn run(args: &Args) -> Result<Vec<u8>, Failure> {
    let config = load_config(args.config.as_deref())?;
    let engine = Engine::new(config);
    let mut feeder = Feeder { keys: KeySet::new(engine.config()), engine: &engine, now: 0 };
    let mut any_span = false;
    for name in &args.files {
        let data = read_input(name)?;
        let held = feeder.feed_file(name, &data).map_err(|e| format!("{}: {e}", shown(name)))?;
        if held.spans == 0 {
            eprintln!("servicemap: warning: {}: {}", shown(name), why_no_spans(name, &data, held));
        }
        any_span |= held.spans > 0;
    }
    // Edges from elsewhere make a map of their own; without them, an output
    // built from no span at all would look like a quiet system.
    if !any_span && args.edges.is_none() {
        let message = if args.files.len() == 1 { "the input held no span" } else { "no input file held a span" };
        return Err(Failure { code: EXIT_NO_SPANS, message: format!("{message}: nothing to report") });
    }
    engine.expire_all(feeder.now);
    if let Some(name) = &args.edges {
        let lines = read_input(name)?;
        engine.observe_edges(&lines, feeder.now).map_err(|e| format!("{name}: {e}"))?;
    }
    match &args.command {
        Command::Metrics | Command::Graph => Ok(engine.render(args.format, feeder.now)),
        Command::Stats => Ok(engine.render(Format::StatsJson, feeder.now)),
        Command::Impact(service) => {
            let impact =
                engine.impact(service, feeder.now).ok_or("the service map is disabled (config key `graph`)")?;
            Ok(match args.impact_format {
                ImpactFormat::Text => servicemap::map::impact_text(&impact).into_bytes(),
                ImpactFormat::Json => {
                    let mut out = serde_json::to_vec_pretty(&servicemap::map::impact_json(&impact)).unwrap_or_default();
                    out.push(b'\n');
                    out
                }
            })
        }
    }
}

fn load_config(path: Option<&str>) -> Result<Config, String> {
    let Some(path) = path else {
        return Ok(one_shot(Config::preset(servicemap::Compat::Tempo), &|_| false));
    };
    let text = read_input(path).map_err(|e| format!("config {e}"))?;
    let config = Config::from_json(&text).map_err(|e| format!("config {path}: {e}"))?;
    let doc = serde_json::from_slice::<serde_json::Value>(&text).unwrap_or_default();
    Ok(one_shot(config, &|key| doc.get(key).is_some()))
}

/// Settings for reading whole files and rendering once, at the end, where
/// the configuration does not say otherwise: no zero-first samples; series
/// kept however long ago (in trace time) they were last updated; and no cap
/// on the size of one batch (a file is one batch, or one per line).
fn one_shot(mut config: Config, set: &dyn Fn(&str) -> bool) -> Config {
    config.initial_zero = false;
    if !set("series_idle_timeout") {
        config.series_idle_timeout = Duration::MAX;
    }
    if !set("max_batch_bytes") {
        config.max_batch_bytes = usize::MAX;
    }
    config
}

fn read_input(name: &str) -> Result<Vec<u8>, String> {
    if name == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).map_err(|e| format!("standard input: cannot read: {e}"))?;
        return Ok(buf);
    }
    std::fs::read(name).map_err(|e| format!("{name}: cannot read: {e}"))
}

/// An input's name in messages.
fn shown(name: &str) -> &str {
    if name == "-" { "standard input" } else { name }
}

/// Why a file that was read without error held no span: what it holds
/// instead, as far as that points at the likely mistake.
fn why_no_spans(name: &str, data: &[u8], held: Held) -> String {
    if data.is_empty() {
        return "empty".into();
    }
    if data.iter().all(u8::is_ascii_whitespace) {
        return "empty (only whitespace)".into();
    }
    match encoding_of(name, data) {
        Encoding::Protobuf if held.resource_spans == 0 => {
            "no spans: read as OTLP protobuf, it holds no resource spans".into()
        }
        Encoding::Protobuf => "no spans: read as OTLP protobuf, its resource spans hold no span".into(),
        Encoding::Json(_) => json_without_spans(data),
    }
}

/// The keys under which OTLP/JSON readers find a document's spans, as
/// `otlp_json` accepts them.
const TRACES_KEYS: [&str; 3] = ["resourceSpans", "resource_spans", "batches"];

/// Top-level keys listed in a warning at most.
const KEYS_SHOWN: usize = 8;

/// Why JSON documents that were read without error held no span.
fn json_without_spans(data: &[u8]) -> String {
    let mut documents = 0;
    let mut traces_key = None;
    let mut keys = BTreeSet::new();
    // The input was read before, so every document parses and is an object.
    for doc in serde_json::Deserializer::from_slice(data).into_iter::<Value>() {
        let Ok(Value::Object(m)) = doc else { break };
        documents += 1;
        traces_key = traces_key.or_else(|| TRACES_KEYS.into_iter().find(|k| m.contains_key(*k)));
        keys.extend(m.keys().cloned());
    }
    if let Some(key) = traces_key {
        return format!("no spans: its `{key}` hold no span");
    }
    if keys.is_empty() {
        return "no spans: the JSON is `{}`, and OTLP/JSON traces are `{\"resourceSpans\": [...]}`".into();
    }
    let mut list = keys.iter().take(KEYS_SHOWN).map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
    if keys.len() > KEYS_SHOWN {
        list.push_str(", ...");
    }
    let which = if documents == 1 {
        "the JSON has no".to_string()
    } else {
        format!("none of its {documents} JSON documents has")
    };
    let mut why = format!("no spans: {which} `resourceSpans` (top-level keys: {list})");
    // `ResourceSpans`, `resource-spans` and the like are near misses.
    let near = |k: &&String| {
        k.chars().filter(|c| c.is_alphanumeric()).collect::<String>().eq_ignore_ascii_case("resourcespans")
    };
    if let Some(k) = keys.iter().find(near) {
        why.push_str(&format!("; OTLP/JSON spells `{k}` as `resourceSpans` (camelCase)"));
    }
    why
}

/// How a file is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json(Layout),
}

fn encoding_of(name: &str, data: &[u8]) -> Encoding {
    let ext = Path::new(name).extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("jsonl" | "ndjson") => Encoding::Json(Layout::Lines),
        Some("json") => Encoding::Json(Layout::Detect),
        Some("pb" | "binpb" | "bin" | "proto" | "protobuf" | "otlp") => Encoding::Protobuf,
        // Protobuf batches can start with bytes that read as whitespace or
        // `{`, but they are almost never valid UTF-8 throughout.
        _ if data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') && std::str::from_utf8(data).is_ok() => {
            Encoding::Json(Layout::Detect)
        }
        _ => Encoding::Protobuf,
    }
}

struct Feeder<'e> {
    engine: &'e Engine,
    keys: KeySet,
    /// The latest span end time read so far, in Unix nanoseconds.
    now: u64,
}

/// What an input held, counted as it is read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Held {
    resource_spans: u64,
    /// Every span, those the engine skips (INTERNAL, no `service.name`) included.
    spans: u64,
}

impl std::ops::AddAssign for Held {
    fn add_assign(&mut self, other: Held) {
        self.resource_spans += other.resource_spans;
        self.spans += other.spans;
    }
}

impl Feeder<'_> {
    fn feed_file(&mut self, name: &str, data: &[u8]) -> Result<Held, String> {
        // Whitespace is no JSON document, and as protobuf it is malformed or
        // holds no span (no span's enclosing tag is a whitespace byte); the
        // caller says the file is empty.
        if data.iter().all(u8::is_ascii_whitespace) {
            return Ok(Held::default());
        }
        match encoding_of(name, data) {
            Encoding::Protobuf => self.feed(data).map_err(|e| e.to_string()),
            Encoding::Json(layout) => {
                let mut held = Held::default();
                let mut batches = otlp_json::batches(data, layout);
                while let Some(batch) = batches.next() {
                    let batch = batch.map_err(|e| e.to_string())?;
                    held += self.feed(&batch.encode_to_vec()).map_err(|e| format!("line {}: {e}", batches.line()))?;
                }
                Ok(held)
            }
        }
    }

    /// Feeds one protobuf batch at the latest span end time seen, this batch's included.
    fn feed(&mut self, bytes: &[u8]) -> Result<Held, servicemap::Error> {
        let mut batch = wire::Batch::default();
        wire::read_batch(bytes, &self.keys, &mut batch)?;
        if let Some(end) = batch.spans.iter().map(|s| s.end_ns).max() {
            self.now = self.now.max(end);
        }
        let held = Held {
            resource_spans: batch.resources.len() as u64,
            spans: batch.spans.len() as u64 + batch.ignored_spans + batch.unnamed_spans,
        };
        self.engine.consume(bytes, self.now)?;
        // As a collector's ticker would: what has waited past `wait` expires,
        // and the map's history takes a snapshot when one is due.
        self.engine.expire(self.now);
        Ok(held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Parsed, String> {
        parse_args(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn arguments() {
        let Ok(Parsed::Run(a)) = parse(&["metrics", "--format=openmetrics", "-c", "cfg.json", "a.json", "-", "b.pb"])
        else {
            panic!()
        };
        assert_eq!(a.command, Command::Metrics);
        assert_eq!(a.format, Format::OpenMetrics);
        assert_eq!(a.config.as_deref(), Some("cfg.json"));
        assert_eq!(a.files, ["a.json", "-", "b.pb"]);
        let Ok(Parsed::Run(a)) = parse(&["stats", "--config", "c", "--", "--odd-name.json"]) else { panic!() };
        assert_eq!((a.command, a.files), (Command::Stats, vec!["--odd-name.json".to_string()]));
        assert!(matches!(parse(&["--help"]), Ok(Parsed::Help)));
        assert!(matches!(parse(&["metrics", "-h"]), Ok(Parsed::Help)));
        assert!(matches!(parse(&["-V"]), Ok(Parsed::Version)));
        assert_eq!(parse(&[]).unwrap_err(), "no command given");
        assert_eq!(parse(&["grpah", "x"]).unwrap_err(), "unknown command `grpah`");
        let Ok(Parsed::Run(a)) = parse(&["graph", "-f", "dot", "--edges", "e.jsonl"]) else { panic!() };
        assert_eq!((a.command, a.format, a.edges.as_deref()), (Command::Graph, Format::GraphDot, Some("e.jsonl")));
        let Ok(Parsed::Run(a)) = parse(&["impact", "db", "--format", "text", "t.json"]) else { panic!() };
        assert_eq!((a.command, a.impact_format), (Command::Impact("db".into()), ImpactFormat::Text));
        assert!(
            parse(&["impact", "--format", "text", "t.json"]).unwrap_err().starts_with("`impact` needs a service name")
        );
        assert_eq!(
            parse(&["metrics", "--edges", "e", "x"]).unwrap_err(),
            "`--edges` applies to `graph` and `impact` only"
        );
        assert_eq!(parse(&["metrics"]).unwrap_err(), "no input files given");
        assert_eq!(parse(&["metrics", "--config"]).unwrap_err(), "option `--config` needs a file name");
        assert_eq!(
            parse(&["metrics", "-f", "json", "x"]).unwrap_err(),
            "unknown format `json`: expected prometheus, openmetrics or protobuf"
        );
        assert_eq!(
            parse(&["stats", "--format", "prometheus", "x"]).unwrap_err(),
            "`--format` does not apply to `stats`"
        );
        assert_eq!(parse(&["metrics", "--verbose", "x"]).unwrap_err(), "unknown option `--verbose`");
    }

    #[test]
    fn encodings() {
        assert_eq!(encoding_of("a.jsonl", b"{}"), Encoding::Json(Layout::Lines));
        assert_eq!(encoding_of("a.NDJSON", b"{}"), Encoding::Json(Layout::Lines));
        assert_eq!(encoding_of("a.json", b""), Encoding::Json(Layout::Detect));
        assert_eq!(encoding_of("a.pb", b"{}"), Encoding::Protobuf);
        assert_eq!(encoding_of("-", b" \n{\"resourceSpans\":[]}"), Encoding::Json(Layout::Detect));
        // A protobuf batch whose first length byte is `{` (123) is still protobuf.
        assert_eq!(encoding_of("traces", &[0x0a, b'{', 0x0a, 0x79, 0xff, 0xfe]), Encoding::Protobuf);
        assert_eq!(encoding_of("traces", &[0x0a, 0x02, 0x0a, 0x00]), Encoding::Protobuf);
    }
}
