//! The numbers behind an incident answer, in sentences people read: why a
//! service is suspected, and when only its callers saw it fail.

use super::EdgeView;
use crate::config::catalog::Catalog;

/// When a service's incoming calls fail only on the callers' side (its own
/// spans recorded every request as a success) and none is slow: the callers
/// whose calls fail, and one sentence of evidence each.
pub(super) fn client_side_only(
    incoming: &[&EdgeView],
    catalog: &Catalog,
    service: &str,
) -> Option<(Vec<String>, Vec<String>)> {
    let own_failures: f64 = incoming.iter().map(|e| e.rate * (e.error_rate - e.client_only_error_rate)).sum();
    let slow = incoming.iter().any(|e| {
        let threshold = catalog.edge_slo(&e.client, &e.server).latency_threshold_s;
        e.p99_s.is_some_and(|p| p > threshold)
    });
    let blamed: Vec<&&EdgeView> = incoming.iter().filter(|e| e.client_only_error_rate > 0.0).collect();
    if own_failures > 0.0 || slow || blamed.is_empty() {
        return None;
    }
    let evidence = blamed
        .iter()
        .map(|e| {
            format!(
                "{}: {}% of its {} to {service} failed on its side, while {service} recorded no failure",
                e.client,
                round_for_people(100.0 * e.client_only_error_rate),
                rps(e.rate)
            )
        })
        .collect();
    Some((blamed.iter().map(|e| e.client.clone()).collect(), evidence))
}

/// A rate for people: `0.25 rps`.
pub(crate) fn rps(r: f64) -> String {
    format!("{} rps", round_for_people(r))
}

/// Two significant decimals at most, no trailing zeros.
pub(crate) fn round_for_people(v: f64) -> String {
    let s = if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}

/// Why a node is suspected, with the numbers of its incoming calls: failed
/// share against the objective, slowest p99 against its threshold.
pub(super) fn node_evidence(incoming: &[&EdgeView], catalog: &Catalog, name: &str) -> String {
    let rate: f64 = incoming.iter().map(|e| e.rate).sum();
    let errors: f64 = incoming.iter().map(|e| e.rate * e.error_rate).sum();
    let mut parts = Vec::new();
    if rate > 0.0 {
        let slo = incoming.first().map(|e| catalog.edge_slo(&e.client, &e.server)).unwrap_or(catalog.defaults);
        parts.push(format!(
            "{}% of {} failed (objective: at most {}%)",
            round_for_people(100.0 * errors / rate),
            rps(rate),
            round_for_people(100.0 * (1.0 - slo.availability))
        ));
    }
    if let Some((p99, threshold)) = slowest(incoming, catalog) {
        parts.push(format!("p99 {} against {}", seconds(p99), seconds(threshold)));
    }
    if parts.is_empty() {
        parts.push("no traffic in the window".to_string());
    }
    format!("{name}: {}", parts.join(", "))
}

/// The p99 of the incoming edge slowest against its latency threshold, and
/// that threshold.
pub(super) fn slowest(incoming: &[&EdgeView], catalog: &Catalog) -> Option<(f64, f64)> {
    incoming
        .iter()
        .filter_map(|e| Some((e.p99_s?, catalog.edge_slo(&e.client, &e.server).latency_threshold_s)))
        .max_by(|x, y| (x.0 / x.1).total_cmp(&(y.0 / y.1)))
}

/// A duration for people: `250ms`, `1.2s`.
pub(crate) fn seconds(s: f64) -> String {
    if s < 1.0 { format!("{}ms", round_for_people(s * 1000.0)) } else { format!("{}s", round_for_people(s)) }
}
