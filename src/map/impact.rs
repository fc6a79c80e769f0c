//! Incident questions answered over a [`View`] of the graph: who depends on a
//! service, what it depends on, where the cause lies, and what to bring back
//! first.

use super::History;
use super::{EdgeView, Health, NodeKind, View};
use crate::config::catalog::Catalog;
use foldhash::{HashMap, HashMapExt};
use std::collections::{BTreeSet, VecDeque};

/// The graph as adjacency lists of node indexes.
struct Adjacency<'a> {
    names: Vec<&'a str>,
    index: HashMap<&'a str, usize>,
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
        let index = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        Adjacency { names, index, callees, callers }
    }

    fn new(view: &'a View) -> Adjacency<'a> {
        let names: Vec<&str> = view.nodes.iter().map(|n| n.name.as_str()).collect();
        let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let pairs =
            view.edges.iter().filter_map(|e| Some((*index.get(e.client.as_str())?, *index.get(e.server.as_str())?)));
        let pairs: Vec<(usize, usize)> = pairs.collect();
        Adjacency::from_pairs(names, pairs.into_iter())
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
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
    /// 0 for a step that depends on no other step, else one more than the
    /// deepest step it depends on: steps of one level can come back in parallel.
    pub level: usize,
}

/// Which way the cause of a service's trouble lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// It and everything it depends on are healthy.
    None,
    /// Its own incoming calls fail or are slow while what it calls is
    /// healthy (or it is part of an unhealthy cycle that is the cause).
    Here,
    /// Something it depends on is unhealthy.
    Downstream,
    /// Its callers send far more than they usually do, or see failures it
    /// never recorded itself.
    Upstream,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::None => "none",
            Direction::Here => "self",
            Direction::Downstream => "downstream",
            Direction::Upstream => "upstream",
        }
    }
}

mod evidence;
use evidence::{client_side_only, node_evidence, slowest};
pub(crate) use evidence::{round_for_people, rps, seconds};

/// How far above its baseline a rate must be to count as a surge.
const SURGE_FACTOR: f64 = 3.0;

/// The answer to "this service is in trouble (or may be): who is hurt, which
/// way the cause lies, what to bring back first".
#[derive(Debug, Clone, PartialEq)]
pub struct Impact {
    pub service: String,
    pub found: bool,
    pub health: Health,
    /// Transitive callers that are services (not the virtual `user` or
    /// peers), nearest first.
    pub dependents: Vec<String>,
    /// Those of them that are unhealthy themselves, or whose calls on the
    /// way to the service are failing or slow.
    pub degraded_dependents: Vec<String>,
    /// Transitive callees, nearest first.
    pub dependencies: Vec<String>,
    /// Requests per second entering from outside (virtual clients) into the
    /// service or its dependents: an upper bound of the user traffic that
    /// can be hurt, computed from the graph.
    pub user_facing_rps: f64,
    /// Its share of all requests entering from outside (0 without any).
    pub user_facing_share: f64,
    pub root_cause_direction: Direction,
    /// Where the cause most likely lies.
    pub suspects: Vec<String>,
    /// One sentence per suspect, with the numbers.
    pub evidence: Vec<String>,
    /// Dependencies (deepest first), the service, then its dependents, each
    /// caller after what it calls; flattened from `recovery_steps`.
    pub recovery_order: Vec<String>,
    pub recovery_steps: Vec<RecoveryStep>,
    /// Requests per second that reach the service directly: what fails at once if it breaks.
    pub blast_radius_rps: f64,
    /// The service's own incoming traffic: requests per second and failed share.
    pub rate: f64,
    pub error_rate: f64,
    /// The part of `error_rate` only its callers recorded.
    pub client_only_error_rate: f64,
    /// When its incoming calls are slow (past the warning fraction of the
    /// objective): the slowest edge's p99 and its latency threshold.
    pub slow: Option<(f64, f64)>,
    /// Its direct callers, by name.
    pub callers: Vec<String>,
    /// The window the rates are measured over, in seconds.
    pub window_s: f64,
}

/// The impact of `service` in `view`. `history` gives the baselines a surge
/// is measured against (an empty one: no surge is ever seen); `catalog` the
/// objectives the evidence quotes.
pub fn impact(view: &View, history: &History, catalog: &Catalog, service: &str) -> Impact {
    let a = Adjacency::new(view);
    let Some(i) = a.names.iter().position(|n| *n == service) else { return not_found(service) };
    let n = a.names.len();
    let kind = |k: usize| view.nodes[k].kind;
    let unhealthy = |k: usize| view.nodes[k].health.is_unhealthy();
    let virtual_client = |k: usize| matches!(kind(k), NodeKind::User | NodeKind::External) && a.callers[k].is_empty();
    // Edges by (client, server) node index, found by name once.
    let index: HashMap<(usize, usize), &EdgeView> =
        view.edges.iter().filter_map(|e| Some(((a.position(&e.client)?, a.position(&e.server)?), e))).collect();
    let edge = |c: usize, s: usize| index.get(&(c, s)).copied();
    let names = |v: &[usize]| v.iter().map(|&k| a.names[k].to_string()).collect::<Vec<_>>();

    let dependents: Vec<usize> = a.reach(i, &a.callers).into_iter().filter(|&k| kind(k) == NodeKind::Service).collect();
    let mut on_path = vec![false; n];
    on_path[i] = true;
    for &d in &dependents {
        on_path[d] = true;
    }
    let degraded: Vec<usize> = dependents
        .iter()
        .copied()
        .filter(|&d| {
            unhealthy(d)
                || a.callees[d].iter().any(|&x| on_path[x] && edge(d, x).is_some_and(|e| e.health.is_unhealthy()))
        })
        .collect();
    let deps = a.reach(i, &a.callees);

    // Traffic from outside: edges from virtual clients.
    let (mut user_facing, mut user_total) = (0.0, 0.0);
    for e in &view.edges {
        let (Some(c), Some(s)) = (a.position(&e.client), a.position(&e.server)) else { continue };
        if virtual_client(c) {
            user_total += e.rate;
            if on_path[s] {
                user_facing += e.rate;
            }
        }
    }

    // A node's incoming edges (not its calls to itself), in the view's order.
    let incoming_of = |k: usize| -> Vec<&EdgeView> {
        let mut v: Vec<&EdgeView> = a.callers[k].iter().filter_map(|&c| edge(c, k)).collect();
        v.sort_by(|x, y| x.client.cmp(&y.client));
        v
    };
    let evidence_of = |k: usize| node_evidence(&incoming_of(k), catalog, a.names[k]);
    let incoming = incoming_of(i);
    // `+ 0.0`: an empty float sum is -0.0.
    let blast_radius_rps: f64 = incoming.iter().map(|e| e.rate).sum::<f64>() + 0.0;
    let errors: f64 = incoming.iter().map(|e| e.rate * e.error_rate).sum();
    let client_only: f64 = incoming.iter().map(|e| e.rate * e.client_only_error_rate).sum();
    // A service whose trouble is only what its callers' spans say (its own
    // record every request as a success) points at those callers: it hurts
    // no one else, and a caller it names finds the cause in itself.
    let blames = |k: usize| {
        (unhealthy(k) && kind(k) == NodeKind::Service)
            .then(|| client_side_only(&incoming_of(k), catalog, a.names[k]))
            .flatten()
    };
    let bad_deps: BTreeSet<usize> = deps.iter().copied().filter(|&k| unhealthy(k) && blames(k).is_none()).collect();
    let own_calls_fail: Vec<String> = a.callees[i]
        .iter()
        .filter_map(|&x| blames(x))
        .flat_map(|(callers, evidence)| callers.into_iter().zip(evidence))
        .filter(|(caller, _)| caller == service)
        .map(|(_, line)| line)
        .collect();
    let window_ns = (view.window_s * 1e9) as u64;
    let before = view.at_ns.saturating_sub(window_ns);
    let (direction, suspects, evidence) = if !bad_deps.is_empty() {
        // With the service itself when it is unhealthy: in a cycle of
        // unhealthy services that is the cause, the cause is here.
        let mut bad = bad_deps.clone();
        if unhealthy(i) {
            bad.insert(i);
        }
        let suspects = causes(&a, &bad);
        let evidence = suspects.iter().map(|&s| evidence_of(s)).collect();
        let direction = if suspects.contains(&i) { Direction::Here } else { Direction::Downstream };
        (direction, suspects, evidence)
    } else if !own_calls_fail.is_empty() {
        (Direction::Here, vec![i], own_calls_fail)
    } else if unhealthy(i) {
        // A surge: the service's incoming rate far above its usual one.
        let baseline = history.baseline(before, |s| s.node_rates.get(service).copied());
        match baseline.filter(|&b| b > 0.0 && blast_radius_rps > SURGE_FACTOR * b) {
            Some(b) => {
                // The callers whose traffic grew the most, and all within half of the largest growth.
                let growth: Vec<(usize, f64, f64)> = a.callers[i]
                    .iter()
                    .filter_map(|&c| {
                        let rate = edge(c, i)?.rate;
                        let key = (a.names[c].to_string(), service.to_string());
                        let usual = history.baseline(before, |s| s.edge_rates.get(&key).copied()).unwrap_or(0.0);
                        Some((c, rate, usual))
                    })
                    .collect();
                // The callers whose traffic grew the most, and all within
                // half of the largest growth.
                let top = growth.iter().map(|g| g.1 - g.2).fold(f64::MIN, f64::max);
                let mut suspects: Vec<(usize, f64, f64)> =
                    growth.into_iter().filter(|g| g.1 - g.2 >= top - top.abs() / 2.0).collect();
                suspects.sort_by_key(|g| a.names[g.0]);
                let surge = format!(
                    "{service} receives {}, {}× its usual {}",
                    rps(blast_radius_rps),
                    round_for_people(blast_radius_rps / b),
                    rps(b)
                );
                let evidence = suspects
                    .iter()
                    .enumerate()
                    .map(|(n, &(c, rate, usual))| {
                        let line = format!("{} sends {}, against a usual {}", a.names[c], rps(rate), rps(usual));
                        if n == 0 { format!("{surge}; {line}") } else { line }
                    })
                    .collect();
                (Direction::Upstream, suspects.into_iter().map(|g| g.0).collect(), evidence)
            }
            None => match client_side_only(&incoming, catalog, service).filter(|_| kind(i) == NodeKind::Service) {
                // Its callers see failures its own spans never recorded.
                Some((callers, evidence)) => {
                    let callers = callers.iter().filter_map(|c| a.position(c)).collect();
                    (Direction::Upstream, callers, evidence)
                }
                None => (Direction::Here, vec![i], vec![evidence_of(i)]),
            },
        }
    } else {
        (Direction::None, vec![], vec![])
    };

    // The virtual `user` is where requests come from, never something to bring back.
    let mut within: BTreeSet<usize> = deps.iter().copied().filter(|&k| kind(k) != NodeKind::User).collect();
    if kind(i) != NodeKind::User {
        within.insert(i);
    }
    within.extend(dependents.iter().copied());
    let steps = steps(&a, &a.components(&within));
    let mut callers: Vec<usize> = a.callers[i].clone();
    callers.sort_by_key(|&c| a.names[c]);
    Impact {
        service: a.names[i].to_string(),
        found: true,
        health: view.nodes[i].health,
        dependents: names(&dependents),
        degraded_dependents: names(&degraded),
        dependencies: names(&deps),
        user_facing_rps: user_facing,
        user_facing_share: if user_total > 0.0 { user_facing / user_total } else { 0.0 },
        root_cause_direction: direction,
        suspects: names(&suspects),
        evidence,
        recovery_order: steps.iter().flat_map(|s| s.services.clone()).collect(),
        recovery_steps: steps,
        blast_radius_rps,
        rate: blast_radius_rps,
        error_rate: if blast_radius_rps > 0.0 { errors / blast_radius_rps } else { 0.0 },
        client_only_error_rate: if blast_radius_rps > 0.0 { client_only / blast_radius_rps } else { 0.0 },
        slow: slowest(&incoming, catalog).filter(|&(p99, threshold)| {
            let warn = incoming
                .first()
                .map_or(catalog.defaults.warn_fraction, |e| catalog.edge_slo(&e.client, &e.server).warn_fraction);
            p99 > warn * threshold
        }),
        callers: names(&callers),
        window_s: view.window_s,
    }
}

fn not_found(service: &str) -> Impact {
    Impact {
        service: service.to_string(),
        found: false,
        health: Health::Unknown,
        dependents: vec![],
        degraded_dependents: vec![],
        dependencies: vec![],
        user_facing_rps: 0.0,
        user_facing_share: 0.0,
        root_cause_direction: Direction::None,
        suspects: vec![],
        evidence: vec![],
        recovery_order: vec![],
        recovery_steps: vec![],
        blast_radius_rps: 0.0,
        rate: 0.0,
        error_rate: 0.0,
        client_only_error_rate: 0.0,
        slow: None,
        callers: vec![],
        window_s: 0.0,
    }
}

/// Components as recovery steps, each with its level.
fn steps(a: &Adjacency, comps: &[Vec<usize>]) -> Vec<RecoveryStep> {
    // Components come callees first, so a step's callees have their level already.
    let mut level_of = HashMap::new();
    comps
        .iter()
        .map(|c| {
            let members: BTreeSet<usize> = c.iter().copied().collect();
            let level = c
                .iter()
                .flat_map(|&v| a.callees[v].iter())
                .filter(|w| !members.contains(w))
                .filter_map(|w| level_of.get(w).map(|l| l + 1))
                .max()
                .unwrap_or(0);
            for &v in c {
                level_of.insert(v, level);
            }
            RecoveryStep {
                services: c.iter().map(|&n| a.names[n].to_string()).collect(),
                cycle: c.len() > 1 || a.callees[c[0]].contains(&c[0]),
                level,
            }
        })
        .collect()
}

/// The members of `bad` where the trouble starts: those that call no other
/// member of `bad`, a cycle of members with no such call outside it counting
/// as one cause.
fn causes(a: &Adjacency, bad: &BTreeSet<usize>) -> Vec<usize> {
    let mut out = Vec::new();
    for comp in a.components(bad) {
        let members: BTreeSet<usize> = comp.iter().copied().collect();
        if !comp.iter().any(|&v| a.callees[v].iter().any(|w| bad.contains(w) && !members.contains(w))) {
            out.extend(comp);
        }
    }
    out.sort_by_key(|&v| a.names[v]);
    out
}

/// Unhealthy services whose own dependencies are healthy: where to look
/// first. A cycle of unhealthy services with no unhealthy dependency
/// outside it counts as one cause, and all its members are listed.
pub fn root_causes(view: &View) -> Vec<String> {
    let a = Adjacency::new(view);
    let bad: BTreeSet<usize> = (0..a.names.len()).filter(|&i| view.nodes[i].health.is_unhealthy()).collect();
    let mut out: Vec<String> = causes(&a, &bad).into_iter().map(|v| a.names[v].to_string()).collect();
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
mod tests;
