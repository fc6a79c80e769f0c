//! The option schema: every key the engine accepts, its aliases, its type,
//! what it means, and how it is read and written. The one source for the
//! parser ([`Config::from_json`] looks keys up here), the README's table and
//! the Go shim's `schema.json` (both generated from it by `make options` and
//! checked by `tests/options.rs`). The presets' defaults are read back from
//! [`Config::preset`] through each option's `get`.

use super::catalog::Catalog;
use super::{
    Compat, DatabaseNaming, MAX_WAIT, boolean, bucket_factor, buckets, count, database_naming, duration, histograms,
    non_empty_string, optional_string, positive_duration, shards, string_list,
};
use crate::error::Error;
use serde_json::{Value, json};
use std::time::Duration;

mod spec;
pub use spec::{Kind, Spec};

/// The option a key (or alias) names.
pub fn find(key: &str) -> Option<&'static Spec> {
    OPTIONS.iter().find(|s| s.names().any(|n| n == key))
}

fn seconds(d: Duration) -> Value {
    json!(d.as_secs_f64())
}

mod documents;
pub use documents::{markdown_table, schema_json};

/// Every option, in the README's order.
pub static OPTIONS: &[Spec] = &[
    Spec {
        key: "compat",
        aliases: &[],
        kind: Kind::Preset,
        meaning: "which peer's defaults and semantics to reproduce",
        set: |_, _, _| Ok(()),
        get: |c| {
            json!(match c.compat {
                Compat::Tempo => "tempo",
                Compat::Contrib => "contrib",
            })
        },
    },
    Spec {
        key: "dimensions",
        aliases: &[],
        kind: Kind::StringList,
        meaning: "extra labels, resource attributes first, then span attributes",
        set: |c, k, v| {
            c.dimensions = string_list(k, v)?;
            Ok(())
        },
        get: |c| json!(c.dimensions),
    },
    Spec {
        key: "enable_client_server_prefix",
        aliases: &[],
        kind: Kind::Bool,
        meaning: "dimensions as `client_<dim>` / `server_<dim>`",
        set: |c, k, v| {
            c.enable_client_server_prefix = boolean(k, v)?;
            Ok(())
        },
        get: |c| json!(c.enable_client_server_prefix),
    },
    Spec {
        key: "peer_attributes",
        aliases: &["virtual_node_peer_attributes"],
        kind: Kind::StringList,
        meaning: "span attributes naming an uninstrumented peer",
        set: |c, k, v| {
            c.peer_attributes = string_list(k, v)?;
            Ok(())
        },
        get: |c| json!(c.peer_attributes),
    },
    Spec {
        key: "peer_attributes_on_server_spans",
        aliases: &[],
        kind: Kind::Bool,
        meaning: "read peer attributes on server/consumer spans too",
        set: |c, k, v| {
            c.peer_attributes_on_server_spans = boolean(k, v)?;
            Ok(())
        },
        get: |c| json!(c.peer_attributes_on_server_spans),
    },
    Spec {
        key: "virtual_client_from_peer",
        aliases: &[],
        kind: Kind::Bool,
        meaning: "a root server's virtual client is named from its peer attribute (else `user`)",
        set: |c, k, v| {
            c.virtual_client_from_peer = boolean(k, v)?;
            Ok(())
        },
        get: |c| json!(c.virtual_client_from_peer),
    },
    Spec {
        key: "virtual_server_fallback",
        aliases: &[],
        kind: Kind::OptionalString,
        meaning: "server name for an expired client span without a peer attribute (none: no series, counted as unpaired)",
        set: |c, k, v| {
            c.virtual_server_fallback = optional_string(k, v)?;
            Ok(())
        },
        get: |c| json!(c.virtual_server_fallback),
    },
    Spec {
        key: "database_name_attributes",
        aliases: &[],
        kind: Kind::StringList,
        meaning: "attributes marking a client span as a database call",
        set: |c, k, v| {
            c.database_name_attributes = string_list(k, v)?;
            Ok(())
        },
        get: |c| json!(c.database_name_attributes),
    },
    Spec {
        key: "database_naming",
        aliases: &[],
        kind: Kind::Choice(&["peer_first", "attribute_value"]),
        meaning: "`peer_first`: peer.service, server.address, network.peer.address[:port], then the attribute",
        set: |c, k, v| {
            c.database_naming = database_naming(k, v)?;
            Ok(())
        },
        get: |c| {
            json!(match c.database_naming {
                DatabaseNaming::PeerFirst => "peer_first",
                DatabaseNaming::AttributeValue => "attribute_value",
            })
        },
    },
    Spec {
        key: "histogram_buckets",
        aliases: &["latency_histogram_buckets"],
        kind: Kind::Buckets,
        meaning: "classic histogram bounds (seconds or durations)",
        set: |c, k, v| {
            c.histogram_buckets = buckets(k, v)?;
            Ok(())
        },
        get: |c| json!(c.histogram_buckets),
    },
    Spec {
        key: "wait",
        aliases: &["store_ttl"],
        kind: Kind::Duration,
        meaning: "how long a half-edge waits for its other side, at most 24 days (kept to the millisecond, rounded up)",
        set: |c, k, v| {
            c.wait = duration(k, v)?;
            if c.wait > MAX_WAIT {
                return Err(Error::config(k, "must be at most 24 days (576h)"));
            }
            Ok(())
        },
        get: |c| seconds(c.wait),
    },
    Spec {
        key: "max_items",
        aliases: &["store_max_items"],
        kind: Kind::Count,
        meaning: "waiting half-edges at most; a span that finds the store full is dropped and counted",
        set: |c, k, v| {
            c.max_items = count(k, v, 1)?;
            Ok(())
        },
        get: |c| json!(c.max_items),
    },
    Spec {
        key: "span_multiplier_key",
        aliases: &[],
        kind: Kind::OptionalString,
        meaning: "attribute with a sampling ratio; counts are weighted by 1/ratio",
        set: |c, k, v| {
            c.span_multiplier_key = optional_string(k, v)?;
            Ok(())
        },
        get: |c| json!(c.span_multiplier_key),
    },
    Spec {
        key: "enable_messaging_system_latency_histogram",
        aliases: &[],
        kind: Kind::Bool,
        meaning: "consumer start − producer end",
        set: |c, k, v| {
            c.enable_messaging_system_latency_histogram = boolean(k, v)?;
            Ok(())
        },
        get: |c| json!(c.enable_messaging_system_latency_histogram),
    },
    Spec {
        key: "exemplars",
        aliases: &[],
        kind: Kind::Bool,
        meaning: "the last request of each histogram bucket as its exemplar (OpenMetrics, OTLP)",
        set: |c, k, v| {
            c.exemplars = boolean(k, v)?;
            Ok(())
        },
        get: |c| json!(c.exemplars),
    },
    Spec {
        key: "histograms",
        aliases: &["generate_native_histograms"],
        kind: Kind::Choice(&["classic", "native", "both"]),
        meaning: "latency histograms: classic buckets, native (exponential) buckets, or both",
        set: |c, k, v| {
            c.histograms = histograms(k, v)?;
            Ok(())
        },
        get: |c| json!(c.histograms.name()),
    },
    Spec {
        key: "native_histogram_bucket_factor",
        aliases: &[],
        kind: Kind::Number,
        meaning: "native buckets grow by at most this factor; it picks the schema (1.1: schema 3)",
        set: |c, k, v| {
            c.native_histogram_bucket_factor = bucket_factor(k, v)?;
            Ok(())
        },
        get: |c| json!(c.native_histogram_bucket_factor),
    },
    Spec {
        key: "native_histogram_max_bucket_number",
        aliases: &[],
        kind: Kind::Count,
        meaning: "populated native buckets per histogram at most (0: no limit); past it, reset or halve the resolution",
        set: |c, k, v| {
            c.native_histogram_max_bucket_number = count(k, v, 0)?;
            Ok(())
        },
        get: |c| json!(c.native_histogram_max_bucket_number),
    },
    Spec {
        key: "native_histogram_min_reset_duration",
        aliases: &[],
        kind: Kind::Duration,
        meaning: "a native histogram over its budget starts again from zero if this old (0: never)",
        set: |c, k, v| {
            c.native_histogram_min_reset_duration = duration(k, v)?;
            Ok(())
        },
        get: |c| seconds(c.native_histogram_min_reset_duration),
    },
    Spec {
        key: "exponential_histogram_max_size",
        aliases: &[],
        kind: Kind::Count,
        meaning: "contrib's exponential histograms instead of classic ones: scale 20 and down so that the populated buckets span fewer than this (0: off; 1 is 2 and past 16384 is 16384, as contrib reads them)",
        set: |c, k, v| {
            c.exponential_histogram_max_size = count(k, v, 0)?;
            Ok(())
        },
        get: |c| json!(c.exponential_histogram_max_size),
    },
    Spec {
        key: "trace_id_label_name",
        aliases: &[],
        kind: Kind::String,
        meaning: "the exemplar label that holds the trace ID",
        set: |c, k, v| {
            let name = non_empty_string(k, v)?;
            let mut chars = name.chars();
            let first = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
            if !first || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
                let why = format!("`{name}` is not a label name (letters, digits and `_`, not starting with a digit)");
                return Err(Error::config(k, why));
            }
            c.trace_id_label_name = name;
            Ok(())
        },
        get: |c| json!(c.trace_id_label_name),
    },
    Spec {
        key: "filter_policies",
        aliases: &[],
        kind: Kind::FilterPolicies,
        meaning: "which spans take part, in Tempo's format: `include`, `include_any` and `exclude` policies, `match_type` `strict` or `regex`, keys `resource.<attribute>`, `span.<attribute>`, `name`, `status`, `kind`. The other side of a filtered-out span is dropped with it (counted in `edges_dropped_by_filter`), never left to expire as an unpaired or virtual edge",
        set: |c, k, v| {
            c.filter_policies = super::filter::parse(k, v)?;
            Ok(())
        },
        get: |c| super::filter::to_json(&c.filter_policies),
    },
    Spec {
        key: "enable_virtual_node_label",
        aliases: &["virtual_node_extra_label"],
        kind: Kind::Bool,
        meaning: "`virtual_node=\"client\"/\"server\"` on inferred edges",
        set: |c, k, v| {
            c.enable_virtual_node_label = boolean(k, v)?;
            Ok(())
        },
        get: |c| json!(c.enable_virtual_node_label),
    },
    Spec {
        key: "enable_connection_info",
        aliases: &[],
        kind: Kind::Bool,
        meaning: "`traces_service_graph_connection_info` gauge",
        set: |c, k, v| {
            c.enable_connection_info = boolean(k, v)?;
            Ok(())
        },
        get: |c| json!(c.enable_connection_info),
    },
    Spec {
        key: "failed_label",
        aliases: &[],
        kind: Kind::Bool,
        meaning: "`failed=\"true\"/\"false\"` on every series",
        set: |c, k, v| {
            c.failed_label = boolean(k, v)?;
            Ok(())
        },
        get: |c| json!(c.failed_label),
    },
    Spec {
        key: "expired_includes_virtual",
        aliases: &[],
        kind: Kind::Bool,
        meaning: "count virtual-node edges as expired too",
        set: |c, k, v| {
            c.expired_includes_virtual = boolean(k, v)?;
            Ok(())
        },
        get: |c| json!(c.expired_includes_virtual),
    },
    Spec {
        key: "messaging_never_virtual",
        aliases: &[],
        kind: Kind::Bool,
        meaning: "unpaired producer/consumer spans never become virtual nodes",
        set: |c, k, v| {
            c.messaging_never_virtual = boolean(k, v)?;
            Ok(())
        },
        get: |c| json!(c.messaging_never_virtual),
    },
    Spec {
        key: "span_links",
        aliases: &[],
        kind: Kind::Bool,
        meaning: "pair consumers with producers through span links, one edge per link",
        set: |c, k, v| {
            c.span_links = boolean(k, v)?;
            Ok(())
        },
        get: |c| json!(c.span_links),
    },
    Spec {
        key: "series_idle_timeout",
        aliases: &[],
        kind: Kind::Duration,
        meaning: "a series not updated for this long is removed",
        set: |c, k, v| {
            c.series_idle_timeout = duration(k, v)?;
            Ok(())
        },
        get: |c| seconds(c.series_idle_timeout),
    },
    Spec {
        key: "metrics_timestamp_offset",
        aliases: &[],
        kind: Kind::Duration,
        meaning: "OTLP data points are stamped `now - offset`",
        set: |c, k, v| {
            c.metrics_timestamp_offset = duration(k, v)?;
            Ok(())
        },
        get: |c| seconds(c.metrics_timestamp_offset),
    },
    Spec {
        key: "max_series",
        aliases: &[],
        kind: Kind::Count,
        meaning: "request series at most; a new label set beyond it is not created (counted as refused). Edges with an inferred side (virtual nodes) may take at most half, so spans that never pair cannot keep paired edges out",
        set: |c, k, v| {
            c.max_series = count(k, v, 1)?;
            Ok(())
        },
        get: |c| json!(c.max_series),
    },
    Spec {
        key: "max_unpaired_series",
        aliases: &[],
        kind: Kind::Count,
        meaning: "unpaired and dropped span counters at most, apart from `max_series`; beyond it their counts go to one counter per metric labelled `otel_metric_overflow=\"true\"`. Counters idle for `series_idle_timeout` are removed",
        set: |c, k, v| {
            c.max_unpaired_series = count(k, v, 1)?;
            Ok(())
        },
        get: |c| json!(c.max_unpaired_series),
    },
    Spec {
        key: "max_label_value_length",
        aliases: &[],
        kind: Kind::Count,
        meaning: "longer label values are truncated",
        set: |c, k, v| {
            c.max_label_value_length = count(k, v, 1)?;
            Ok(())
        },
        get: |c| json!(c.max_label_value_length),
    },
    Spec {
        key: "max_batch_bytes",
        aliases: &[],
        kind: Kind::Bytes,
        meaning: "larger batches are rejected before reading (in the collector: the batch as handed to the engine, holding only what it reads)",
        set: |c, k, v| {
            c.max_batch_bytes = count(k, v, 1)?;
            Ok(())
        },
        get: |c| json!(c.max_batch_bytes),
    },
    Spec {
        key: "shards",
        aliases: &[],
        kind: Kind::Count,
        meaning: "independent pairing shards, routed by trace ID (`max_items` counts across all of them)",
        set: |c, k, v| {
            c.shards = shards(k, v)?;
            Ok(())
        },
        get: |c| json!(c.shards),
    },
    Spec {
        key: "initial_zero",
        aliases: &[],
        kind: Kind::Bool,
        meaning: "the text formats show a new series at 0 for `initial_zero_hold`, so that every scraper's `rate()` and `increase()` see its first requests (the OTLP output carries each series' start time, OpenMetrics its `_created` time, instead)",
        set: |c, k, v| {
            c.initial_zero = boolean(k, v)?;
            Ok(())
        },
        get: |c| json!(c.initial_zero),
    },
    Spec {
        key: "initial_zero_hold",
        aliases: &[],
        kind: Kind::Duration,
        meaning: "how long a new series reads 0: at least the scrape interval. The trade-off: a new edge's counts show this long after it first appears. A scrape never changes what the next one sees",
        set: |c, k, v| {
            c.initial_zero_hold = duration(k, v)?;
            Ok(())
        },
        get: |c| seconds(c.initial_zero_hold),
    },
    Spec {
        key: "graph",
        aliases: &[],
        kind: Kind::Bool,
        meaning: "keep the live service map",
        set: |c, k, v| {
            c.graph = boolean(k, v)?;
            Ok(())
        },
        get: |c| json!(c.graph),
    },
    Spec {
        key: "graph_window",
        aliases: &[],
        kind: Kind::Duration,
        meaning: "window for the map's rates, error rates and percentiles",
        set: |c, k, v| {
            c.graph_window = positive_duration(k, v)?;
            Ok(())
        },
        get: |c| seconds(c.graph_window),
    },
    Spec {
        key: "graph_window_slots",
        aliases: &[],
        kind: Kind::Count,
        meaning: "the window's resolution",
        set: |c, k, v| {
            c.graph_window_slots = count(k, v, 1)?.min(3600);
            Ok(())
        },
        get: |c| json!(c.graph_window_slots),
    },
    Spec {
        key: "owner_attribute",
        aliases: &[],
        kind: Kind::String,
        meaning: "resource attribute naming a service's owner or team",
        set: |c, k, v| {
            c.owner_attribute = non_empty_string(k, v)?;
            Ok(())
        },
        get: |c| json!(c.owner_attribute),
    },
    Spec {
        key: "snapshot_interval",
        aliases: &[],
        kind: Kind::Duration,
        meaning: "how often a topology snapshot is kept for diffs",
        set: |c, k, v| {
            c.snapshot_interval = positive_duration(k, v)?;
            Ok(())
        },
        get: |c| seconds(c.snapshot_interval),
    },
    Spec {
        key: "history_length",
        aliases: &[],
        kind: Kind::Count,
        meaning: "snapshots kept",
        set: |c, k, v| {
            c.history_length = count(k, v, 1)?;
            Ok(())
        },
        get: |c| json!(c.history_length),
    },
    Spec {
        key: "max_graph_nodes",
        aliases: &[],
        kind: Kind::Count,
        meaning: "map nodes at most; a new node that finds the map full first removes the eighth of the nodes that carried the fewest requests in the window (least recently seen first), with their edges",
        set: |c, k, v| {
            c.max_graph_nodes = count(k, v, 2)?;
            Ok(())
        },
        get: |c| json!(c.max_graph_nodes),
    },
    Spec {
        key: "max_graph_edges",
        aliases: &[],
        kind: Kind::Count,
        meaning: "map edges at most, made room for in the same way; each edge keeps `graph_window_slots` slots of about 300 bytes",
        set: |c, k, v| {
            c.max_graph_edges = count(k, v, 1)?;
            Ok(())
        },
        get: |c| json!(c.max_graph_edges),
    },
    Spec {
        key: "max_history_entries",
        aliases: &[],
        kind: Kind::Count,
        meaning: "nodes and edges over all kept snapshots at most; the oldest snapshots go first",
        set: |c, k, v| {
            c.max_history_entries = count(k, v, 1)?;
            Ok(())
        },
        get: |c| json!(c.max_history_entries),
    },
    Spec {
        key: "catalog",
        aliases: &[],
        kind: Kind::Catalog,
        meaning: "owners, tiers and SLOs (see below)",
        set: |c, _, v| {
            c.catalog = if v.is_null() { Catalog::default() } else { Catalog::from_json(v.to_string().as_bytes())? };
            Ok(())
        },
        get: |c| if c.catalog == Catalog::default() { Value::Null } else { json!("(set)") },
    },
];
