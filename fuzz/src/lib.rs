//! Shared code of the fuzz targets: a hand-written protobuf writer ([`pb`]),
//! a structured generator of OTLP batches ([`generate`]) and the checks every
//! target makes on the engine's answers ([`check`]).

pub mod check;
pub mod generate;
pub mod pb;

use servicemap::{Config, Engine};

/// Engines for the raw-bytes targets: the two presets, the one with the
/// options that read the most attributes and write the most labels.
pub fn engine_for(choice: u8) -> Engine {
    let json: &[u8] = match choice % 3 {
        0 => br#"{"compat":"tempo","dimensions":["deployment.environment.name","http.method"],"span_multiplier_key":"sampling.ratio","enable_messaging_system_latency_histogram":true,"max_items":64}"#,
        1 => br#"{"compat":"contrib","span_links":true,"enable_virtual_node_label":true,"enable_connection_info":true,"enable_client_server_prefix":true,"dimensions":["k8s.namespace.name"],"max_items":8,"shards":2}"#,
        _ => br#"{"compat":"tempo","peer_attributes_on_server_spans":true,"max_series":4,"max_label_value_length":5,"shards":1,"max_items":1}"#,
    };
    let config = Config::from_json(json).expect("fuzz engine config");
    check::expect_label_clash(&config);
    Engine::new(config)
}

pub const NOW: u64 = generate::T0;
