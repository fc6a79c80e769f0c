use super::sketch::*;
use super::*;
use crate::series::native::bucket_key;

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

/// `got` is `want` but for the last bits (`powf` rounds).
fn close(got: Option<f64>, want: f64) -> bool {
    got.is_some_and(|g| (g - want).abs() <= want * 1e-14)
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
    // 0.01 s is in bucket -53, (2^(-54/8), 2^(-53/8)] = (0.009291, 0.010132];
    // 1 s ends bucket 0. The 50th request is 50/90 into the first's count,
    // the 90th ends it, the 99th is 9/10 into the second's.
    assert_eq!(sketch_index(0.01) as i32 + FIRST_KEY, -53);
    assert!(close(e.p50_s, 0.009_748_827_594_628_04), "{:?}", e.p50_s);
    assert_eq!(e.p90_s, Some(sketch_upper(sketch_index(0.01))));
    assert!(close(e.p90_s, 0.010_131_559_020_711_013));
    assert!(close(e.p99_s, 0.991_373_087_462_662_1), "{:?}", e.p99_s);
    // After the window has passed, the edge has no traffic but is still known.
    let later = g.view(1000 * SEC + 301 * SEC, &Catalog::default());
    assert_eq!((later.edges[0].rate, later.edges[0].health), (0.0, Health::Unknown));
}

#[test]
fn a_percentile_is_within_a_bucket_of_the_latency() {
    let mut g = Graph::new(W);
    for _ in 0..100 {
        g.observe(&obs("a", "b", 0.01, 0.0), SEC);
    }
    let e = &g.view(SEC, &Catalog::default()).edges[0];
    let p50 = e.p50_s.unwrap();
    assert!((0.01 / 1.0905..=0.01 * 1.0905).contains(&p50), "{p50}");
    // Half way through bucket -53 on a log scale: 2^(-53.5/8).
    assert!(close(e.p50_s, 0.009_702_014_156_824_094), "{p50}");
}

#[test]
fn latencies_a_bucket_apart_show_different_percentiles() {
    // The old sketch gave both edges a p99 of 0.308 s (1e-4 · 1.25^36).
    let mut g = Graph::new(W);
    for _ in 0..100 {
        g.observe(&obs("a", "b", 0.28, 0.0), SEC);
        g.observe(&obs("a", "c", 0.30, 0.0), SEC);
    }
    let v = g.view(SEC, &Catalog::default());
    let (b, c) = (v.edges[0].p99_s, v.edges[1].p99_s);
    // 0.99 of the way through buckets -14 and -13: 2^(-14.01/8), 2^(-13.01/8).
    assert!(close(b, 0.297_044_297_949_699_4), "{b:?}");
    assert!(close(c, 0.323_929_103_858_27), "{c:?}");
}

#[test]
fn sketch_indexes_are_native_keys_clamped_to_the_range() {
    // The range the old sketch covered: 100 µs in the first bucket, 127 s in the last.
    assert_eq!(bucket_key(1e-4, SCHEMA), FIRST_KEY);
    assert_eq!(bucket_key(127.0, SCHEMA), LAST_KEY);
    assert_eq!((SKETCH_BUCKETS, sketch_upper(SKETCH_BUCKETS - 1)), (163, 128.0));
    assert!(close(Some(sketch_upper(0)), 1.026_484_881_901_507e-4));
    // Each bound ends its bucket; the next float starts the next one.
    for i in 0..SKETCH_BUCKETS - 1 {
        let upper = sketch_upper(i);
        assert_eq!(sketch_index(upper), i, "{upper}");
        assert_eq!(sketch_index(f64::from_bits(upper.to_bits() + 1)), i + 1, "{upper}");
        assert_eq!(bucket_key(upper, SCHEMA), FIRST_KEY + i as i32);
    }
    let last_lower = sketch_upper(SKETCH_BUCKETS - 2);
    assert!(close(Some(last_lower), 117.376_517_530_197_92));
    for x in [0.0, -0.0, -1.0, f64::NAN, f64::NEG_INFINITY, f64::MIN_POSITIVE, 5e-324, 1e-30, 5e-5, 1e-4] {
        assert_eq!(sketch_index(x), 0, "{x}");
    }
    for x in [f64::from_bits(128f64.to_bits() + 1), 1e4, f64::MAX, f64::INFINITY] {
        assert_eq!(sketch_index(x), SKETCH_BUCKETS - 1, "{x}");
    }
}

#[test]
fn quantiles_in_one_pass_are_the_quantiles() {
    let mut sketch = [0u32; SKETCH_BUCKETS];
    let qs = [0.0, 0.05, 0.25, 0.5, 0.9, 0.99, 1.0];
    assert_eq!(quantiles(&sketch, qs), [None; 7]);
    for (i, c) in [(3, 5), (7, 1), (20, 90), (40, 3), (162, 1)] {
        sketch[i] = c;
        assert_eq!(quantiles(&sketch, qs), qs.map(|q| quantile(&sketch, q)));
    }
    // Bucket i ends at 2^((i - 106)/8); the rank q·100 lands `f` of the
    // way into a bucket's count, and the value 2^((i - 107 + f)/8).
    let at = |i: i32, f: f64| 2f64.powf((i as f64 - 107.0 + f) / 8.0);
    let got = quantiles(&sketch, qs);
    let want =
        [at(3, 0.0), at(3, 1.0), at(20, 19.0 / 90.0), at(20, 44.0 / 90.0), at(20, 84.0 / 90.0), at(40, 1.0), 128.0];
    for (g, w) in got.iter().zip(want) {
        assert!(close(*g, w), "{got:?} against {want:?}");
    }
    // The ends are the bucket's bounds exactly.
    assert_eq!((got[0], got[1], got[6]), (Some(2f64.powi(-13)), Some(sketch_upper(3)), Some(128.0)));
    // Out of [0, 1]: the nearer end.
    assert_eq!(quantiles(&sketch, [-1.0, f64::NAN, 2.0]), [got[0], got[0], got[6]]);
}

#[test]
fn a_slot_keeps_the_run_of_buckets_its_latencies_reach() {
    // 5 ms to 20 ms, two octaves: buckets -61 to -45, 17 of them, 68 bytes.
    let mut s = Sketch::default();
    for v in [0.01, 0.02, 0.005, 0.007, 0.015] {
        s.add(v, 1);
    }
    assert_eq!(s.heap_bytes(), 17 * 4);
    let mut dense = [0u32; SKETCH_BUCKETS];
    s.add_to(&mut dense);
    s.add_to(&mut dense);
    let at = |v: f64| dense[sketch_index(v)];
    assert_eq!((at(0.005), at(0.007), at(0.01), at(0.015), at(0.02), dense.iter().sum::<u32>()), (2, 2, 2, 2, 2, 10));
    // A new period keeps the storage; the whole range is the most it takes.
    s.clear();
    s.add(0.01, 3);
    assert_eq!(s.heap_bytes(), 17 * 4);
    s.add(1e9, 1);
    s.add(0.0, 1);
    assert_eq!(s.heap_bytes(), SKETCH_BUCKETS * 4);
    let mut dense = [0u32; SKETCH_BUCKETS];
    s.add_to(&mut dense);
    assert_eq!((dense[0], dense[sketch_index(0.01)], dense[SKETCH_BUCKETS - 1]), (1, 3, 1));
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
