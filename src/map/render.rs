//! The service map in portable forms: JSON (schema `servicemap.graph/v1`,
//! described in the README), Graphviz DOT and Mermaid coloured by health,
//! and the JSON of the incident queries.

use super::{Health, NodeKind, View};
use crate::map::history::Diff;
use crate::map::impact::root_causes;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::fmt::Write;

mod incident;
pub use incident::{impact_json, impact_text, steps_json};

fn colour(h: Health) -> &'static str {
    match h {
        Health::Green => "#2e7d32",
        Health::Yellow => "#f9a825",
        Health::Red => "#c62828",
        Health::Unknown => "#9e9e9e",
    }
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
    /// The slowest request in the window whose trace is known: open it in
    /// the tracing backend.
    slowest_trace_id: Option<String>,
    slowest_seconds: Option<f64>,
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
                slowest_trace_id: e.slowest.map(|(_, id)| {
                    let mut hex = String::with_capacity(32);
                    crate::series::exemplar::hex(&id, &mut hex);
                    hex
                }),
                slowest_seconds: e.slowest.and_then(|(s, _)| num(s)),
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

/// A DOT double-quoted string. Inside one, `"` ends the string unless
/// escaped, and Graphviz reads a backslash as the start of an escape in
/// labels and tooltips (`\n`, `\l`, `\N`, ...), so both are escaped. Line
/// breaks (LF, CRLF or a lone CR) are written as `\n`: a raw one would be
/// kept in the string, but a backslash before it would join the lines.
fn dot_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => {
                chars.next_if_eq(&'\n');
                out.push_str("\\n");
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
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

/// Text for a Mermaid quoted string (`"..."`). Mermaid draws labels as
/// HTML; before parsing, it turns `#name;` and `#123;` anywhere into
/// character references, takes `%%{...}%%` anywhere as a directive that
/// changes its configuration, and drops the last `;` of any line matching
/// `style.*:\S*#.*;` (or the same with `classDef`); a `"` ends the string, a
/// backtick right after the opening quote makes it Markdown, and a line
/// break ends the statement. Each of these characters, and every control
/// character, is written as a Mermaid entity code, so a name is shown as it
/// is and never read as markup, syntax or configuration.
fn mermaid_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '&' => out.push_str("#amp;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            // Decimal codes: Mermaid's documentation gives `#35;` for `#`.
            '#' | '%' | '`' | ':' => {
                let _ = write!(out, "#{};", c as u32);
            }
            // JavaScript also ends lines at U+2028 and U+2029.
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "#{};", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Mermaid flowchart, nodes classed by health. Node ids are generated
/// (`n0`, `n1`, ... in the view's order) so that a name appears only inside a
/// quoted label.
pub fn mermaid(view: &View) -> String {
    let mut out = String::from("graph LR\n");
    let ids: HashMap<&str, usize> = view.nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
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
        // A view from the graph names only its own nodes; an edge to a name
        // it does not list has no id to draw.
        let (Some(client), Some(server)) = (ids.get(e.client.as_str()), ids.get(e.server.as_str())) else {
            continue;
        };
        let _ = writeln!(
            out,
            "  n{client} -->|\"{}\"| n{server}",
            mermaid_text(&edge_label(e.rate, e.error_rate, e.p99_s))
        );
    }
    for h in [Health::Green, Health::Yellow, Health::Red, Health::Unknown] {
        let _ = writeln!(out, "  classDef {} fill:{},color:#fff", h.as_str(), colour(h));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::graph::{EdgeView, Facts, NodeView};
    use crate::series::ConnType;

    fn node(name: &str, kind: NodeKind, health: Health) -> NodeView {
        NodeView {
            name: name.to_string(),
            kind,
            facts: Facts::default(),
            first_seen_ns: 0,
            last_seen_ns: 0,
            last_deploy_ns: None,
            health,
            rate: 0.0,
            error_rate: 0.0,
            tier: String::new(),
        }
    }

    fn edge(client: &str, server: &str, (rate, error_rate, p99_s): (f64, f64, Option<f64>)) -> EdgeView {
        EdgeView {
            client: client.to_string(),
            server: server.to_string(),
            conn: ConnType::Plain,
            protocol: String::new(),
            first_seen_ns: 0,
            last_seen_ns: 0,
            rate,
            error_rate,
            client_only_error_rate: 0.0,
            p50_s: None,
            p90_s: None,
            p99_s,
            health: Health::Green,
            reason: String::new(),
            slowest: None,
        }
    }

    const IMG: &str = "<img src=x onerror=alert(1)>";
    const QUOTED: &str = r#"say "hi"\now"#;
    const LINES: &str = "two\nlines\r\nthree\rfour";
    const SCRIPT: &str = "<script>a&&b</script>";
    const SYNTAX: &str = r#"]; n0-->n1 %%{init: {"securityLevel":"loose"}}%%"#;
    const MARKDOWN: &str = "`**bold**`";
    const ENTITIES: &str = "#quot;&amp; café ☕ 東京\u{2028}end";
    /// A line of Mermaid holding `style`, then `:`, a `#` and a `;` loses its
    /// last `;` before it is parsed.
    const STYLE: &str = "lifestyle:x#1;";

    /// Service names an attacker could choose (resource attributes are
    /// whatever a client sends), one of each node kind.
    fn hostile() -> View {
        View {
            at_ns: 0,
            window_s: 300.0,
            nodes: vec![
                node(IMG, NodeKind::Service, Health::Green),
                node(QUOTED, NodeKind::Database, Health::Red),
                node(LINES, NodeKind::Queue, Health::Yellow),
                node(SCRIPT, NodeKind::External, Health::Unknown),
                node(SYNTAX, NodeKind::User, Health::Green),
                node(MARKDOWN, NodeKind::Service, Health::Green),
                node(ENTITIES, NodeKind::Service, Health::Green),
            ],
            edges: vec![
                edge(SYNTAX, IMG, (1.5, 0.25, Some(0.12))),
                edge(IMG, QUOTED, (0.5, 0.0, None)),
                edge(MARKDOWN, ENTITIES, (0.25, 0.0, None)),
            ],
        }
    }

    #[test]
    fn mermaid_writes_names_only_as_entity_coded_labels() {
        let want = [
            "graph LR",
            "  n0[\"#lt;img src=x onerror=alert(1)#gt;\"]:::green",
            r#"  n1[("say #quot;hi#quot;\now")]:::red"#,
            "  n2>\"two#10;lines#13;#10;three#13;four\"]:::yellow",
            "  n3[\"#lt;script#gt;a#amp;#amp;b#lt;/script#gt;\"]:::unknown",
            r#"  n4(("]; n0--#gt;n1 #37;#37;{init#58; {#quot;securityLevel#quot;#58;#quot;loose#quot;}}#37;#37;")):::green"#,
            "  n5[\"#96;**bold**#96;\"]:::green",
            "  n6[\"#35;quot;#amp;amp; café ☕ 東京#8232;end\"]:::green",
            "  n4 -->|\"1.50 req/s, 25.0#37; err, p99 120ms\"| n0",
            "  n0 -->|\"0.50 req/s\"| n1",
            "  n5 -->|\"0.25 req/s\"| n6",
            "  classDef green fill:#2e7d32,color:#fff",
            "  classDef yellow fill:#f9a825,color:#fff",
            "  classDef red fill:#c62828,color:#fff",
            "  classDef unknown fill:#9e9e9e,color:#fff",
        ];
        assert_eq!(mermaid(&hostile()).lines().collect::<Vec<_>>(), want);
    }

    /// Reads Mermaid's entity codes back: what `mermaid_text` writes must
    /// show each name exactly as it is.
    fn mermaid_decode(s: &str) -> String {
        let mut out = String::new();
        let mut rest = s;
        while let Some(at) = rest.find('#') {
            out.push_str(&rest[..at]);
            let end = rest[at..].find(';').expect("an entity code ends with ;") + at;
            let code = &rest[at + 1..end];
            out.push(match code {
                "quot" => '"',
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                n => char::from_u32(n.parse().expect("a decimal code")).unwrap(),
            });
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn mermaid_labels_decode_to_the_names() {
        for name in [IMG, QUOTED, LINES, SCRIPT, SYNTAX, MARKDOWN, ENTITIES, STYLE] {
            let text = mermaid_text(name);
            assert_eq!(mermaid_decode(&text), name);
            // Nothing left that Mermaid or HTML would read as syntax.
            assert!(!text.contains(['"', '<', '>', '&', '%', '`', ':', '\n', '\r']), "{text}");
        }
        assert_eq!(mermaid_text(STYLE), "lifestyle#58;x#35;1;");
    }

    #[test]
    fn mermaid_skips_an_edge_to_a_node_the_view_does_not_list() {
        let mut view = hostile();
        view.edges.push(edge("ghost", IMG, (1.0, 0.0, None)));
        assert_eq!(mermaid(&view), mermaid(&hostile()));
    }

    #[test]
    fn dot_quotes_and_escapes_names() {
        let want = [
            "digraph servicemap {",
            "  rankdir=LR;",
            "  node [style=filled, fontcolor=white, fontname=\"Helvetica\"];",
            r##"  "<img src=x onerror=alert(1)>" [shape=box, style="filled,rounded", fillcolor="#2e7d32", tooltip="<img src=x onerror=alert(1)> (service), green"];"##,
            r##"  "say \"hi\"\\now" [shape=cylinder, style="filled,rounded", fillcolor="#c62828", tooltip="say \"hi\"\\now (database), red"];"##,
            r##"  "two\nlines\nthree\nfour" [shape=cds, style="filled,rounded", fillcolor="#f9a825", tooltip="two\nlines\nthree\nfour (queue), yellow"];"##,
            r##"  "<script>a&&b</script>" [shape=box, style="filled,dashed", fillcolor="#9e9e9e", tooltip="<script>a&&b</script> (external), unknown"];"##,
            r##"  "]; n0-->n1 %%{init: {\"securityLevel\":\"loose\"}}%%" [shape=oval, style="filled,rounded", fillcolor="#2e7d32", tooltip="]; n0-->n1 %%{init: {\"securityLevel\":\"loose\"}}%% (user), green"];"##,
            r##"  "`**bold**`" [shape=box, style="filled,rounded", fillcolor="#2e7d32", tooltip="`**bold**` (service), green"];"##,
            "  \"#quot;&amp; café ☕ 東京\u{2028}end\" [shape=box, style=\"filled,rounded\", fillcolor=\"#2e7d32\", tooltip=\"#quot;&amp; café ☕ 東京\u{2028}end (service), green\"];",
            r##"  "]; n0-->n1 %%{init: {\"securityLevel\":\"loose\"}}%%" -> "<img src=x onerror=alert(1)>" [color="#2e7d32", label="1.50 req/s, 25.0% err, p99 120ms"];"##,
            r##"  "<img src=x onerror=alert(1)>" -> "say \"hi\"\\now" [color="#2e7d32", label="0.50 req/s"];"##,
            "  \"`**bold**`\" -> \"#quot;&amp; café ☕ 東京\u{2028}end\" [color=\"#2e7d32\", label=\"0.25 req/s\"];",
            "}",
        ];
        assert_eq!(dot(&hostile()).lines().collect::<Vec<_>>(), want);
    }

    #[test]
    fn dot_keeps_a_trailing_backslash_inside_the_string() {
        assert_eq!(dot_quote("ends\\"), r#""ends\\""#);
        assert_eq!(dot_quote("\\\""), r#""\\\"""#);
        assert_eq!(dot_quote("a\r\n\r\nb"), r#""a\n\nb""#);
    }
}
