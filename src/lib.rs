//! servicemap: builds a service graph from OpenTelemetry traces.
//!
//! A batch of OTLP spans goes down through the stages, each a module:
//! [`wire`] reads the bytes (borrowing, nothing allocated per span),
//! `pairing` lets the two sides of each request meet in a bounded store,
//! `series` counts the completed edges, `exposition` renders the counts the
//! way Grafana Tempo and the collector-contrib `servicegraph` connector do,
//! and [`map`] keeps the live service map and answers incident questions
//! over it. [`Engine`] wires the stages together; [`ffi`] exposes it
//! through a C ABI, the one panic boundary.
//!
//! The public surface is [`Engine`] with its [`Config`], the C ABI, the map's
//! queries, and the wire reader (public so that its cost alone can be
//! benchmarked). Everything else is private to the crate.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod config;
mod engine;
pub mod error;
mod exposition;
pub mod ffi;
pub mod map;
pub mod pairing;
#[cfg(feature = "cli")]
pub mod prometheus;
mod series;
pub mod wire;

pub use config::{Compat, Config, sanitize_label};
pub use engine::{ConsumeSummary, Engine, Format, Overflow, Stats};
pub use error::{DecodeError, Error};
/// The messages of Prometheus' protobuf exposition
/// ([`Format::PrometheusProtobuf`]), to read it back.
pub use exposition::protobuf::model as client_model;
