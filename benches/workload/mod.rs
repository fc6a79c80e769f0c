//! The steady-state workload shared by the benchmarks and the profiling
//! example: a ring of corpus batches replayed with an advancing clock.
//!
//! Each batch holds 1 000 spans and stands for 20 ms of traffic (50 000
//! spans/s). The ring covers 12.8 s of trace time, longer than the 10 s wait
//! plus the 1 s between expiry runs, so by the time a batch comes round again
//! everything its previous copy left in the store has expired: replayed
//! traces never meet themselves, and the store holds what a live stream at
//! that rate would hold.
//!
//! [`mesh`] builds the engine the render benchmark scrapes.
#![allow(dead_code)]

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span, status};
use prost::Message;
use servicemap::{Compat, Config, Engine};
use servicemap_testkit::Corpus;

pub const SPANS_PER_BATCH: usize = 1000;
pub const BATCH_INTERVAL_NS: u64 = 20_000_000;
pub const RING: usize = 640;
/// Batches between two `expire` calls (1 s of trace time).
pub const EXPIRE_EVERY: u64 = 50;
/// 2026-01-01T00:00:00Z.
pub const T0: u64 = 1_767_225_600_000_000_000;
pub const SEED: u64 = 2026;

/// The Tempo preset with room for every waiting span at this rate.
pub fn config() -> Config {
    let mut c = Config::preset(Compat::Tempo);
    c.max_items = 1_000_000;
    c
}

pub struct Replay {
    pub ring: Vec<Vec<u8>>,
    pub bytes_per_span: f64,
}

impl Replay {
    pub fn new() -> Replay {
        let mut corpus = Corpus::new(SEED);
        let ring = corpus.batches(RING, SPANS_PER_BATCH);
        Replay { ring, bytes_per_span: corpus.stats().bytes_per_span() }
    }

    pub fn now(k: u64) -> u64 {
        T0 + k * BATCH_INTERVAL_NS
    }

    /// Consumes the `k`-th batch of the endless replay at its time, and
    /// expires on every `EXPIRE_EVERY`-th.
    #[inline]
    pub fn feed(&self, engine: &Engine, k: u64) {
        let now = Self::now(k);
        engine.consume(&self.ring[(k % RING as u64) as usize], now).expect("corpus batches are valid");
        if k % EXPIRE_EVERY == 0 {
            engine.expire(now);
        }
    }

    /// Replays the ring once so that series exist and the store is at its
    /// steady size; returns the next batch number.
    pub fn warm(&self, engine: &Engine) -> u64 {
        let n = RING as u64;
        for k in 0..n {
            self.feed(engine, k);
        }
        n
    }
}

fn kv(key: &str, v: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    }
}

/// An engine holding `clients × servers` distinct edges: every client service
/// calls every server service a few times, some calls failing.
pub fn mesh(clients: usize, servers: usize, config: Config) -> (Engine, u64) {
    let engine = Engine::new(config);
    let now = T0;
    let mut n: u64 = 0;
    for round in 0..3u64 {
        for c in 0..clients {
            let mut client_spans = Vec::new();
            let mut server_spans: Vec<Vec<Span>> = vec![Vec::new(); servers];
            for (s, server) in server_spans.iter_mut().enumerate() {
                n += 1;
                let trace_id = [&n.to_be_bytes()[..], &[0x5a; 8]].concat();
                let client_id = (n << 1).to_be_bytes().to_vec();
                let failed = (c + s + round as usize) % 13 == 0;
                let start = now + round * 1_000_000_000;
                let dur = 1_000_000 * (1 + (n % 400));
                let st = failed.then(|| Status { code: status::StatusCode::Error as i32, message: String::new() });
                client_spans.push(Span {
                    trace_id: trace_id.clone(),
                    span_id: client_id.clone(),
                    parent_span_id: vec![1; 8],
                    name: "GET".into(),
                    kind: span::SpanKind::Client as i32,
                    start_time_unix_nano: start,
                    end_time_unix_nano: start + dur + 500_000,
                    attributes: vec![kv("http.request.method", "GET"), kv("server.address", "svc")],
                    status: st.clone(),
                    ..Default::default()
                });
                server.push(Span {
                    trace_id,
                    span_id: ((n << 1) | 1).to_be_bytes().to_vec(),
                    parent_span_id: client_id,
                    name: "GET /items/{id}".into(),
                    kind: span::SpanKind::Server as i32,
                    start_time_unix_nano: start + 200_000,
                    end_time_unix_nano: start + dur,
                    attributes: vec![kv("http.request.method", "GET"), kv("http.route", "/items/{id}")],
                    status: st,
                    ..Default::default()
                });
            }
            let mut resource_spans = vec![resource(&format!("client-{c:03}"), client_spans)];
            for (s, spans) in server_spans.into_iter().enumerate() {
                resource_spans.push(resource(&format!("server-{s:03}"), spans));
            }
            let bytes = ExportTraceServiceRequest { resource_spans }.encode_to_vec();
            engine.consume(&bytes, now).unwrap();
        }
    }
    // New series read as zero for `initial_zero_hold` (1 minute): render
    // past it, as steady operation would.
    let later = now + 120_000_000_000;
    (engine, later)
}

fn resource(service: &str, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource { attributes: vec![kv("service.name", service)], ..Default::default() }),
        scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
        ..Default::default()
    }
}
