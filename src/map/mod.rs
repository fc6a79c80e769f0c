//! The live service map: the graph of services and their calls over a
//! sliding window ([`graph`]), edges observed elsewhere ([`feed`]), snapshots
//! over time ([`history`]), the incident questions ([`impact`]) and the
//! renderings for people and tools ([`render`]).

pub mod feed;
pub mod graph;
pub mod history;
pub mod impact;
pub mod query;
pub mod render;

pub use crate::config::catalog::{Catalog, Health};
pub use feed::{EdgeLine, parse_edge_lines};
pub use graph::{EdgeView, Facts, Graph, Limits, NodeKind, NodeView, Observation, Sample, View, Window};
pub use history::History;
pub use impact::{Direction, Impact, RecoveryStep, impact};
pub use render::{impact_json, impact_text};
