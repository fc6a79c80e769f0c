//! A snapshot of the series table with label values resolved to strings:
//! what every renderer reads, detached from the engine's locks.

use super::{ConnType, Family, Kept, Row, Rows, Values, Virtual};
use std::sync::Arc;

/// The label names of the dimension values in a series key, raw (OTLP) and
/// sanitised for Prometheus.
#[derive(Debug, Clone)]
pub struct DimLabels {
    pub raw: Vec<String>,
    pub prometheus: Vec<String>,
}

/// One edge series with its labels resolved. Label values are shared
/// between the series of a snapshot.
#[derive(Debug, Clone)]
pub struct EdgeSeries {
    pub client: Arc<str>,
    pub server: Arc<str>,
    pub conn: ConnType,
    pub failed: bool,
    pub virtual_side: Virtual,
    /// Values of [`Snapshot::dim_labels`], "" where absent.
    pub dims: Vec<Arc<str>>,
    /// Its values; `values.exemplars` is None, the set exemplars being in
    /// [`Snapshot::exemplars`] at `exemplars`.
    pub values: Values,
    pub exemplars: Rows,
}

/// One unpaired or dropped span counter.
#[derive(Debug, Clone)]
pub struct SideSeries {
    pub client: Arc<str>,
    pub server: Arc<str>,
    pub conn: ConnType,
    pub value: f64,
    pub created_ns: u64,
    /// The counts of sides beyond `max_unpaired_series`, labelled
    /// `otel_metric_overflow="true"` and nothing else.
    pub overflow: bool,
}

impl SideSeries {
    pub fn overflow(value: f64, created_ns: u64) -> SideSeries {
        SideSeries { client: "".into(), server: "".into(), conn: ConnType::Plain, value, created_ns, overflow: true }
    }
}

/// Everything a renderer needs, detached from the engine's locks.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub compat: crate::config::Compat,
    pub failed_label: bool,
    pub virtual_label: bool,
    pub connection_info: bool,
    pub messaging: bool,
    /// Counts are weighted by a span multiplier, so may not be whole numbers.
    pub weighted: bool,
    pub bounds: Vec<f64>,
    /// Which of the histograms' buckets are written.
    pub histograms: crate::config::Histograms,
    /// The trace ID's exemplar label name; None when exemplars are off.
    pub exemplar_label: Option<String>,
    pub dim_labels: DimLabels,
    pub edges: Vec<EdgeSeries>,
    /// The edges' set exemplars (see [`Snapshot::exemplars_of`]).
    pub exemplars: Vec<Kept>,
    pub unpaired: Vec<SideSeries>,
    pub dropped: Vec<SideSeries>,
    /// What each cap refused or removed, by option name (see [`Overflow`]).
    pub overflow: [(&'static str, u64); 5],
    /// When the engine was first fed: the start of the counters that have
    /// no creation time of their own.
    pub started_ns: u64,
}

impl Snapshot {
    /// Edge `e`'s set exemplars of `family`, in bucket order.
    pub fn exemplars_of(&self, e: &EdgeSeries, family: Family) -> Row<'_> {
        e.exemplars.of(&self.exemplars, family)
    }

    /// Gives edge `i` the set exemplars of `x`, as the engine's snapshot
    /// copies them.
    #[cfg(test)]
    pub(crate) fn set_exemplars(&mut self, i: usize, x: &super::Exemplars) {
        self.edges[i].exemplars = x.keep_set([false; 3], &mut self.exemplars);
    }
}
