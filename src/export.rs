//! The service map in portable forms: JSON (schema `servicemap.graph/v1`,
//! described in the README), Graphviz DOT and Mermaid coloured by health,
//! and the JSON of the incident queries.

use crate::graph::{Health, NodeKind, View};
use crate::history::Diff;
use crate::query::{Impact, RecoveryStep, root_causes};
use serde_json::{Value, json};
use std::fmt::Write;

fn colour(h: Health) -> &'static str {
    match h {
        Health::Green => "#2e7d32",
        Health::Yellow => "#f9a825",
        Health::Red => "#c62828",
        Health::Unknown => "#9e9e9e",
    }
}

fn finite(v: f64) -> Value {
    serde_json::Number::from_f64(v).map(Value::Number).unwrap_or(Value::Null)
}

#[derive(serde::Serialize)]
struct GraphDoc<'a> {
    schema: &'static str,
    at_unix_nano: u64,
    window_seconds: Option<f64>,
    nodes: Vec<NodeDoc<'a>>,
    edges: Vec<EdgeDoc<'a>>,
    root_causes: Vec<String>,
}

#[derive(serde::Serialize)]
struct NodeDoc<'a> {
    id: &'a str,
    kind: &'static str,
    health: &'static str,
    rate: Option<f64>,
    error_rate: Option<f64>,
    owner: &'a str,
    tier: &'a str,
    version: &'a str,
    environment: &'a str,
    namespace: &'a str,
    k8s_namespace: &'a str,
    first_seen_unix_nano: u64,
    last_seen_unix_nano: u64,
    last_deploy_unix_nano: Option<u64>,
}

#[derive(serde::Serialize)]
struct EdgeDoc<'a> {
    client: &'a str,
    server: &'a str,
    connection_type: &'static str,
    protocol: &'a str,
    rate: Option<f64>,
    error_rate: Option<f64>,
    p50_seconds: Option<f64>,
    p90_seconds: Option<f64>,
    p99_seconds: Option<f64>,
    health: &'static str,
    reason: &'a str,
    first_seen_unix_nano: u64,
    last_seen_unix_nano: u64,
}

/// A finite number, or null.
fn num(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// The graph as JSON, one line. Written through typed structs rather than a
/// `serde_json::Value` tree: a 20,000-edge graph is large.
pub fn graph_json(view: &View) -> Vec<u8> {
    let doc = GraphDoc {
        schema: "servicemap.graph/v1",
        at_unix_nano: view.at_ns,
        window_seconds: num(view.window_s),
        nodes: view
            .nodes
            .iter()
            .map(|n| NodeDoc {
                id: &n.name,
                kind: n.kind.as_str(),
                health: n.health.as_str(),
                rate: num(n.rate),
                error_rate: num(n.error_rate),
                owner: &n.facts.owner,
                tier: &n.tier,
                version: &n.facts.version,
                environment: &n.facts.environment,
                namespace: &n.facts.namespace,
                k8s_namespace: &n.facts.k8s_namespace,
                first_seen_unix_nano: n.first_seen_ns,
                last_seen_unix_nano: n.last_seen_ns,
                last_deploy_unix_nano: n.last_deploy_ns,
            })
            .collect(),
        edges: view
            .edges
            .iter()
            .map(|e| EdgeDoc {
                client: &e.client,
                server: &e.server,
                connection_type: e.conn.as_str(),
                protocol: &e.protocol,
                rate: num(e.rate),
                error_rate: num(e.error_rate),
                p50_seconds: e.p50_s.and_then(num),
                p90_seconds: e.p90_s.and_then(num),
                p99_seconds: e.p99_s.and_then(num),
                health: e.health.as_str(),
                reason: &e.reason,
                first_seen_unix_nano: e.first_seen_ns,
                last_seen_unix_nano: e.last_seen_ns,
            })
            .collect(),
        root_causes: root_causes(view),
    };
    let mut out = serde_json::to_vec(&doc).unwrap_or_default();
    out.push(b'\n');
    out
}

fn steps_json(steps: &[RecoveryStep]) -> Value {
    Value::Array(steps.iter().map(|s| json!({"services": s.services, "cycle": s.cycle})).collect())
}

/// The answer of an impact query as JSON.
pub fn impact_json(i: &Impact) -> Value {
    json!({
        "service": i.service,
        "found": i.found,
        "health": i.health.as_str(),
        "dependents": i.dependents,
        "dependencies": i.dependencies,
        "recovery_order": i.recovery_order,
        "recovery_steps": steps_json(&i.recovery_steps),
        "blast_radius_rps": finite(i.blast_radius_rps),
    })
}

/// An impact query as plain text for a terminal.
pub fn impact_text(i: &Impact) -> String {
    if !i.found {
        return format!("{}: not in the graph\n", i.service);
    }
    let list = |v: &[String]| if v.is_empty() { "(none)".to_string() } else { v.join(", ") };
    let mut out = String::new();
    let _ = writeln!(out, "service:        {} ({})", i.service, i.health.as_str());
    let _ = writeln!(out, "blast radius:   {:.3} req/s reach it directly", i.blast_radius_rps);
    let _ = writeln!(out, "dependents:     {}", list(&i.dependents));
    let _ = writeln!(out, "dependencies:   {}", list(&i.dependencies));
    let _ = writeln!(out, "recovery order:");
    for (n, s) in i.recovery_steps.iter().enumerate() {
        let cycle = if s.cycle { "  (cycle: bring back together)" } else { "" };
        let _ = writeln!(out, "  {}. {}{}", n + 1, s.services.join(" + "), cycle);
    }
    out
}

/// A diff between two snapshots as JSON.
pub fn diff_json(d: &Diff) -> Value {
    let pairs = |v: &[(String, String)]| -> Value {
        Value::Array(v.iter().map(|(c, s)| json!({"client": c, "server": s})).collect())
    };
    json!({
        "from_unix_nano": d.from_ns,
        "to_unix_nano": d.to_ns,
        "nodes_added": d.nodes_added,
        "nodes_removed": d.nodes_removed,
        "edges_added": pairs(&d.edges_added),
        "edges_removed": pairs(&d.edges_removed),
        "health_changes": d.health_changes.iter().map(|h| json!({"what": h.what, "from": h.from.as_str(), "to": h.to.as_str()})).collect::<Vec<_>>(),
    })
}

fn dot_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
}

fn edge_label(rate: f64, error_rate: f64, p99: Option<f64>) -> String {
    let mut l = format!("{rate:.2} req/s");
    if error_rate > 0.0 {
        let _ = write!(l, ", {:.1}% err", error_rate * 100.0);
    }
    if let Some(p) = p99 {
        let _ = write!(l, ", p99 {:.0}ms", p * 1000.0);
    }
    l
}

/// Graphviz DOT, nodes and edges coloured by health.
pub fn dot(view: &View) -> String {
    let mut out = String::from(
        "digraph servicemap {\n  rankdir=LR;\n  node [style=filled, fontcolor=white, fontname=\"Helvetica\"];\n",
    );
    for n in &view.nodes {
        let shape = match n.kind {
            NodeKind::Database => "cylinder",
            NodeKind::Queue => "cds",
            NodeKind::External => "box",
            NodeKind::User => "oval",
            NodeKind::Service => "box",
        };
        let style = if n.kind == NodeKind::External { "filled,dashed" } else { "filled,rounded" };
        let _ = writeln!(
            out,
            "  {} [shape={shape}, style=\"{style}\", fillcolor=\"{}\", tooltip={}];",
            dot_quote(&n.name),
            colour(n.health),
            dot_quote(&format!("{} ({}), {}", n.name, n.kind.as_str(), n.health.as_str()))
        );
    }
    for e in &view.edges {
        let _ = writeln!(
            out,
            "  {} -> {} [color=\"{}\", label={}];",
            dot_quote(&e.client),
            dot_quote(&e.server),
            colour(e.health),
            dot_quote(&edge_label(e.rate, e.error_rate, e.p99_s))
        );
    }
    out.push_str("}\n");
    out
}

fn mermaid_text(s: &str) -> String {
    s.replace('"', "#quot;").replace('\n', " ")
}

/// Mermaid flowchart, nodes classed by health.
pub fn mermaid(view: &View) -> String {
    let mut out = String::from("graph LR\n");
    let id = |name: &str| view.nodes.iter().position(|n| n.name == name).map(|i| format!("n{i}")).unwrap_or_default();
    for (i, n) in view.nodes.iter().enumerate() {
        let label = mermaid_text(&n.name);
        let shape = match n.kind {
            NodeKind::Database => format!("n{i}[(\"{label}\")]"),
            NodeKind::Queue => format!("n{i}>\"{label}\"]"),
            NodeKind::User => format!("n{i}((\"{label}\"))"),
            _ => format!("n{i}[\"{label}\"]"),
        };
        let _ = writeln!(out, "  {shape}:::{}", n.health.as_str());
    }
    for e in &view.edges {
        let _ = writeln!(
            out,
            "  {} -->|\"{}\"| {}",
            id(&e.client),
            mermaid_text(&edge_label(e.rate, e.error_rate, e.p99_s)),
            id(&e.server)
        );
    }
    for h in [Health::Green, Health::Yellow, Health::Red, Health::Unknown] {
        let _ = writeln!(out, "  classDef {} fill:{},color:#fff", h.as_str(), colour(h));
    }
    out
}
