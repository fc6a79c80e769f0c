//! Data-point attributes, each series' encoded once per render and copied
//! into each of its data points.

use super::{Kind, LEN, VARINT, delimited, field, put_delimited, put_str, str_len};
use crate::config::{Compat, Histograms};
use crate::series::Virtual;
use crate::series::{EdgeSeries, SideSeries, Snapshot};

/// Attribute lists encoded as repeated `KeyValue` fields, all in one buffer
/// per data point kind; the histogram kinds' only when they are written.
pub(super) struct Attributes {
    /// As field 7 (`NumberDataPoint.attributes`).
    number: Vec<u8>,
    /// As field 9 (`HistogramDataPoint.attributes`).
    histogram: Vec<u8>,
    /// As field 1 (`ExponentialHistogramDataPoint.attributes`).
    exponential: Vec<u8>,
    /// End of list `i` in `number`; in the others too (the tags are one byte each).
    pub(super) ends: Vec<usize>,
    /// Whether explicit and exponential histograms are written.
    kinds: [bool; 2],
}

impl Attributes {
    /// Room for `lists` lists of `bytes` in all (as [`Attributes::size`]
    /// counts them), so that the buffers are not moved as they grow.
    pub(super) fn new(histograms: Histograms, lists: usize, bytes: usize) -> Attributes {
        let [explicit, exponential] = [histograms.classic(), histograms.native()];
        Attributes {
            number: Vec::with_capacity(bytes),
            histogram: Vec::with_capacity(if explicit { bytes } else { 0 }),
            exponential: Vec::with_capacity(if exponential { bytes } else { 0 }),
            ends: Vec::with_capacity(lists),
            kinds: [explicit, exponential],
        }
    }

    /// The bytes [`Attributes::put`] adds to each list for `key` and `value`.
    pub(super) fn size(key: &str, value: Attr) -> usize {
        delimited(Self::key_value_len(key, value))
    }

    /// A `KeyValue` message's length, and its value's.
    fn key_value_len(key: &str, value: Attr) -> usize {
        str_len(key) + delimited(Self::any_len(value))
    }

    fn any_len(value: Attr) -> usize {
        match value {
            Attr::Str(v) => delimited(v.len()),
            Attr::Bool(_) => 2,
        }
    }

    /// Adds `KeyValue { key, value: AnyValue { string_value | bool_value } }`
    /// to the current list.
    pub(super) fn put(&mut self, key: &str, value: Attr) {
        let any = Self::any_len(value);
        let kv = Self::key_value_len(key, value);
        let out = &mut self.number;
        let at = out.len();
        put_delimited(out, 7, kv);
        put_str(out, 1, key);
        put_delimited(out, 2, any);
        match value {
            Attr::Str(v) => {
                put_delimited(out, 1, v.len());
                out.extend_from_slice(v.as_bytes());
            }
            Attr::Bool(b) => out.extend_from_slice(&[field(2, VARINT), u8::from(b)]),
        }
        // The histogram kinds' lists differ only in the field's one-byte tag.
        let [explicit, exponential] = self.kinds;
        let body = &self.number[at + 1..];
        for (list, tag, on) in [(&mut self.histogram, 9, explicit), (&mut self.exponential, 1, exponential)] {
            if on {
                list.push(field(tag, LEN));
                list.extend_from_slice(body);
            }
        }
    }

    /// Ends the current list.
    pub(super) fn end(&mut self) {
        self.ends.push(self.number.len());
    }

    pub(super) fn get(&self, i: usize, kind: Kind) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        let list = match kind {
            Kind::Sum | Kind::Gauge => &self.number,
            Kind::Histogram => &self.histogram,
            Kind::Exponential => &self.exponential,
        };
        &list[start..self.ends[i]]
    }
}

/// An attribute value.
#[derive(Clone, Copy)]
pub(super) enum Attr<'a> {
    Str(&'a str),
    Bool(bool),
}

/// Data-point attributes, in order. contrib always writes client, server,
/// connection_type and failed (and virtual_node when enabled), even empty;
/// Tempo leaves empty labels out.
pub(super) fn edge_attributes<'a>(snap: &'a Snapshot, e: &'a EdgeSeries, mut f: impl FnMut(&'a str, Attr<'a>)) {
    let contrib = snap.compat == Compat::Contrib;
    f("client", Attr::Str(&e.client));
    f("server", Attr::Str(&e.server));
    if contrib || !e.conn.as_str().is_empty() {
        f("connection_type", Attr::Str(e.conn.as_str()));
    }
    if snap.failed_label {
        f("failed", Attr::Bool(e.failed));
    }
    for (name, value) in snap.dim_labels.raw.iter().zip(&e.dims) {
        if !value.is_empty() {
            f(name, Attr::Str(value));
        }
    }
    if snap.virtual_label && (contrib || e.virtual_side != Virtual::None) {
        f("virtual_node", Attr::Str(e.virtual_side.as_str()));
    }
}

pub(super) fn side_attributes<'a>(s: &'a SideSeries, mut f: impl FnMut(&'a str, Attr<'a>)) {
    if s.overflow {
        f("otel.metric.overflow", Attr::Bool(true));
        return;
    }
    for (k, v) in [("client", &*s.client), ("server", &*s.server), ("connection_type", s.conn.as_str())] {
        if !v.is_empty() {
            f(k, Attr::Str(v));
        }
    }
}
