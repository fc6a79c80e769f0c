//! Incident questions answered over a [`View`] of the graph: who depends on a
//! service, what it depends on, where the cause lies, and what to bring back
//! first.

use crate::catalog::Catalog;
use crate::graph::{Graph, Health, View};
use std::collections::{BTreeSet, HashMap, VecDeque};

/// The graph as adjacency lists of node indexes.
struct Adjacency<'a> {
    names: Vec<&'a str>,
    callees: Vec<Vec<usize>>,
    callers: Vec<Vec<usize>>,
}

impl<'a> Adjacency<'a> {
    /// From node names and edges as (client, server) indexes into them. The
    /// order of either does not matter: every walk below orders by name.
    fn from_pairs(names: Vec<&'a str>, edges: impl Iterator<Item = (usize, usize)>) -> Adjacency<'a> {
        let mut callees = vec![Vec::new(); names.len()];
        let mut callers = vec![Vec::new(); names.len()];
        for (c, s) in edges {
            if c != s {
                callees[c].push(s);
                callers[s].push(c);
            }
        }
        Adjacency { names, callees, callers }
    }

    fn new(view: &'a View) -> Adjacency<'a> {
        let names: Vec<&str> = view.nodes.iter().map(|n| n.name.as_str()).collect();
        let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let pairs =
            view.edges.iter().filter_map(|e| Some((*index.get(e.client.as_str())?, *index.get(e.server.as_str())?)));
        let pairs: Vec<(usize, usize)> = pairs.collect();
        Adjacency::from_pairs(names, pairs.into_iter())
    }

    /// Nodes reachable from `start` (not including it), nearest first.
    fn reach(&self, start: usize, next: &[Vec<usize>]) -> Vec<usize> {
        let mut seen = vec![false; self.names.len()];
        seen[start] = true;
        let mut queue = VecDeque::from([start]);
        let mut out = Vec::new();
        while let Some(n) = queue.pop_front() {
            let mut step: Vec<usize> = next[n].iter().copied().filter(|&m| !seen[m]).collect();
            step.sort_by_key(|&m| self.names[m]);
            step.dedup();
            for m in step {
                seen[m] = true;
                out.push(m);
                queue.push_back(m);
            }
        }
        out
    }

    /// Strongly connected components (Tarjan), each sorted by name; a
    /// component is emitted only after every component it calls. The walk
    /// keeps its own stack of frames: a chain of services as long as the map
    /// may hold must not use up the thread's stack.
    fn components(&self, within: &BTreeSet<usize>) -> Vec<Vec<usize>> {
        let n = self.names.len();
        let mut member = vec![false; n];
        for &v in within {
            member[v] = true;
        }
        let mut index: Vec<Option<usize>> = vec![None; n];
        let mut low = vec![0; n];
        let mut on_stack = vec![false; n];
        let mut stack = Vec::new();
        let mut next = 0;
        let mut out = Vec::new();
        // A frame: a node being visited, its callees by name, the next one to look at.
        let mut frames: Vec<(usize, Vec<usize>, usize)> = Vec::new();
        let mut order: Vec<usize> = within.iter().copied().collect();
        order.sort_by_key(|&v| self.names[v]);
        for root in order {
            if index[root].is_some() {
                continue;
            }
            let mut enter = Some(root);
            loop {
                if let Some(v) = enter.take() {
                    index[v] = Some(next);
                    low[v] = next;
                    next += 1;
                    stack.push(v);
                    on_stack[v] = true;
                    let mut callees: Vec<usize> = self.callees[v].iter().copied().filter(|&w| member[w]).collect();
                    callees.sort_by_key(|&w| self.names[w]);
                    frames.push((v, callees, 0));
                }
                let Some((v, callees, at)) = frames.last_mut() else { break };
                let v = *v;
                if let Some(&w) = callees.get(*at) {
                    *at += 1;
                    match index[w] {
                        None => enter = Some(w),
                        Some(iw) if on_stack[w] => low[v] = low[v].min(iw),
                        _ => {}
                    }
                    continue;
                }
                // Every callee seen: close v, and hand its low link to its caller.
                frames.pop();
                if let Some((caller, _, _)) = frames.last() {
                    low[*caller] = low[*caller].min(low[v]);
                }
                if Some(low[v]) == index[v] {
                    let mut comp = Vec::new();
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        comp.push(w);
                        if w == v {
                            break;
                        }
                    }
                    comp.sort_by_key(|&w| self.names[w]);
                    out.push(comp);
                }
            }
        }
        out
    }
}

/// One step of a recovery order: a service, or a cycle of services that
/// depend on each other and have to come back together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryStep {
    pub services: Vec<String>,
    pub cycle: bool,
}

/// The answer to "what if this service breaks?".
#[derive(Debug, Clone, PartialEq)]
pub struct Impact {
    pub service: String,
    pub found: bool,
    /// Transitive callers, nearest first.
    pub dependents: Vec<String>,
    /// Transitive callees, nearest first.
    pub dependencies: Vec<String>,
    /// The service and its dependencies, dependencies first, flattened.
    pub recovery_order: Vec<String>,
    pub recovery_steps: Vec<RecoveryStep>,
    /// Requests per second that reach the service directly: what fails at once if it breaks.
    pub blast_radius_rps: f64,
    pub health: Health,
}

pub fn impact(view: &View, service: &str) -> Impact {
    let a = Adjacency::new(view);
    let Some(i) = a.names.iter().position(|n| *n == service) else { return not_found(service) };
    let blast_radius_rps =
        view.edges.iter().filter(|e| e.server == service && e.client != service).map(|e| e.rate).sum();
    impact_of(&a, i, blast_radius_rps, view.nodes[i].health)
}

/// As [`impact`] over `graph.view(now_ns, catalog)`, the same answer without
/// computing the view: the walks need only which edges exist, and traffic
/// and health are read for the one service's incoming edges.
pub fn impact_on_graph(graph: &Graph, now_ns: u64, catalog: &Catalog, service: &str) -> Impact {
    let Some(i) = graph.node_position(service) else { return not_found(service) };
    let a = Adjacency::from_pairs(graph.node_names().collect(), graph.edge_pairs());
    let (health, blast_radius_rps) = graph.node_health_and_inflow(i, now_ns, catalog);
    impact_of(&a, i, blast_radius_rps, health)
}

fn not_found(service: &str) -> Impact {
    Impact {
        service: service.to_string(),
        found: false,
        dependents: vec![],
        dependencies: vec![],
        recovery_order: vec![],
        recovery_steps: vec![],
        blast_radius_rps: 0.0,
        health: Health::Unknown,
    }
}

fn impact_of(a: &Adjacency, i: usize, blast_radius_rps: f64, health: Health) -> Impact {
    let names = |v: Vec<usize>| v.into_iter().map(|n| a.names[n].to_string()).collect::<Vec<_>>();
    let dependents = names(a.reach(i, &a.callers));
    let deps = a.reach(i, &a.callees);
    let mut within: BTreeSet<usize> = deps.iter().copied().collect();
    within.insert(i);
    let steps = steps(a, &a.components(&within));
    Impact {
        service: a.names[i].to_string(),
        found: true,
        dependents,
        dependencies: names(deps),
        recovery_order: steps.iter().flat_map(|s| s.services.clone()).collect(),
        recovery_steps: steps,
        blast_radius_rps,
        health,
    }
}

fn steps(a: &Adjacency, comps: &[Vec<usize>]) -> Vec<RecoveryStep> {
    comps
        .iter()
        .map(|c| RecoveryStep {
            services: c.iter().map(|&n| a.names[n].to_string()).collect(),
            cycle: c.len() > 1 || a.callees[c[0]].contains(&c[0]),
        })
        .collect()
}

/// Unhealthy services whose own dependencies are healthy: where to look
/// first. A cycle of unhealthy services with no unhealthy dependency
/// outside it counts as one cause, and all its members are listed.
pub fn root_causes(view: &View) -> Vec<String> {
    let a = Adjacency::new(view);
    let bad: BTreeSet<usize> = (0..a.names.len()).filter(|&i| view.nodes[i].health.is_unhealthy()).collect();
    let mut out = Vec::new();
    for comp in a.components(&bad) {
        let members: BTreeSet<usize> = comp.iter().copied().collect();
        let blamed_elsewhere =
            comp.iter().any(|&v| a.callees[v].iter().any(|w| bad.contains(w) && !members.contains(w)));
        if !blamed_elsewhere {
            out.extend(comp.iter().map(|&v| a.names[v].to_string()));
        }
    }
    out.sort();
    out
}

/// What to bring back first across all unhealthy services and their
/// dependencies: dependencies first, cycles grouped.
pub fn recovery_order(view: &View) -> Vec<RecoveryStep> {
    let a = Adjacency::new(view);
    let mut within = BTreeSet::new();
    for i in (0..a.names.len()).filter(|&i| view.nodes[i].health.is_unhealthy()) {
        within.insert(i);
        within.extend(a.reach(i, &a.callees));
    }
    steps(&a, &a.components(&within))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::ConnType;
    use crate::graph::{EdgeView, Facts, NodeKind, NodeView};

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
                    p50_s: None,
                    p90_s: None,
                    p99_s: None,
                    health: Health::Green,
                    reason: String::new(),
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

    #[test]
    fn impact_of_a_database() {
        let v = view(EDGES, &[]);
        let i = impact(&v, "db");
        assert_eq!(i.dependents, ["api", "batch", "auth", "web"]);
        assert!(i.dependencies.is_empty());
        assert_eq!(i.recovery_order, ["db"]);
        assert_eq!(i.blast_radius_rps, 10.0);
    }

    #[test]
    fn recovery_order_puts_dependencies_first_and_groups_cycles() {
        let v = view(EDGES, &[]);
        let i = impact(&v, "web");
        assert_eq!(i.dependencies, ["api", "auth", "cache", "db"]);
        assert_eq!(i.recovery_order, ["cache", "db", "api", "auth", "web"]);
        assert_eq!(
            i.recovery_steps,
            vec![
                RecoveryStep { services: vec!["cache".into()], cycle: false },
                RecoveryStep { services: vec!["db".into()], cycle: false },
                RecoveryStep { services: vec!["api".into(), "auth".into()], cycle: true },
                RecoveryStep { services: vec!["web".into()], cycle: false },
            ]
        );
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
    fn impact_on_the_graph_is_impact_on_its_view() {
        use crate::graph::{Graph, Observation, Window};
        use std::time::Duration;
        const SEC: u64 = 1_000_000_000;
        let mut g = Graph::new(Window { length: Duration::from_secs(60), slots: 6 });
        let mut edges: Vec<(&str, &str)> = EDGES.iter().map(|(c, s, _)| (*c, *s)).collect();
        edges.extend([("api", "api"), ("web", "cdn"), ("auth", "db"), ("batch", "auth")]);
        for (n, (c, s)) in edges.iter().enumerate() {
            for k in 0..(n as u64 % 4 + 1) {
                let o = Observation {
                    client: c,
                    server: s,
                    conn: ConnType::Plain,
                    protocol: "http",
                    count: 1.0 + n as f64 / 3.0,
                    errors: if (n + k as usize) % 3 == 0 { 0.7 } else { 0.0 },
                    latency_s: 0.05 * (n as f64 + 1.0) * (k as f64 + 1.0),
                    virtual_client: false,
                    virtual_server: false,
                };
                // Some edges only long ago, out of the window.
                let at = if n % 5 == 4 { 10 * SEC } else { 100 * SEC + k * 7 * SEC };
                g.observe(&o, at);
            }
        }
        let catalog = crate::catalog::Catalog::from_json(
            br#"{"defaults":{"availability":0.9,"latency":{"percentile":0.9,"threshold":"300ms"}},
                 "services":{"db":{"slo":{"availability":0.5}},"api":{"slo":{"latency":{"threshold":"1s"}}}},
                 "edges":[{"client":"web","server":"api","slo":{"availability":0.999}}]}"#,
        )
        .unwrap();
        for now in [100 * SEC, 125 * SEC, 200 * SEC] {
            let v = g.view_with(now, &catalog, false);
            for n in v.nodes.iter().map(|n| n.name.as_str()).chain(["nope"]) {
                assert_eq!(impact_on_graph(&g, now, &catalog, n), impact(&v, n), "{n} at {now}");
            }
        }
    }

    #[test]
    fn unknown_service() {
        let i = impact(&view(EDGES, &[]), "nope");
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
}
