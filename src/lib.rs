//! servicemap: builds a service graph from OpenTelemetry traces.
//!
//! Spans arrive as OTLP protobuf batches ([`wire`] reads only what pairing
//! needs), the two sides of each request meet in a bounded [`store`] as
//! [`edge`]s, completed edges feed [`series`], and [`exposition`] and
//! [`otlp_metrics`] render them the way Grafana Tempo and the collector-contrib
//! `servicegraph` connector do. The same edges feed the live service map
//! ([`graph`], with [`catalog`] SLOs, [`query`] incident questions, [`history`]
//! and [`export`]). [`Engine`] ties these together; [`ffi`] exposes it through
//! a C ABI.

pub mod attributes;
pub mod catalog;
pub mod config;
pub mod corpus;
pub mod edge;
pub mod engine;
pub mod error;
pub mod export;
pub mod exposition;
pub mod ffi;
pub mod graph;
pub mod history;
pub mod intern;
pub mod otlp_json;
pub mod otlp_metrics;
pub mod query;
pub mod series;
pub mod store;
pub mod wire;

pub use config::{Compat, Config};
pub use engine::{Engine, Format, Stats};
pub use error::{DecodeError, Error};
