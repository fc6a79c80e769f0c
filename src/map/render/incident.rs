//! The incident answer ([`Impact`]) as JSON, the same on every surface, and
//! as the text a person reads in an incident.

use crate::map::impact::{Direction, Impact, RecoveryStep, round_for_people, rps, seconds};
use serde_json::{Value, json};
use std::fmt::Write;

fn finite(v: f64) -> Value {
    serde_json::Number::from_f64(v).map(Value::Number).unwrap_or(Value::Null)
}

/// Recovery steps as JSON: `{"services", "cycle", "level"}` each.
pub fn steps_json(steps: &[RecoveryStep]) -> Value {
    Value::Array(steps.iter().map(|s| json!({"services": s.services, "cycle": s.cycle, "level": s.level})).collect())
}

/// The answer of an impact query as JSON.
pub fn impact_json(i: &Impact) -> Value {
    json!({
        "service": i.service,
        "found": i.found,
        "health": i.health.as_str(),
        "dependents": i.dependents,
        "degraded_dependents": i.degraded_dependents,
        "dependencies": i.dependencies,
        "user_facing_rps": finite(i.user_facing_rps),
        "user_facing_share": finite(i.user_facing_share),
        "root_cause_direction": i.root_cause_direction.as_str(),
        "suspects": i.suspects,
        "evidence": i.evidence,
        "recovery_order": i.recovery_order,
        "recovery_steps": steps_json(&i.recovery_steps),
        "blast_radius_rps": finite(i.blast_radius_rps),
        "rate": finite(i.rate),
        "error_rate": finite(i.error_rate),
        "callers": i.callers,
    })
}

fn percent(share: f64) -> String {
    let p = format!("{:.1}", 100.0 * share);
    format!("{}%", p.trim_end_matches('0').trim_end_matches('.'))
}

/// `n calls`, `1 call`.
fn calls(n: f64) -> String {
    let n = round_for_people(n);
    if n == "1" { "1 call".to_string() } else { format!("{n} calls") }
}

/// What the service's own incoming calls say: how many, from whom, which
/// failed (told apart by who recorded the failure), and how slow when slow.
fn own_traffic(i: &Impact) -> String {
    match i.slow {
        Some((p99, threshold)) if i.rate > 0.0 => {
            format!("{}; p99 {} against {}", own_calls(i), seconds(p99), seconds(threshold))
        }
        _ => own_calls(i),
    }
}

fn own_calls(i: &Impact) -> String {
    if i.rate <= 0.0 {
        return "no calls into it in the window".to_string();
    }
    let n = calls(i.rate * i.window_s);
    let from = i.callers.join(", ");
    let own = i.error_rate - i.client_only_error_rate;
    match (own > 0.0, i.client_only_error_rate > 0.0) {
        (false, false) => format!("{n} from {from}, none failed"),
        (true, false) => format!("own failures: {} of {n} from {from}", percent(own)),
        (false, true) => {
            format!("failures only its callers saw: {} of {n} from {from}", percent(i.client_only_error_rate))
        }
        (true, true) => format!(
            "own failures: {} of {n} from {from}; {} more failed only on the callers' side",
            percent(own),
            percent(i.client_only_error_rate)
        ),
    }
}

/// An impact query as text a person reads in an incident: the state of the
/// service, who is hurt, which way the cause lies, what to bring back.
pub fn impact_text(i: &Impact) -> String {
    if !i.found {
        return format!("{}: not in the graph\n", i.service);
    }
    let mut out = String::new();
    let _ = writeln!(out, "{} is {} ({}).", i.service, i.health.as_str(), own_traffic(i));
    let n = i.dependents.len();
    let plural = if n == 1 { "" } else { "s" };
    match (n, i.degraded_dependents.len()) {
        (0, _) => out.push_str("No dependents.\n"),
        (_, 0) => {
            let _ = writeln!(out, "{n} dependent{plural}, none degraded.");
        }
        (_, d) => {
            let _ = writeln!(out, "{n} dependent{plural}, {d} degraded ({}).", i.degraded_dependents.join(", "));
        }
    }
    let _ = writeln!(
        out,
        "Users affected: up to {}, {} of user traffic (an upper bound computed from the graph).",
        rps(i.user_facing_rps),
        percent(i.user_facing_share)
    );
    let cause = match i.root_cause_direction {
        Direction::None => "none: it and everything it depends on are healthy.".to_string(),
        Direction::Here => "here.".to_string(),
        Direction::Downstream => format!("downstream, in {}.", i.suspects.join(", ")),
        Direction::Upstream => format!("upstream, from {}.", i.suspects.join(", ")),
    };
    let _ = writeln!(out, "Cause: {cause}");
    for e in &i.evidence {
        let _ = writeln!(out, "  {e}");
    }
    // Steps of one level can come back together: commas within a level,
    // arrows between levels, a cycle's members joined by "+".
    let mut levels: Vec<Vec<String>> = Vec::new();
    for s in &i.recovery_steps {
        if levels.len() <= s.level {
            levels.resize(s.level + 1, Vec::new());
        }
        levels[s.level].push(s.services.join(" + "));
    }
    let order: Vec<String> = levels.iter().filter(|l| !l.is_empty()).map(|l| l.join(", ")).collect();
    let _ = writeln!(out, "Bring back: {}.", order.join(" → "));
    let list = |v: &[String]| if v.is_empty() { "(none)".to_string() } else { v.join(", ") };
    let _ = writeln!(out, "Dependents: {}", list(&i.dependents));
    let _ = writeln!(out, "Dependencies: {}", list(&i.dependencies));
    let _ = writeln!(out, "Direct traffic: {}", rps(i.blast_radius_rps));
    out
}
