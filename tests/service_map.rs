//! The service map on a generated topology with known answers.
//!
//! ```text
//! user -> web -> api -> orders (database)      batch -> orders
//!                 api -> auth -> api (a cycle)
//!                 api -> redis (uninstrumented, peer.service)
//!                 api -> kafka producer -> shipping consumer
//! ```
//! The database fails; api and web see errors from it.

mod common;
use common::*;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};
use serde_json::Value;
use servicemap::Format;

struct Gen {
    resources: Vec<ResourceSpans>,
    next: u8,
}

impl Gen {
    fn new() -> Gen {
        Gen { resources: Vec::new(), next: 0 }
    }

    fn add(&mut self, service: &str, spans: Vec<Span>) {
        let facts =
            vec![s("service.version", "1.0"), s("deployment.environment.name", "prod"), s("service.owner", "team-x")];
        self.resources.push(resource(Some(service), facts, spans));
    }

    /// One request from `client` to `server`, in trace `t`, failing on both sides if `fail`.
    fn call(&mut self, t: u8, client: &str, server: &str, fail: bool) {
        self.next = self.next.wrapping_add(2);
        let (c, sv) = (sid(self.next), sid(self.next + 1));
        let f = |sp: Span| if fail { failed(sp) } else { sp };
        self.add(
            client,
            vec![f(with_attrs(
                span(CLIENT, trace(t), c.clone(), None, T0, T0 + 20_000_000),
                vec![s("http.request.method", "GET")],
            ))],
        );
        self.add(server, vec![f(span(SERVER, trace(t), sv, Some(c), T0, T0 + 10_000_000))]);
    }

    fn batch(&mut self) -> Vec<u8> {
        batch(std::mem::take(&mut self.resources))
    }
}

fn topology() -> servicemap::Engine {
    let e = engine(r#"{"graph_window":"5m"}"#);
    let mut g = Gen::new();
    for t in 0..10u8 {
        // Root spans of web: its client is "user".
        let root = span(SERVER, trace(t), sid(200), None, T0, T0 + 30_000_000);
        g.add("web", vec![if t < 5 { failed(root) } else { root }]);
        g.call(t, "web", "api", t < 5);
        g.call(t, "api", "auth", false);
        g.call(t, "auth", "api", false);
        let db = |id| {
            with_attrs(
                span(CLIENT, trace(t), sid(id), None, T0, T0 + 5_000_000),
                vec![s("db.system", "postgresql"), s("db.namespace", "orders")],
            )
        };
        g.add("api", vec![if t < 8 { failed(db(150)) } else { db(150) }]);
        g.add("batch", vec![failed(db(151))]);
        g.add(
            "api",
            vec![with_attrs(
                span(CLIENT, trace(t), sid(152), None, T0, T0 + 1_000_000),
                vec![s("peer.service", "redis")],
            )],
        );
        let producer = with_attrs(
            span(PRODUCER, trace(t), sid(160), None, T0, T0 + 1_000_000),
            vec![s("messaging.system", "kafka")],
        );
        g.add("api", vec![producer]);
        g.add("shipping", vec![span(CONSUMER, trace(t), sid(161), Some(sid(160)), T0 + 2_000_000, T0 + 3_000_000)]);
    }
    e.consume(&g.batch(), T0).unwrap();
    // The redis client spans become virtual-node edges when they expire.
    e.expire(T0 + 11 * SEC);
    e
}

fn query(e: &servicemap::Engine, q: &str) -> Value {
    e.query(q.as_bytes(), T0 + 11 * SEC).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

#[test]
fn graph_json_has_every_node_and_edge_with_kinds_health_and_facts() {
    let e = topology();
    let g: Value = serde_json::from_slice(&e.render(Format::GraphJson, T0 + 11 * SEC)).unwrap();
    assert_eq!(g["schema"], "servicemap.graph/v1");
    let node = |id: &str| g["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap().clone();
    let kinds: Vec<(String, String)> = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap().to_string(), n["kind"].as_str().unwrap().to_string()))
        .collect();
    let expect = [
        ("api", "service"),
        ("auth", "service"),
        ("batch", "service"),
        ("orders", "database"),
        ("redis", "external"),
        ("shipping", "service"),
        ("user", "user"),
        ("web", "service"),
    ];
    assert_eq!(kinds, expect.map(|(a, b)| (a.to_string(), b.to_string())));
    assert_eq!(node("orders")["health"], "red");
    assert_eq!(node("web")["health"], "red");
    assert_eq!(node("shipping")["health"], "green");
    assert_eq!((node("api")["owner"].as_str(), node("api")["version"].as_str()), (Some("team-x"), Some("1.0")));
    let edge = |c: &str, s: &str| {
        g["edges"].as_array().unwrap().iter().find(|x| x["client"] == c && x["server"] == s).unwrap().clone()
    };
    let db = edge("api", "orders");
    assert_eq!(db["connection_type"], "database");
    assert_eq!(db["protocol"], "postgresql");
    assert_eq!(db["rate"].as_f64().unwrap(), 10.0 / 300.0);
    assert_eq!(db["error_rate"].as_f64().unwrap(), 0.8);
    assert_eq!(edge("web", "api")["protocol"], "http");
    assert_eq!(edge("api", "shipping")["protocol"], "kafka");
    assert_eq!(edge("api", "shipping")["connection_type"], "messaging_system");
    assert_eq!(edge("api", "redis")["connection_type"], "virtual_node");
    assert_eq!(strings(&g["root_causes"]), ["orders"]);
}

#[test]
fn impact_of_the_database() {
    let e = topology();
    let i = query(&e, r#"{"query":"impact","service":"orders"}"#);
    // The virtual `user` is not a dependent; web is degraded (red), api and
    // batch call the database and fail.
    assert_eq!(strings(&i["dependents"]), ["api", "batch", "auth", "web"]);
    assert_eq!(strings(&i["degraded_dependents"]), ["api", "batch", "web"]);
    assert!(strings(&i["dependencies"]).is_empty());
    assert_eq!(strings(&i["recovery_order"]), ["orders", "api", "auth", "batch", "web"]);
    assert_eq!(i["blast_radius_rps"].as_f64().unwrap(), 20.0 / 300.0);
    assert_eq!(
        (i["root_cause_direction"].as_str(), strings(&i["suspects"])),
        (Some("self"), vec!["orders".to_string()])
    );
    assert_eq!(
        strings(&i["evidence"]),
        ["orders: 90% of 0.07 rps failed (objective: at most 1%), p99 5.1ms against 1s"]
    );
    // All the user traffic (user → web) reaches the database.
    assert_eq!((i["user_facing_rps"].as_f64(), i["user_facing_share"].as_f64()), (Some(10.0 / 300.0), Some(1.0)));
}

#[test]
fn impact_of_the_front_door_orders_recovery_with_the_cycle_grouped() {
    let e = topology();
    let i = query(&e, r#"{"query":"impact","service":"web"}"#);
    assert!(strings(&i["dependents"]).is_empty());
    assert_eq!(strings(&i["dependencies"]), ["api", "auth", "orders", "redis", "shipping"]);
    assert_eq!(strings(&i["recovery_order"]), ["orders", "redis", "shipping", "api", "auth", "web"]);
    let steps = i["recovery_steps"].as_array().unwrap();
    assert_eq!(steps[3], serde_json::json!({"services": ["api", "auth"], "cycle": true, "level": 1}));
    // web is red because the database below it fails.
    assert_eq!(
        (i["root_cause_direction"].as_str(), strings(&i["suspects"])),
        (Some("downstream"), vec!["orders".to_string()])
    );
}

#[test]
fn root_causes_and_global_recovery_order() {
    let e = topology();
    assert_eq!(strings(&query(&e, r#"{"query":"root_causes"}"#)["root_causes"]), ["orders"]);
    let r = query(&e, r#"{"query":"recovery_order"}"#);
    // Unhealthy services (web, api, orders) and everything they depend on; batch
    // and user receive no requests, so they have no health to restore.
    assert_eq!(strings(&r["recovery_order"]), ["orders", "redis", "shipping", "api", "auth", "web"]);
}

#[test]
fn dot_and_mermaid_are_coloured_by_health() {
    let e = topology();
    let dot = String::from_utf8(e.render(Format::GraphDot, T0 + 11 * SEC)).unwrap();
    assert!(dot.starts_with("digraph servicemap {"));
    assert!(dot.contains("\"orders\" [shape=cylinder, style=\"filled,rounded\", fillcolor=\"#c62828\""), "{dot}");
    assert!(
        dot.contains("\"api\" -> \"orders\" [color=\"#c62828\", label=\"0.03 req/s, 80.0% err, p99 5ms\"];"),
        "{dot}"
    );
    let mermaid = String::from_utf8(e.render(Format::GraphMermaid, T0 + 11 * SEC)).unwrap();
    assert!(mermaid.starts_with("graph LR\n"));
    assert!(mermaid.contains("n3[(\"orders\")]:::red"), "{mermaid}");
    assert!(mermaid.contains("classDef red fill:#c62828,color:#fff"));
}

#[test]
fn history_diff_shows_what_appeared_and_changed() {
    let e = engine(r#"{"snapshot_interval":"1m"}"#);
    let mut g = Gen::new();
    g.call(1, "a", "b", false);
    e.consume(&g.batch(), T0).unwrap();
    e.expire(T0);
    g.call(2, "a", "b", true);
    g.call(2, "a", "c", false);
    e.consume(&g.batch(), T0 + 60 * SEC).unwrap();
    e.expire(T0 + 60 * SEC);
    let now = T0 + 60 * SEC;
    let h = e.query(br#"{"query":"history"}"#, now).unwrap();
    assert_eq!(h["snapshots_unix_nano"], serde_json::json!([T0, T0 + 60 * SEC]));
    let d = e.query(format!(r#"{{"query":"diff","from":{T0},"to":{now}}}"#).as_bytes(), now).unwrap();
    assert_eq!(strings(&d["nodes_added"]), ["c"]);
    assert_eq!(d["edges_added"], serde_json::json!([{"client": "a", "server": "c"}]));
    assert_eq!(d["edges_removed"], serde_json::json!([]));
    // One failure in two requests is over the default 1 % budget.
    assert_eq!(
        d["health_changes"],
        serde_json::json!([{"what": "b", "from": "green", "to": "red"}, {"what": "a -> b", "from": "green", "to": "red"}])
    );
}

#[test]
fn edges_from_other_sources_merge_into_the_graph() {
    let e = topology();
    let lines = b"{\"client\":\"lb\",\"server\":\"web\",\"count\":30,\"errors\":0,\"latency_seconds\":0.01,\"protocol\":\"tcp\"}\n\n{\"client\":\"web\",\"server\":\"api\",\"count\":5}\n";
    e.observe_edges(lines, T0 + 11 * SEC).unwrap();
    let i = query(&e, r#"{"query":"impact","service":"web"}"#);
    assert_eq!(strings(&i["dependents"]), ["lb"]);
    let err = e.observe_edges(b"{\"client\":\"a\",\"server\":\"b\"}\n{\"client\":\"a\"}\n", T0).unwrap_err();
    assert_eq!(err.to_string(), "invalid argument: edge line 2: `server` must be a non-empty string");
}

#[test]
fn catalog_slos_decide_health() {
    // A lenient SLO on the database edge turns it yellow instead of red, and
    // the catalog names the database's owner and tier.
    let e = engine(
        r#"{"catalog":{"edges":[{"client":"api","server":"orders","slo":{"availability":0.1}}],"services":{"orders":{"owner":"dba","tier":"0"}}}}"#,
    );
    let mut g = Gen::new();
    for t in 0..10u8 {
        let db = with_attrs(
            span(CLIENT, trace(t), sid(1), None, T0, T0 + SEC / 100),
            vec![s("db.system", "postgresql"), s("db.namespace", "orders")],
        );
        g.add("api", vec![if t < 8 { failed(db) } else { db }]);
    }
    e.consume(&g.batch(), T0).unwrap();
    let v = e.graph_view(T0).unwrap();
    // 80 % errors is under the 90 % budget but over 80 % of it.
    assert_eq!(v.edges[0].health, servicemap::map::Health::Yellow);
    assert_eq!(v.edges[0].reason, "error rate 80.00% near the budget 90.00%");
    assert_eq!(v.node("orders").unwrap().tier, "0");
    assert_eq!(v.node("orders").unwrap().facts.owner, "dba");
}

/// Each edge links its slowest request in the window to its trace; an edge
/// known only from other sources (no trace) links none.
#[test]
fn edges_link_their_slowest_request_to_its_trace() {
    let e = engine(r#"{"graph_window":"5m"}"#);
    let mut spans = (Vec::new(), Vec::new());
    for (t, ms) in [(1u8, 10u64), (2, 40), (3, 20)] {
        let (c, sv) = (sid(2 * t), sid(2 * t + 1));
        spans.0.push(span(CLIENT, trace(t), c.clone(), None, T0, T0 + 50_000_000));
        spans.1.push(span(SERVER, trace(t), sv, Some(c), T0, T0 + ms * 1_000_000));
    }
    let resources = vec![resource(Some("web"), vec![], spans.0), resource(Some("api"), vec![], spans.1)];
    e.consume(&batch(resources), T0).unwrap();
    e.observe_edges(br#"{"client":"api","server":"ledger","count":3,"latency_seconds":0.5}"#, T0).unwrap();
    let g: Value = serde_json::from_slice(&e.render(Format::GraphJson, T0 + SEC)).unwrap();
    let edge = |c: &str, s: &str| {
        g["edges"].as_array().unwrap().iter().find(|x| x["client"] == c && x["server"] == s).unwrap().clone()
    };
    let hex: String = trace(2).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(edge("web", "api")["slowest_trace_id"], Value::String(hex));
    assert_eq!(edge("web", "api")["slowest_seconds"].as_f64(), Some(0.04));
    assert_eq!(edge("api", "ledger")["slowest_trace_id"], Value::Null);
    assert_eq!(edge("api", "ledger")["slowest_seconds"], Value::Null);
}

#[test]
fn failures_only_the_caller_saw_point_upstream() {
    let e = engine("{}");
    let mut g = Gen::new();
    for t in 0..4u8 {
        g.next = g.next.wrapping_add(2);
        let (c, sv) = (sid(g.next), sid(g.next + 1));
        // The client gives up on two of four requests; the server's spans say they went well.
        let client = span(CLIENT, trace(t), c.clone(), None, T0, T0 + 20_000_000);
        g.add("web", vec![if t < 2 { failed(client) } else { client }]);
        g.add("api", vec![span(SERVER, trace(t), sv, Some(c), T0, T0 + 10_000_000)]);
    }
    e.consume(&g.batch(), T0).unwrap();
    let i = query(&e, r#"{"query":"impact","service":"api"}"#);
    assert_eq!((i["health"].as_str(), i["error_rate"].as_f64()), (Some("red"), Some(0.5)));
    assert_eq!(
        (i["root_cause_direction"].as_str(), strings(&i["suspects"])),
        (Some("upstream"), vec!["web".to_string()])
    );
    assert_eq!(
        strings(&i["evidence"]),
        ["web: 50% of its 0.01 rps to api failed on its side, while api recorded no failure"]
    );
}

#[test]
fn root_server_spans_are_user_traffic_without_virtual_nodes() {
    // contrib without peer attributes makes no virtual-node series; the
    // map still counts a root server span as a request entering from users.
    let e = engine(r#"{"compat":"contrib","virtual_node_peer_attributes":[]}"#);
    let mut g = Gen::new();
    for t in 0..3u8 {
        g.add("web", vec![span(SERVER, trace(t), sid(200), None, T0, T0 + 30_000_000)]);
        g.call(t, "web", "api", false);
    }
    g.add("admin", vec![span(SERVER, trace(9), sid(201), None, T0, T0 + 30_000_000)]);
    e.consume(&g.batch(), T0).unwrap();
    e.expire_all(T0);
    let i = e.query(br#"{"query":"impact","service":"api"}"#, T0).unwrap();
    assert_eq!((i["user_facing_rps"].as_f64(), i["user_facing_share"].as_f64()), (Some(3.0 / 300.0), Some(0.75)));
    assert_eq!(strings(&i["dependents"]), ["web"]);
    let metrics = String::from_utf8(e.render(Format::Prometheus, T0)).unwrap();
    assert!(!metrics.contains("client=\"user\""), "{metrics}");
}
