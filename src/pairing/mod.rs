//! Where the two sides of a request meet: half-built edges wait in a bounded
//! store, sharded by trace ID, until their other side arrives or they expire.

pub(crate) mod dropped;
pub mod edge;
pub(crate) mod shard;
pub mod store;
pub mod waiting;

pub use edge::{Expiry, ExpiryRules, HalfEdge, SideWrite};
pub use store::{Key, Store};
pub use waiting::{ByteIndex, Indexes, Waiting};
