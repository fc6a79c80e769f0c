use super::sketch::*;
use super::*;

fn obs<'a>(c: &'a str, s: &'a str, latency: f64, errors: f64) -> Observation<'a> {
    Observation {
        client: c,
        server: s,
        conn: ConnType::Plain,
        protocol: "http",
        count: 1.0,
        errors,
        latency_s: latency,
        virtual_client: false,
        virtual_server: false,
    }
}

const W: Window = Window { length: Duration::from_secs(300), slots: 30 };
const SEC: u64 = 1_000_000_000;

#[test]
fn a_full_map_removes_its_least_used_eighth_and_keeps_steady_traffic() {
    let mut g = Graph::with_limits(W, Limits { max_nodes: 1000, max_edges: 16 });
    g.report_service("lonely", Facts::default(), SEC);
    let mut steady = obs("web", "api", 0.1, 0.0);
    steady.count = 50.0;
    g.observe(&steady, SEC);
    let names: Vec<String> = (0..100).map(|i| format!("junk-{i}")).collect();
    for (i, n) in names.iter().enumerate() {
        g.observe(&obs(n, "sink", 0.1, 0.0), (2 + i as u64) * SEC);
    }
    assert!(g.edge_count() <= 16);
    assert_eq!(g.edge_count() as u64 + g.evicted_edges, 101);
    let view = g.view(102 * SEC, &Catalog::default());
    // The edge with steady traffic, the newest junk and the service known
    // by its facts alone stay; the oldest junk edges went with their nodes.
    assert!(view.edges.iter().any(|e| e.client == "web" && e.server == "api"));
    assert!(view.edges.iter().any(|e| e.client == "junk-99"));
    assert!(!view.edges.iter().any(|e| e.client == "junk-0"));
    assert!(view.node("lonely").is_some() && view.node("junk-0").is_none());
    assert_eq!(g.nodes.len() as u64 + g.evicted_nodes, 100 + 4);
}

#[test]
fn a_full_node_table_removes_its_least_used_nodes_with_their_edges() {
    let mut g = Graph::with_limits(W, Limits { max_nodes: 8, max_edges: 1000 });
    let mut steady = obs("web", "api", 0.1, 0.0);
    steady.count = 50.0;
    g.observe(&steady, SEC);
    for i in 0..20 {
        g.report_service(&format!("svc-{i}"), Facts::default(), (2 + i) * SEC);
    }
    assert!(g.nodes.len() <= 8);
    assert_eq!(g.nodes.len() as u64 + g.evicted_nodes, 22);
    assert!(g.node_index.contains_key("web") && g.node_index.contains_key("api"));
    assert!(g.node_index.contains_key("svc-19") && !g.node_index.contains_key("svc-0"));
    assert_eq!(g.edge_count(), 1);
}

#[test]
fn rate_errors_and_percentiles_over_the_window() {
    let mut g = Graph::new(W);
    for i in 0..100 {
        let latency = if i < 90 { 0.01 } else { 1.0 };
        g.observe(&obs("a", "b", latency, if i % 10 == 0 { 1.0 } else { 0.0 }), 1000 * SEC);
    }
    let v = g.view(1000 * SEC, &Catalog::default());
    let e = &v.edges[0];
    assert_eq!(e.rate, 100.0 / 300.0);
    assert_eq!(e.error_rate, 0.1);
    // 0.01 s falls in bucket 21, upper bound 1e-4 * 1.25^21 = 0.01088...
    assert_eq!(sketch_index(0.01), 21);
    assert_eq!(e.p50_s, Some(sketch_upper(21)));
    assert_eq!(e.p90_s, Some(sketch_upper(21)));
    assert_eq!(e.p99_s, Some(sketch_upper(sketch_index(1.0))));
    // After the window has passed, the edge has no traffic but is still known.
    let later = g.view(1000 * SEC + 301 * SEC, &Catalog::default());
    assert_eq!((later.edges[0].rate, later.edges[0].health), (0.0, Health::Unknown));
}

#[test]
fn sketch_index_is_the_first_bound_at_or_above() {
    let search = |v: f64| SKETCH_BOUNDS.partition_point(|&b| b < v).min(SKETCH_BUCKETS - 1);
    let around = |v: f64| [v, f64::from_bits(v.to_bits() + 1), f64::from_bits(v.to_bits() - 1)];
    let mut v: f64 = 1e-7;
    while v < 1e4 {
        for x in around(v) {
            assert_eq!(sketch_index(x), search(x), "{x}");
        }
        v *= 1.0137;
    }
    for &b in SKETCH_BOUNDS.iter() {
        for x in around(b) {
            assert_eq!(sketch_index(x), search(x), "{x}");
        }
    }
    // Where the lookup table's sub-intervals start.
    for octave in 0..SKETCH_OCTAVES as i32 {
        for sub in 0..1 << SKETCH_SUB_BITS {
            let start = SKETCH_MIN * 2f64.powi(octave) * (1.0 + sub as f64 / (1 << SKETCH_SUB_BITS) as f64);
            for x in around(start) {
                assert_eq!(sketch_index(x), search(x), "{x}");
            }
        }
    }
    for x in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, f64::MAX, f64::MIN_POSITIVE] {
        assert_eq!(sketch_index(x), search(x), "{x}");
    }
}

#[test]
fn quantiles_in_one_pass_are_the_quantiles() {
    let mut sketch = [0u32; SKETCH_BUCKETS];
    let qs = [0.0, 0.5, 0.9, 0.99, 1.0, 0.25];
    assert_eq!(quantiles(&sketch, qs), qs.map(|q| quantile(&sketch, q)));
    for (i, c) in [(3, 5), (7, 1), (20, 90), (40, 3), (63, 1)] {
        sketch[i] = c;
        assert_eq!(quantiles(&sketch, qs), qs.map(|q| quantile(&sketch, q)));
    }
}

#[test]
fn node_kinds_and_deploys() {
    let mut g = Graph::new(W);
    let mut db = obs("api", "postgres", 0.01, 0.0);
    db.conn = ConnType::Database;
    g.observe(&db, SEC);
    let mut user = obs("user", "api", 0.01, 0.0);
    user.virtual_client = true;
    g.observe(&user, SEC);
    g.report_service("api", Facts { version: "1.0".into(), ..Default::default() }, SEC);
    g.report_service("api", Facts { version: "1.0".into(), ..Default::default() }, 2 * SEC);
    g.report_service("api", Facts { version: "1.1".into(), owner: "team-a".into(), ..Default::default() }, 3 * SEC);
    let v = g.view(3 * SEC, &Catalog::default());
    assert_eq!(v.node("postgres").unwrap().kind, NodeKind::Database);
    assert_eq!(v.node("user").unwrap().kind, NodeKind::User);
    let api = v.node("api").unwrap();
    assert_eq!((api.kind, api.last_deploy_ns, api.facts.owner.as_str()), (NodeKind::Service, Some(3 * SEC), "team-a"));
}
