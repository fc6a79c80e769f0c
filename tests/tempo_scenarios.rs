//! The scenarios of Grafana Tempo's service-graph processor tests, replayed
//! from our own OTLP/JSON fixtures (tests/fixtures/tempo) with the settings
//! those tests use, and checked series by series with exact values.
//!
//! Fixture `queue-database.json` (one trace, spans in file order):
//!
//! | span | service            | kind     | parent | duration (ns) | attributes                        |
//! |------|--------------------|----------|--------|---------------|-----------------------------------|
//! | A    | mythical-requester | CLIENT   | –      | 45 834 496    | beast=manticore god=ares          |
//! | B    | mythical-server    | SERVER   | A      | 29 986 048    | beast=manticore god=zeus          |
//! | C    | mythical-server    | CLIENT   | B      | 23 781 376    | db.name=postgres db.system=…      |
//! | D    | mythical-server    | CLIENT   | B      |  3 855 104    | net.peer.name=loki                |
//! | E    | mythical-server    | CLIENT   | D      |    802 304    | peer.ipv4                         |
//! | F    | mythical-requester | PRODUCER | (int.) |     68 864    | messaging.system=rabbitmq         |
//! | G, H | mythical-requester | CLIENT   | A      | 13 806 080, 6 227 968 | –                         |
//! | I    | mythical-recorder  | CONSUMER | F      |    699 392    | messaging.system=rabbitmq         |
//!
//! F ends at 1658320854915628800 and I starts at 1658320854925510400, so the
//! messaging latency is exactly 0.0098816 s. Two INTERNAL spans are ignored.

mod scenario;
use scenario::*;

const B04: &[f64] = &[0.04];
const TEMPO_BUCKETS: &[f64] = &[0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8];

// Durations of the fixture's spans, in seconds.
const A: f64 = 0.045834496;
const B: f64 = 0.029986048;
const C: f64 = 0.023781376;
const F: f64 = 0.000068864;
const I: f64 = 0.000699392;
const QUEUE_LATENCY: f64 = 0.0098816;

const REQUESTER_SERVER: &[(&str, &str)] = &[("client", "mythical-requester"), ("server", "mythical-server")];
const SERVER_POSTGRES: &[(&str, &str)] =
    &[("client", "mythical-server"), ("server", "postgres"), ("connection_type", "database")];
const REQUESTER_RECORDER: &[(&str, &str)] =
    &[("client", "mythical-requester"), ("server", "mythical-recorder"), ("connection_type", "messaging_system")];

fn with<'a>(base: &[(&'a str, &'a str)], extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    base.iter().chain(extra).copied().collect()
}

fn one(v: f64) -> [(f64, f64); 1] {
    [(v, 1.0)]
}

#[test]
fn prometheus_text_parser_normalises_labels() {
    let text = "# HELP x y\nm_bucket{le=\"1.0\",b=\"q\\\"uote\",a=\"\"} 3\nm_sum{a=\"1\"} 0.5\nplain 7.0\n";
    let got = parse(text);
    let want = Expect::new()
        .sample("m_bucket", &[("b", "q\"uote"), ("le", "1")], 3.0)
        .sample("m_sum", &[("a", "1")], 0.5)
        .sample("plain", &[], 7.0);
    assert_series(&got, &want);
}

/// `TestServiceGraphs`: dimensions `beast` and `god` (unprefixed: the span
/// written last, the server, gives god=zeus) and the messaging histogram.
#[test]
fn queue_database_with_dimensions_and_messaging_latency() {
    let out = run(
        r#"{"histogram_buckets":[0.04],"dimensions":["beast","god"],"enable_messaging_system_latency_histogram":true,"initial_zero":false}"#,
        &["tempo/queue-database.json"],
    );
    let want = Expect::new()
        .edge(&with(REQUESTER_SERVER, &[("beast", "manticore"), ("god", "zeus")]), B04, 1.0, 0.0, &one(B), &one(A))
        .edge(SERVER_POSTGRES, B04, 1.0, 0.0, &one(C), &one(C))
        .edge(REQUESTER_RECORDER, B04, 1.0, 0.0, &one(I), &one(F))
        .histogram(MESSAGING, REQUESTER_RECORDER, B04, &one(QUEUE_LATENCY));
    assert_series(&graph_only(&out.before_expiry), &want);
    let sum = key(&format!("{MESSAGING}_sum"), REQUESTER_RECORDER);
    assert_eq!(out.before_expiry[&sum], 0.0098816);
    // D, E, G and H never pair and carry no peer attribute: at expiry they
    // are counted as unmatched client spans and write nothing.
    assert_series(&graph_only(&out.metrics), &want);
    assert_eq!(out.expired("SPAN_KIND_CLIENT"), 4);
    assert_eq!(out.expired("SPAN_KIND_SERVER"), 0);
    assert_eq!(out.stat("edges_new"), 7);
    assert_eq!(out.stat("spans_dropped"), 0);
}

/// `TestServiceGraphs_prefixDimensions`.
#[test]
fn prefixed_dimensions_keep_both_sides() {
    let out = run(
        r#"{"histogram_buckets":[0.04],"dimensions":["beast","god"],"enable_client_server_prefix":true,"initial_zero":false}"#,
        &["tempo/queue-database.json"],
    );
    let rs = with(
        REQUESTER_SERVER,
        &[("client_beast", "manticore"), ("server_beast", "manticore"), ("client_god", "ares"), ("server_god", "zeus")],
    );
    let want = Expect::new()
        .edge(&rs, B04, 1.0, 0.0, &one(B), &one(A))
        .edge(SERVER_POSTGRES, B04, 1.0, 0.0, &one(C), &one(C))
        .edge(REQUESTER_RECORDER, B04, 1.0, 0.0, &one(I), &one(F));
    assert_series(&graph_only(&out.before_expiry), &want);
}

/// `TestServiceGraphs_prefixDimensionsAndEnableExtraLabels`: the virtual-node
/// label stays off edges that were not inferred.
#[test]
fn prefixed_dimensions_with_virtual_node_label() {
    let out = run(
        r#"{"histogram_buckets":[0.04],"dimensions":["db.system","messaging.system"],"enable_client_server_prefix":true,"enable_virtual_node_label":true,"initial_zero":false}"#,
        &["tempo/queue-database.json"],
    );
    let mq =
        with(REQUESTER_RECORDER, &[("client_messaging_system", "rabbitmq"), ("server_messaging_system", "rabbitmq")]);
    let db = with(SERVER_POSTGRES, &[("client_db_system", "postgresql")]);
    let want = Expect::new()
        .edge(REQUESTER_SERVER, B04, 1.0, 0.0, &one(B), &one(A))
        .edge(&db, B04, 1.0, 0.0, &one(C), &one(C))
        .edge(&mq, B04, 1.0, 0.0, &one(I), &one(F));
    assert_series(&graph_only(&out.before_expiry), &want);
}

/// `TestServiceGraphs_DatabaseNameAttributes`: only `db.system` marks a
/// database call, so the node is named after its value.
#[test]
fn database_name_attributes_setting() {
    let out = run(
        r#"{"histogram_buckets":[0.04],"dimensions":["beast","god"],"database_name_attributes":["db.system"],"initial_zero":false}"#,
        &["tempo/queue-database.json"],
    );
    let db = [("client", "mythical-server"), ("server", "postgresql"), ("connection_type", "database")];
    let want = Expect::new()
        .edge(&with(REQUESTER_SERVER, &[("beast", "manticore"), ("god", "zeus")]), B04, 1.0, 0.0, &one(B), &one(A))
        .edge(&db, B04, 1.0, 0.0, &one(C), &one(C))
        .edge(REQUESTER_RECORDER, B04, 1.0, 0.0, &one(I), &one(F));
    assert_series(&graph_only(&out.before_expiry), &want);
}

/// `TestServiceGraphs_databaseVirtualNodes` and the other database fixtures:
/// the same trace with span C's attributes varied. The node is named by
/// peer.service, then server.address, then network.peer.address[:port],
/// then the first database attribute (db.namespace, db.name, db.system,
/// db.system.name).
#[test]
fn database_naming_precedence() {
    let rows: &[(&str, &str)] = &[
        ("tempo/queue-database.json", "postgres"),
        ("tempo/db-server-address.json", "mythical-database"),
        ("tempo/db-peer-service.json", "mythical-database"),
        ("tempo/db-network-peer-with-port.json", "mythical-database:5432"),
        ("tempo/db-network-peer.json", "mythical-database"),
        ("tempo/db-without-name.json", "mythical-database"),
        ("tempo/db-namespace.json", "mydb"),
        ("tempo/db-name-and-namespace.json", "priority-db"),
        ("tempo/db-system-name.json", "postgresql"),
        ("tempo/db-system-and-system-name.json", "mssql"),
    ];
    let config =
        r#"{"histogram_buckets":[0.04],"enable_messaging_system_latency_histogram":true,"initial_zero":false}"#;
    let mut failures = Vec::new();
    for &(fixture, server) in rows {
        let out = run(config, &[fixture]);
        let labels = [("client", "mythical-server"), ("server", server), ("connection_type", "database")];
        let want = Expect::new().edge(&labels, B04, 1.0, 0.0, &one(C), &one(C));
        let got = select(&graph_only(&out.before_expiry), &["connection_type=\"database\""]);
        if got != want.series {
            failures.push(format!("{fixture}: want server={server}, got {got:#?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // A trace without any database call makes no database node.
    let out = run(config, &["tempo/virtual-nodes.json"]);
    assert_series(&select(&out.metrics, &["mythical-database"]), &Expect::new());
    assert_series(&select(&out.metrics, &["connection_type=\"database\""]), &Expect::new());
}

/// `TestServiceGraphs_failedRequests`: an error status on either side fails
/// the request; a database call fails with its client span.
#[test]
fn failed_requests() {
    let out = run(r#"{"initial_zero":false}"#, &["tempo/failed-requests.json"]);
    let want = Expect::new()
        .edge(REQUESTER_SERVER, TEMPO_BUCKETS, 1.0, 1.0, &one(0.007309568), &one(0.015317504))
        .edge(SERVER_POSTGRES, TEMPO_BUCKETS, 1.0, 1.0, &one(0.002052096), &one(0.002052096));
    assert_series(&graph_only(&out.before_expiry), &want);
    assert_series(&graph_only(&out.metrics), &want);
    // HTTP POST, dns.lookup and the two log_to_loki calls never pair.
    assert_eq!(out.expired("SPAN_KIND_CLIENT"), 4);
    assert_eq!(out.stat("edges_new"), 6);
}

/// `TestServiceGraphs_tooManySpansErr` with `max_items: 1` (one shard, so
/// the limit is the store's): B completes A, C completes on arrival, D is
/// stored; E, F, G, H and I each find the store full.
#[test]
fn too_many_spans_are_dropped() {
    let out = run(r#"{"max_items":1,"shards":1,"initial_zero":false}"#, &["tempo/queue-database.json"]);
    assert_eq!(out.stat("spans_dropped"), 5);
    let want = Expect::new().edge(REQUESTER_SERVER, TEMPO_BUCKETS, 1.0, 0.0, &one(B), &one(A)).edge(
        SERVER_POSTGRES,
        TEMPO_BUCKETS,
        1.0,
        0.0,
        &one(C),
        &one(C),
    );
    assert_series(&graph_only(&out.metrics), &want);
    // Only D was waiting.
    assert_eq!(out.expired("SPAN_KIND_CLIENT"), 1);
}

/// Tempo counts a new edge only when the store takes it (or it completes at
/// once): a span refused for a full store is a dropped span, not an edge.
/// Here A, C and D make edges.
#[test]
fn too_many_spans_do_not_count_as_new_edges() {
    let out = run(r#"{"max_items":1,"shards":1,"initial_zero":false}"#, &["tempo/queue-database.json"]);
    assert_eq!(out.stat("edges_new"), 3);
}

// Fixture `virtual-nodes.json`: a root SERVER span of mythical-server with no
// caller, a CLIENT span of mythical-requester whose callee is only named by
// peer.service, and a root CONSUMER span of internal-consumer whose producer
// is named by peer.service (another trace).
const USER_SERVER: &[(&str, &str)] =
    &[("client", "user"), ("server", "mythical-server"), ("connection_type", "virtual_node")];
const REQUESTER_PAYMENTS: &[(&str, &str)] =
    &[("client", "mythical-requester"), ("server", "external-payments-platform"), ("connection_type", "virtual_node")];
const PRODUCER_CONSUMER: &[(&str, &str)] =
    &[("client", "external-producer"), ("server", "internal-consumer"), ("connection_type", "virtual_node")];

/// `TestServiceGraphs_virtualNodes`: the missing side observes 0.
#[test]
fn virtual_nodes() {
    let out = run(r#"{"histogram_buckets":[0.04],"initial_zero":false}"#, &["tempo/virtual-nodes.json"]);
    assert_series(&graph_only(&out.before_expiry), &Expect::new());
    let want = Expect::new()
        .edge(USER_SERVER, B04, 1.0, 0.0, &one(0.045834496), &one(0.0))
        .edge(REQUESTER_PAYMENTS, B04, 1.0, 0.0, &one(0.0), &one(0.000705792))
        .edge(PRODUCER_CONSUMER, B04, 1.0, 0.0, &one(0.000512), &one(0.0));
    assert_series(&graph_only(&out.metrics), &want);
    // Edges that became virtual nodes are not counted as expired.
    assert_eq!(out.stat("edges_expired"), 0);
    assert_eq!(out.stat("edges_virtual"), 3);
    assert_eq!(out.stat("edges_new"), 3);
}

/// `TestServiceGraphs_virtualNodesExtraLabelsForUninstrumentedServices`.
#[test]
fn virtual_nodes_with_label() {
    let out = run(r#"{"enable_virtual_node_label":true,"initial_zero":false}"#, &["tempo/virtual-nodes.json"]);
    let want = Expect::new()
        .edge(&with(USER_SERVER, &[("virtual_node", "client")]), TEMPO_BUCKETS, 1.0, 0.0, &one(0.045834496), &one(0.0))
        .edge(
            &with(REQUESTER_PAYMENTS, &[("virtual_node", "server")]),
            TEMPO_BUCKETS,
            1.0,
            0.0,
            &one(0.0),
            &one(0.000705792),
        )
        .edge(
            &with(PRODUCER_CONSUMER, &[("virtual_node", "client")]),
            TEMPO_BUCKETS,
            1.0,
            0.0,
            &one(0.000512),
            &one(0.0),
        );
    assert_series(&graph_only(&out.metrics), &want);
}

/// `TestServiceGraphs_expiredEdges`: a root server (→ virtual `user` edge), a
/// matched pair, a database call, and a server whose parent never arrives,
/// which alone counts as expired.
#[test]
fn expired_edges() {
    let out = run(r#"{"enable_virtual_node_label":true,"initial_zero":false}"#, &["tempo/expired-edges.json"]);
    assert_eq!(out.expired("SPAN_KIND_SERVER"), 1);
    assert_eq!(out.expired("SPAN_KIND_CLIENT"), 0);
    assert_eq!(out.expired("SPAN_KIND_PRODUCER"), 0);
    assert_eq!(out.expired("SPAN_KIND_CONSUMER"), 0);
    assert_eq!(out.stat("edges_expired"), 1);
    assert_eq!(out.stat("edges_new"), 4);
    assert_eq!(out.stat("spans_dropped"), 0);
    let user = [
        ("client", "user"),
        ("server", "mythical-server"),
        ("connection_type", "virtual_node"),
        ("virtual_node", "client"),
    ];
    let pair = [("client", "mythical-server"), ("server", "mythical-requester")];
    let db = [("client", "mythical-requester"), ("server", "mysql"), ("connection_type", "database")];
    let want = Expect::new()
        .edge(&user, TEMPO_BUCKETS, 1.0, 0.0, &one(0.031), &one(0.0))
        .edge(&pair, TEMPO_BUCKETS, 1.0, 0.0, &one(0.015), &one(0.02))
        .edge(&db, TEMPO_BUCKETS, 1.0, 0.0, &one(0.005), &one(0.005));
    assert_series(&graph_only(&out.metrics), &want);
}

/// `TestServiceGraphs_connectionInfo`: a gauge of 1 per connected pair.
#[test]
fn connection_info() {
    let out = run(
        r#"{"histogram_buckets":[0.04],"enable_connection_info":true,"initial_zero":false}"#,
        &["tempo/queue-database.json"],
    );
    let want = Expect::new()
        .edge(REQUESTER_SERVER, B04, 1.0, 0.0, &one(B), &one(A))
        .sample(CONNECTION_INFO, REQUESTER_SERVER, 1.0)
        .edge(SERVER_POSTGRES, B04, 1.0, 0.0, &one(C), &one(C))
        .sample(CONNECTION_INFO, SERVER_POSTGRES, 1.0)
        .edge(REQUESTER_RECORDER, B04, 1.0, 0.0, &one(I), &one(F))
        .sample(CONNECTION_INFO, REQUESTER_RECORDER, 1.0);
    assert_series(&graph_only(&out.before_expiry), &want);
}

/// `TestServiceGraphs_connectionInfo` with `sampler.param` = 0.5 on every
/// span: counts and histogram weights double; the gauge stays 1.
#[test]
fn span_multiplier() {
    let out = run(
        r#"{"histogram_buckets":[0.04],"enable_connection_info":true,"span_multiplier_key":"sampler.param","initial_zero":false}"#,
        &["tempo/queue-database-sampled.json"],
    );
    let two = |v: f64| [(v, 2.0)];
    let want = Expect::new()
        .edge(REQUESTER_SERVER, B04, 2.0, 0.0, &two(B), &two(A))
        .sample(CONNECTION_INFO, REQUESTER_SERVER, 1.0)
        .edge(SERVER_POSTGRES, B04, 2.0, 0.0, &two(C), &two(C))
        .sample(CONNECTION_INFO, SERVER_POSTGRES, 1.0)
        .edge(REQUESTER_RECORDER, B04, 2.0, 0.0, &two(I), &two(F))
        .sample(CONNECTION_INFO, REQUESTER_RECORDER, 1.0);
    assert_series(&graph_only(&out.before_expiry), &want);
}

/// `exemplarsCarryTraceID`: the completed edge, the database call and the
/// expired root server's `user` edge each give both their histograms one
/// exemplar: the bucket the request fell in, label `traceID` = the trace
/// ID in hex, value = the latency observed, time = when it was counted.
#[test]
fn exemplars_carry_the_trace_id() {
    let (text, now) = openmetrics_after_expiry(r#"{"initial_zero":false}"#, "tempo/expired-edges.json");
    let trace = "ee0102030405060708090a0b0c0d0e0f";
    let mut got: Vec<(String, String, String)> = text
        .lines()
        .filter_map(|l| l.split_once(" # {"))
        .map(|(sample, exemplar)| {
            let family = sample.split_once("_bucket{").unwrap().0.to_string();
            let edge = sample.split_once(",client=").unwrap().1.split_once(',').unwrap().0.to_string();
            (family, edge, exemplar.to_string())
        })
        .collect();
    got.sort();
    let at = format!("{}.{:09}", now / 1_000_000_000, now % 1_000_000_000).trim_end_matches('0').to_string();
    let ex = |v: &str| format!("traceID=\"{trace}\"}} {v} {at}");
    let (client, server) =
        ("traces_service_graph_request_client_seconds", "traces_service_graph_request_server_seconds");
    let want = [
        (client, "\"mythical-requester\"", ex("0.005")),
        (client, "\"mythical-server\"", ex("0.02")),
        (client, "\"user\"", ex("0.0")),
        (server, "\"mythical-requester\"", ex("0.005")),
        (server, "\"mythical-server\"", ex("0.015")),
        (server, "\"user\"", ex("0.031")),
    ];
    let want: Vec<(String, String, String)> =
        want.iter().map(|(f, e, x)| (f.to_string(), e.to_string(), x.clone())).collect();
    assert_eq!(got, want);
    // The Prometheus 0.0.4 text has no exemplars; turned off, OpenMetrics neither.
    let (off, _) = openmetrics_after_expiry(r#"{"initial_zero":false,"exemplars":false}"#, "tempo/expired-edges.json");
    assert!(!off.contains(" # {") && off.contains("_bucket{"));
    let (renamed, _) = openmetrics_after_expiry(
        r#"{"initial_zero":false,"trace_id_label_name":"trace_id"}"#,
        "tempo/expired-edges.json",
    );
    assert_eq!(renamed.matches(" # {trace_id=\"").count(), 6);
}

/// The OpenMetrics text after feeding `fixture` and expiring everything, and
/// the time it was fed at (its latest span end).
fn openmetrics_after_expiry(config: &str, fixture_name: &str) -> (String, u64) {
    use prost::Message;
    use servicemap::wire::json::{self as otlp_json, Layout};
    let engine = servicemap::Engine::new(servicemap::Config::from_json(config.as_bytes()).unwrap());
    let data = std::fs::read(fixture(fixture_name)).unwrap();
    let mut now = 0;
    for batch in otlp_json::batches(&data, Layout::Detect) {
        let batch = batch.unwrap();
        let ends = batch.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans);
        now = ends.map(|s| s.end_time_unix_nano).fold(now, u64::max);
        engine.consume(&batch.encode_to_vec(), now).unwrap();
    }
    engine.expire_all(now);
    assert!(!String::from_utf8(engine.render(servicemap::Format::Prometheus, now)).unwrap().contains(" # {"));
    (String::from_utf8(engine.render(servicemap::Format::OpenMetrics, now)).unwrap(), now)
}

/// `TestServiceGraphs_applyFilterPolicy`: the request totals of
/// requester→server, server→postgres and requester→recorder with no policy,
/// including only one service, or excluding one. A span filtered out takes
/// its other side with it: nothing is left to expire as unpaired.
#[test]
fn filter_policies() {
    let total = |out: &Outcome, edge: &[(&str, &str)]| {
        out.metrics.get(&key("traces_service_graph_request_total", edge)).copied().unwrap_or(0.0)
    };
    let policy = |kind: &str, service: &str| {
        format!(
            r#"{{"initial_zero":false,"filter_policies":[{{"{kind}":{{"match_type":"strict","attributes":[{{"key":"resource.service.name","value":"{service}"}}]}}}}]}}"#
        )
    };
    // Expired: D, E, G and H (calls that never pair) unless filtered out.
    for (config, want, dropped, expired) in [
        (r#"{"initial_zero":false}"#.to_string(), [1.0, 1.0, 1.0], 0, 4),
        // B and I are filtered out, taking A and F with them; G and H expire.
        (policy("include", "mythical-requester"), [0.0, 0.0, 0.0], 2, 2),
        // A, F, G, H and I are filtered out; B finds A's marker; D and E expire.
        (policy("include", "mythical-server"), [0.0, 1.0, 0.0], 1, 2),
        // A, F, G and H are filtered out; B and I find their markers.
        (policy("exclude", "mythical-requester"), [0.0, 1.0, 0.0], 2, 2),
    ] {
        let out = run(&config, &["tempo/queue-database.json"]);
        let got = [REQUESTER_SERVER, SERVER_POSTGRES, REQUESTER_RECORDER].map(|e| total(&out, e));
        assert_eq!(got, want, "{config}");
        assert_eq!(out.stat("edges_dropped_by_filter"), dropped, "{config}");
        assert_eq!(out.stat("edges_expired"), expired, "{config}");
        assert_eq!(out.stat("edges_virtual"), 0, "{config}");
    }
}
