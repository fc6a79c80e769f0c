//! Incidents with known answers: small shops in trouble, written as OTLP/JSON
//! lines (one batch a line) as the collector's file exporter writes them.
//!
//! Each incident is derived from a seed (trace and span IDs come from
//! [`Rng`]); times are fixed, so the same code gives the same bytes. The
//! files live in `tests/fixtures/incidents/`, beside `expected.json`, the
//! answers every surface (engine, C ABI, HTTP API, command line) must give.
//! `tests/incidents.rs` fails when a file drifts from this generator
//! (`SERVICEMAP_BLESS_INCIDENTS=1` rewrites them).
//!
//! Every surface feeds the lines the same way: each batch at the latest span
//! end time read so far, then expiry at that time; at the end, everything
//! still waiting expires and the answer is asked for at that time.

use crate::Rng;
use std::fmt::Write;

/// 2026-01-01T00:00:00Z, in Unix nanoseconds.
pub const T0: u64 = 1_767_225_600_000_000_000;
const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

/// One incident: its name (the file's stem), what happens, and its batches
/// as OTLP/JSON lines.
#[derive(Debug, Clone)]
pub struct Incident {
    pub name: &'static str,
    pub about: &'static str,
    pub lines: Vec<String>,
}

impl Incident {
    /// The fixture file's contents: one batch a line.
    pub fn jsonl(&self) -> String {
        let mut out = self.lines.join("\n");
        out.push('\n');
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Server = 2,
    Client = 3,
}

#[derive(Debug, Clone)]
struct Span {
    service: &'static str,
    trace: [u8; 16],
    id: [u8; 8],
    parent: Option<[u8; 8]>,
    name: &'static str,
    kind: Kind,
    start: u64,
    end: u64,
    failed: bool,
    attributes: Vec<(&'static str, &'static str)>,
}

/// Builds an incident's batches.
struct Gen {
    rng: Rng,
    spans: Vec<Span>,
    lines: Vec<String>,
}

/// A request's outcome on each side: whether the client's span and the
/// server's span report an error.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    client_failed: bool,
    server_failed: bool,
}

const OK: Outcome = Outcome { client_failed: false, server_failed: false };
/// Failed, and both sides say so.
const FAILED: Outcome = Outcome { client_failed: true, server_failed: true };

fn failed_if(fail: bool) -> Outcome {
    if fail { FAILED } else { OK }
}

impl Gen {
    fn new(seed: u64) -> Gen {
        Gen { rng: Rng::new(seed), spans: Vec::new(), lines: Vec::new() }
    }

    fn trace(&mut self) -> [u8; 16] {
        self.rng.id()
    }

    #[allow(clippy::too_many_arguments)]
    fn span(
        &mut self,
        service: &'static str,
        trace: [u8; 16],
        parent: Option<[u8; 8]>,
        (kind, name): (Kind, &'static str),
        start: u64,
        dur_ms: u64,
        failed: bool,
        attributes: Vec<(&'static str, &'static str)>,
    ) -> [u8; 8] {
        let id = self.rng.id();
        let end = start + dur_ms * MS;
        self.spans.push(Span { service, trace, id, parent, name, kind, start, end, failed, attributes });
        id
    }

    /// A request from outside: a server span with no parent.
    fn root(&mut self, trace: [u8; 16], service: &'static str, at: u64, dur_ms: u64, failed: bool) -> [u8; 8] {
        let attrs = vec![("http.request.method", "GET"), ("http.route", "/")];
        self.span(service, trace, None, (Kind::Server, "GET /"), at, dur_ms, failed, attrs)
    }

    /// `client` calls the instrumented `server` over HTTP (`parent`: the
    /// client's span it calls from, None for a job that starts the trace).
    /// Returns the server span, to call further from.
    #[allow(clippy::too_many_arguments)]
    fn call(
        &mut self,
        trace: [u8; 16],
        parent: Option<[u8; 8]>,
        (client, server): (&'static str, &'static str),
        at: u64,
        dur_ms: u64,
        outcome: Outcome,
    ) -> [u8; 8] {
        let attrs = vec![("http.request.method", "POST")];
        let c = self.span(client, trace, parent, (Kind::Client, "POST"), at, dur_ms, outcome.client_failed, attrs);
        let attrs = vec![("http.request.method", "POST"), ("http.route", "/")];
        let server_dur = dur_ms.saturating_sub(2).max(1);
        self.span(server, trace, Some(c), (Kind::Server, "POST /"), at + MS, server_dur, outcome.server_failed, attrs)
    }

    /// `client` queries the database `db` (of `system`).
    #[allow(clippy::too_many_arguments)]
    fn db(
        &mut self,
        trace: [u8; 16],
        parent: [u8; 8],
        client: &'static str,
        (system, db): (&'static str, &'static str),
        at: u64,
        dur_ms: u64,
        failed: bool,
    ) {
        let attrs = vec![("db.system", system), ("db.namespace", db), ("db.operation.name", "SELECT")];
        self.span(client, trace, Some(parent), (Kind::Client, "SELECT"), at, dur_ms, failed, attrs);
    }

    /// `client` calls `peer`, a third party that sends no spans.
    #[allow(clippy::too_many_arguments)]
    fn peer(
        &mut self,
        trace: [u8; 16],
        parent: [u8; 8],
        client: &'static str,
        peer: &'static str,
        at: u64,
        dur_ms: u64,
        failed: bool,
    ) {
        let attrs = vec![("peer.service", peer), ("http.request.method", "POST")];
        self.span(client, trace, Some(parent), (Kind::Client, "POST"), at, dur_ms, failed, attrs);
    }

    /// Ends the current batch: one OTLP/JSON line, a resource per service in
    /// the order they first appear.
    fn batch(&mut self) {
        let spans = std::mem::take(&mut self.spans);
        let mut services: Vec<&str> = Vec::new();
        for s in &spans {
            if !services.contains(&s.service) {
                services.push(s.service);
            }
        }
        let resources: Vec<String> = services
            .iter()
            .map(|&service| {
                let list: Vec<String> = spans.iter().filter(|s| s.service == service).map(span_json).collect();
                format!(
                    r#"{{"resource":{{"attributes":[{}]}},"scopeSpans":[{{"scope":{{"name":"incidents"}},"spans":[{}]}}]}}"#,
                    attribute("service.name", service),
                    list.join(",")
                )
            })
            .collect();
        self.lines.push(format!(r#"{{"resourceSpans":[{}]}}"#, resources.join(",")));
    }

    fn done(self, name: &'static str, about: &'static str) -> Incident {
        assert!(self.spans.is_empty(), "{name}: spans left outside a batch");
        Incident { name, about, lines: self.lines }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Names and values here are the generator's own: plain ASCII, nothing to escape.
fn attribute(key: &str, value: &str) -> String {
    format!(r#"{{"key":"{key}","value":{{"stringValue":"{value}"}}}}"#)
}

fn span_json(s: &Span) -> String {
    let parent = s.parent.map(|p| format!(r#","parentSpanId":"{}""#, hex(&p))).unwrap_or_default();
    let status = if s.failed { r#","status":{"code":2}"# } else { "" };
    let attributes: Vec<String> = s.attributes.iter().map(|(k, v)| attribute(k, v)).collect();
    format!(
        r#"{{"traceId":"{}","spanId":"{}"{parent},"name":"{}","kind":{},"startTimeUnixNano":"{}","endTimeUnixNano":"{}"{status},"attributes":[{}]}}"#,
        hex(&s.trace),
        hex(&s.id),
        s.name,
        s.kind as u8,
        s.start,
        s.end,
        attributes.join(",")
    )
}

/// frontend → checkout → pg-main (a database) and email; backoffice →
/// inventory. pg-main fails half its queries, and the failure travels up
/// to the users of frontend.
fn failing_leaf_database() -> Incident {
    let mut g = Gen::new(1);
    for k in 0..4 {
        let at = T0 + k * SEC;
        let fail = k % 2 == 1;
        let t = g.trace();
        let root = g.root(t, "frontend", at, 300, fail);
        let checkout = g.call(t, Some(root), ("frontend", "checkout"), at + 10 * MS, 250, failed_if(fail));
        g.db(t, checkout, "checkout", ("postgresql", "pg-main"), at + 20 * MS, 40, fail);
        g.call(t, Some(checkout), ("checkout", "email"), at + 70 * MS, 30, OK);
        let t = g.trace();
        let root = g.root(t, "backoffice", at + 500 * MS, 100, false);
        g.call(t, Some(root), ("backoffice", "inventory"), at + 510 * MS, 50, OK);
    }
    g.batch();
    g.done("failing-leaf-database", "pg-main fails half its queries; checkout and frontend fail with it")
}

/// frontend → checkout → pg-main and email: checkout fails one of its two
/// requests on its own, with everything it calls healthy.
fn failing_middle_service() -> Incident {
    let mut g = Gen::new(2);
    for k in 0..2 {
        let at = T0 + k * SEC;
        let t = g.trace();
        let root = g.root(t, "frontend", at, 300, false);
        let checkout = g.call(t, Some(root), ("frontend", "checkout"), at + 10 * MS, 250, failed_if(k == 1));
        g.db(t, checkout, "checkout", ("postgresql", "pg-main"), at + 20 * MS, 40, false);
        g.call(t, Some(checkout), ("checkout", "email"), at + 70 * MS, 30, OK);
    }
    g.batch();
    g.done("failing-middle-service", "checkout fails one request of two on its own; what it calls is healthy")
}

/// frontend → checkout → payment → stripe-api, a payment provider seen only
/// through payment's client spans. It fails half the charges.
fn failing_uninstrumented_peer() -> Incident {
    let mut g = Gen::new(3);
    for k in 0..4 {
        let at = T0 + k * SEC;
        let fail = k % 2 == 1;
        let t = g.trace();
        let root = g.root(t, "frontend", at, 400, false);
        let checkout = g.call(t, Some(root), ("frontend", "checkout"), at + 10 * MS, 350, failed_if(fail));
        let payment = g.call(t, Some(checkout), ("checkout", "payment"), at + 20 * MS, 300, failed_if(fail));
        g.peer(t, payment, "payment", "stripe-api", at + 30 * MS, 120, fail);
    }
    g.batch();
    g.done("failing-uninstrumented-peer", "stripe-api, which sends no spans, fails half the charges payment makes")
}

/// web → api → pg-main, and reports, a job, → api. For ten minutes each
/// sends one request a minute; then reports sends ten a minute for five
/// minutes, and api slows to two seconds a request.
fn load_surge() -> Incident {
    let mut g = Gen::new(4);
    for minute in 0..15 {
        let at = T0 + minute * 60 * SEC;
        let surge = minute >= 10;
        let slow = if surge { 2050 } else { 80 };
        let t = g.trace();
        let root = g.root(t, "web", at, slow + 20, false);
        let api = g.call(t, Some(root), ("web", "api"), at + 10 * MS, slow, OK);
        g.db(t, api, "api", ("postgresql", "pg-main"), at + 20 * MS, 10, false);
        for n in 0..if surge { 10 } else { 1 } {
            let at = at + 100 * MS + n * 200 * MS;
            let t = g.trace();
            let api = g.call(t, None, ("reports", "api"), at, slow, OK);
            g.db(t, api, "api", ("postgresql", "pg-main"), at + 10 * MS, 10, false);
        }
        g.batch();
    }
    g.done("load-surge", "reports sends ten times its usual requests to api, which slows down")
}

/// frontend → cart ⇄ pricing (pricing calls cart back), cart → cart-cache.
/// Half the requests fail in the cycle; cart-cache is healthy.
fn cycle() -> Incident {
    let mut g = Gen::new(5);
    for k in 0..4 {
        let at = T0 + k * SEC;
        let fail = k >= 2;
        let t = g.trace();
        let root = g.root(t, "frontend", at, 300, false);
        let cart = g.call(t, Some(root), ("frontend", "cart"), at + 10 * MS, 250, failed_if(fail));
        g.db(t, cart, "cart", ("redis", "cart-cache"), at + 20 * MS, 5, false);
        let pricing = g.call(t, Some(cart), ("cart", "pricing"), at + 30 * MS, 150, failed_if(fail));
        g.call(t, Some(pricing), ("pricing", "cart"), at + 40 * MS, 60, failed_if(fail));
    }
    g.batch();
    g.done("cycle", "cart and pricing, which call each other, fail half their requests; cart-cache is healthy")
}

/// frontend → checkout → pg-main: frontend's client gives up on half its
/// calls to checkout, whose own spans record every request as a success.
fn failures_only_the_caller_sees() -> Incident {
    let mut g = Gen::new(6);
    for k in 0..4 {
        let at = T0 + k * SEC;
        let t = g.trace();
        let root = g.root(t, "frontend", at, 300, false);
        let outcome = Outcome { client_failed: k % 2 == 1, server_failed: false };
        let checkout = g.call(t, Some(root), ("frontend", "checkout"), at + 10 * MS, 250, outcome);
        g.db(t, checkout, "checkout", ("postgresql", "pg-main"), at + 20 * MS, 40, false);
    }
    g.batch();
    g.done(
        "failures-only-the-caller-sees",
        "frontend's calls to checkout fail on frontend's side; checkout records none",
    )
}

/// Every incident, in the order of `expected.json`.
pub fn incidents() -> Vec<Incident> {
    vec![
        failing_leaf_database(),
        failing_middle_service(),
        failing_uninstrumented_peer(),
        load_surge(),
        cycle(),
        failures_only_the_caller_sees(),
    ]
}
