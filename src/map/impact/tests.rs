use super::*;
use crate::map::graph::{Facts, NodeView};
use crate::map::history::Snapshot;
use crate::series::ConnType;

fn view(edges: &[(&str, &str, f64)], unhealthy: &[&str]) -> View {
    let mut names: BTreeSet<&str> = BTreeSet::new();
    for (c, s, _) in edges {
        names.insert(c);
        names.insert(s);
    }
    View {
        at_ns: 0,
        window_s: 300.0,
        nodes: names
            .iter()
            .map(|n| NodeView {
                name: n.to_string(),
                kind: NodeKind::Service,
                facts: Facts::default(),
                first_seen_ns: 0,
                last_seen_ns: 0,
                last_deploy_ns: None,
                health: if unhealthy.contains(n) { Health::Red } else { Health::Green },
                rate: 0.0,
                error_rate: 0.0,
                tier: String::new(),
            })
            .collect(),
        edges: edges
            .iter()
            .map(|(c, s, r)| EdgeView {
                client: c.to_string(),
                server: s.to_string(),
                conn: ConnType::Plain,
                protocol: String::new(),
                first_seen_ns: 0,
                last_seen_ns: 0,
                rate: *r,
                error_rate: 0.0,
                client_only_error_rate: 0.0,
                p50_s: None,
                p90_s: None,
                p99_s: Some(0.02),
                health: Health::Green,
                reason: String::new(),
                slowest: None,
            })
            .collect(),
    }
}

// web -> api -> {db, cache}; api <-> auth (a cycle); batch -> db
const EDGES: &[(&str, &str, f64)] = &[
    ("web", "api", 10.0),
    ("api", "db", 8.0),
    ("api", "cache", 5.0),
    ("api", "auth", 3.0),
    ("auth", "api", 1.0),
    ("batch", "db", 2.0),
];

fn imp(v: &View, service: &str) -> Impact {
    impact(v, &History::new(1, 10), &Catalog::default(), service)
}

fn step(services: &[&str], cycle: bool, level: usize) -> RecoveryStep {
    RecoveryStep { services: services.iter().map(|s| s.to_string()).collect(), cycle, level }
}

/// Marks edges into `server` as failing at `error_rate` and red.
fn failing(v: &mut View, server: &str, error_rate: f64) {
    for e in v.edges.iter_mut().filter(|e| e.server == server) {
        e.error_rate = error_rate;
        e.health = Health::Red;
    }
}

#[test]
fn impact_of_a_database_brings_back_its_callers_after_it() {
    let v = view(EDGES, &[]);
    let i = imp(&v, "db");
    assert_eq!(i.dependents, ["api", "batch", "auth", "web"]);
    assert!(i.dependencies.is_empty() && i.degraded_dependents.is_empty());
    assert_eq!(i.recovery_order, ["db", "api", "auth", "batch", "web"]);
    assert_eq!(
        i.recovery_steps,
        vec![
            step(&["db"], false, 0),
            step(&["api", "auth"], true, 1),
            step(&["batch"], false, 1),
            step(&["web"], false, 2)
        ]
    );
    assert_eq!(i.blast_radius_rps, 10.0);
    assert_eq!((i.root_cause_direction, i.suspects.len()), (Direction::None, 0));
}

#[test]
fn recovery_order_puts_dependencies_first_and_groups_cycles() {
    let v = view(EDGES, &[]);
    let i = imp(&v, "web");
    assert_eq!(i.dependencies, ["api", "auth", "cache", "db"]);
    assert_eq!(i.recovery_order, ["cache", "db", "api", "auth", "web"]);
    assert_eq!(
        i.recovery_steps,
        vec![
            step(&["cache"], false, 0),
            step(&["db"], false, 0),
            step(&["api", "auth"], true, 1),
            step(&["web"], false, 2)
        ]
    );
}

#[test]
fn a_failing_leaf_is_the_suspect_of_everything_above_it() {
    let mut v = view(EDGES, &["db", "api", "web", "batch"]);
    failing(&mut v, "db", 0.5);
    let web = imp(&v, "web");
    assert_eq!((web.root_cause_direction, web.suspects.clone()), (Direction::Downstream, vec!["db".to_string()]));
    assert_eq!(web.evidence, ["db: 50% of 10 rps failed (objective: at most 1%), p99 20ms against 1s"]);
    let db = imp(&v, "db");
    assert_eq!((db.root_cause_direction, db.suspects.clone()), (Direction::Here, vec!["db".to_string()]));
    // api and batch call db and fail; web is red itself.
    assert_eq!(db.degraded_dependents, ["api", "batch", "web"]);
    assert_eq!((db.rate, db.error_rate), (10.0, 0.5));
    assert_eq!(db.callers, ["api", "batch"]);
}

#[test]
fn a_failing_cycle_is_one_cause() {
    let v = view(EDGES, &["web", "api", "auth"]);
    let i = imp(&v, "web");
    assert_eq!(
        (i.root_cause_direction, i.suspects.clone()),
        (Direction::Downstream, vec!["api".into(), "auth".into()])
    );
    // Seen from inside the cycle, the cause is here: the cycle itself.
    let api = imp(&v, "api");
    assert_eq!((api.root_cause_direction, api.suspects), (Direction::Here, vec!["api".into(), "auth".into()]));
}

#[test]
fn failures_only_the_callers_saw_point_upstream() {
    let mut v = view(EDGES, &["api"]);
    // web's calls to api fail on web's side; api's own spans say they went well.
    for e in v.edges.iter_mut().filter(|e| e.server == "api") {
        (e.error_rate, e.health) = (0.2, Health::Red);
        e.client_only_error_rate = if e.client == "web" { 0.2 } else { 0.0 };
    }
    v.edges.iter_mut().find(|e| e.client == "auth").unwrap().error_rate = 0.0;
    let i = imp(&v, "api");
    assert_eq!((i.root_cause_direction, i.suspects.clone()), (Direction::Upstream, vec!["web".to_string()]));
    assert_eq!(i.evidence, ["web: 20% of its 10 rps to api failed on its side, while api recorded no failure"]);
    // web, whose own calls fail, finds the cause in itself.
    let web = imp(&v, "web");
    assert_eq!((web.root_cause_direction, web.suspects), (Direction::Here, vec!["web".to_string()]));
    assert_eq!(web.evidence, i.evidence);
    // Once api records one failure of its own, the cause is here.
    v.edges.iter_mut().find(|e| e.client == "auth").unwrap().error_rate = 0.5;
    assert_eq!(imp(&v, "api").root_cause_direction, Direction::Here);
}

#[test]
fn a_degraded_dependent_is_one_whose_calls_toward_the_service_fail() {
    let mut v = view(EDGES, &[]);
    // web's calls to api fail; web itself (nothing calls it) is green.
    failing(&mut v, "api", 0.2);
    let i = imp(&v, "db");
    assert_eq!(i.degraded_dependents, ["auth", "web"]);
}

#[test]
fn users_are_not_dependents_but_their_traffic_is_counted() {
    let mut edges = EDGES.to_vec();
    edges.extend([("user", "web", 4.0), ("user", "batch", 1.0), ("partner", "cache", 5.0)]);
    let mut v = view(&edges, &[]);
    for n in v.nodes.iter_mut() {
        n.kind = match n.name.as_str() {
            "user" => NodeKind::User,
            "partner" => NodeKind::External,
            _ => NodeKind::Service,
        };
    }
    let api = imp(&v, "api");
    assert_eq!(api.dependents, ["auth", "web"]);
    // Entering through web (4), not batch (1) nor the partner's cache calls (5).
    assert_eq!((api.user_facing_rps, api.user_facing_share), (4.0, 0.4));
    let db = imp(&v, "db");
    assert_eq!((db.user_facing_rps, db.user_facing_share), (5.0, 0.5));
    assert!(!db.recovery_order.contains(&"user".to_string()));
    // Asked about the virtual client itself: it is never a step to bring back.
    let user = imp(&v, "user");
    assert_eq!(user.recovery_order, ["cache", "db", "api", "auth", "batch", "web"]);
}

#[test]
fn a_surge_from_a_caller_points_upstream() {
    let mut history = History::new(1, 10);
    for t in 1..=4 {
        let mut s = Snapshot { at_ns: t * 1_000_000_000, ..Default::default() };
        s.node_rates.insert("api".into(), 11.0);
        s.edge_rates.insert(("web".into(), "api".into()), 10.0);
        s.edge_rates.insert(("auth".into(), "api".into()), 1.0);
        history.push(s);
    }
    let mut edges = EDGES.to_vec();
    edges[0].2 = 50.0;
    let mut v = view(&edges, &["api", "web"]);
    v.at_ns = 400 * 1_000_000_000;
    let i = impact(&v, &history, &Catalog::default(), "api");
    assert_eq!((i.root_cause_direction, i.suspects.clone()), (Direction::Upstream, vec!["web".to_string()]));
    assert_eq!(i.evidence, ["api receives 51 rps, 4.6× its usual 11 rps; web sends 50 rps, against a usual 10 rps"]);
    // Without a baseline, the same trouble is the service's own.
    assert_eq!(imp(&v, "api").root_cause_direction, Direction::Here);
}

#[test]
fn root_causes_are_unhealthy_with_healthy_dependencies() {
    // db is broken; api and web suffer from it.
    assert_eq!(root_causes(&view(EDGES, &["web", "api", "db"])), ["db"]);
    // The api/auth cycle is broken on its own.
    assert_eq!(root_causes(&view(EDGES, &["web", "api", "auth"])), ["api", "auth"]);
    // Two independent causes.
    assert_eq!(root_causes(&view(EDGES, &["cache", "batch"])), ["batch", "cache"]);
    let order = recovery_order(&view(EDGES, &["web", "db"]));
    let flat: Vec<_> = order.iter().flat_map(|s| s.services.clone()).collect();
    assert_eq!(flat, ["cache", "db", "api", "auth", "web"]);
}

#[test]
fn unknown_service() {
    let i = imp(&view(EDGES, &[]), "nope");
    assert!(!i.found && i.dependents.is_empty());
}

#[test]
fn components_of_a_chain_longer_than_any_stack() {
    // s0000000 → s0000001 → … → s0999999 → s0999998: one cycle at the end.
    let n = 1_000_000;
    let names: Vec<String> = (0..n).map(|i| format!("s{i:07}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let edges = (0..n - 1).map(|i| (i, i + 1)).chain([(n - 1, n - 2)]);
    let a = Adjacency::from_pairs(refs, edges);
    let comps = a.components(&(0..n).collect());
    assert_eq!(comps.len(), n - 1);
    // Dependencies first: the cycle at the far end, then back to the start.
    assert_eq!(comps[0], vec![n - 2, n - 1]);
    assert_eq!(comps[1], vec![n - 3]);
    assert_eq!(comps[n - 2], vec![0]);
}
