//! Renderers of a [`Snapshot`](crate::series::Snapshot): the Prometheus text
//! format, OpenMetrics, Prometheus protobuf and OTLP metrics. Each reads the snapshot and writes
//! bytes; none changes state, so a scrape never changes the next one.

pub mod otlp;
pub mod protobuf;
mod room;
pub mod text;
