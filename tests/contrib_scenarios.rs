//! The scenarios of the OpenTelemetry Collector contrib `servicegraph`
//! connector's tests, replayed from our own OTLP/JSON fixtures
//! (tests/fixtures/contrib) with the `contrib` preset, and checked series by
//! series with exact values. Where the presets differ, the same fixture is
//! also run with the Tempo preset.

mod scenario;
use scenario::*;

/// The connector's default bucket bounds, in seconds.
const CONTRIB_BUCKETS: &[f64] =
    &[0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.4, 2.0, 5.0, 10.0, 15.0];
const TEMPO_BUCKETS: &[f64] = &[0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8];
const SMALL: &[f64] = &[0.1, 1.0, 10.0];

fn one(v: f64) -> [(f64, f64); 1] {
    [(v, 1.0)]
}

/// A CLIENT span of 1 s and its SERVER span of 2 s; a dimension found on the
/// client span only, and one found nowhere. Dimensions are always prefixed
/// and the `failed` label is always there.
#[test]
fn complete_pair_with_prefixed_dimension() {
    let out = run(
        r#"{"compat":"contrib","dimensions":["some-attribute","non-existing-attribute"],"initial_zero":false}"#,
        &["contrib/complete-pair.json"],
    );
    let labels =
        [("client", "checkout"), ("server", "payments"), ("failed", "false"), ("client_some_attribute", "val")];
    let want = Expect::new().edge(&labels, CONTRIB_BUCKETS, 1.0, 0.0, &one(2.0), &one(1.0));
    assert_series(&graph_only(&out.before_expiry), &want);
    assert_series(&graph_only(&out.metrics), &want);
    assert_eq!(out.stat("edges_expired"), 0);
}

/// Three foo→bar requests of 1 s, the third failing: the `failed` label
/// splits them into two series.
#[test]
fn failed_label_splits_series() {
    let out = run(r#"{"compat":"contrib","initial_zero":false}"#, &["contrib/failed-label.json"]);
    let ok = [("client", "foo"), ("server", "bar"), ("failed", "false")];
    let bad = [("client", "foo"), ("server", "bar"), ("failed", "true")];
    let twice = [(1.0, 1.0), (1.0, 1.0)];
    let want = Expect::new().edge(&ok, CONTRIB_BUCKETS, 2.0, 0.0, &twice, &twice).edge(
        &bad,
        CONTRIB_BUCKETS,
        1.0,
        1.0,
        &one(1.0),
        &one(1.0),
    );
    assert_series(&graph_only(&out.metrics), &want);
}

/// The same fixture under Tempo's rules: one series, failures counted apart.
#[test]
fn without_failed_label_one_series() {
    let out = run(r#"{"initial_zero":false}"#, &["contrib/failed-label.json"]);
    let labels = [("client", "foo"), ("server", "bar")];
    let thrice = [(1.0, 1.0), (1.0, 1.0), (1.0, 1.0)];
    let want = Expect::new().edge(&labels, TEMPO_BUCKETS, 3.0, 1.0, &thrice, &thrice);
    assert_series(&graph_only(&out.metrics), &want);
}

/// A client span whose server never comes (no peer attribute → `unknown`),
/// a root server span (→ `user`, whatever its own peer.service says), a
/// client span with peer.service, and a server span whose client was lost
/// (nothing). Every expiry counts as expired, virtual or not.
#[test]
fn virtual_nodes_unknown_server_and_user_client() {
    let out = run(
        r#"{"compat":"contrib","dimensions":["peer.service","db.system","messaging.system"],"peer_attributes":["peer.service","db.system","messaging.system"],"enable_virtual_node_label":true,"histogram_buckets":[0.1,1,10],"initial_zero":false}"#,
        &["contrib/virtual-nodes.json"],
    );
    assert_series(&graph_only(&out.before_expiry), &Expect::new());
    let unknown = [
        ("client", "foo-server"),
        ("server", "unknown"),
        ("connection_type", "virtual_node"),
        ("failed", "false"),
        ("virtual_node", "server"),
    ];
    let user = [
        ("client", "user"),
        ("server", "bar-requester"),
        ("connection_type", "virtual_node"),
        ("failed", "false"),
        ("virtual_node", "client"),
        ("server_peer_service", "external-platform"),
    ];
    let cache = [
        ("client", "foo-server"),
        ("server", "AuthTokenCache"),
        ("connection_type", "virtual_node"),
        ("failed", "false"),
        ("virtual_node", "server"),
        ("client_peer_service", "AuthTokenCache"),
    ];
    let want = Expect::new()
        .edge(&unknown, SMALL, 1.0, 0.0, &one(0.0), &one(0.3))
        .edge(&user, SMALL, 1.0, 0.0, &one(0.7), &one(0.0))
        .edge(&cache, SMALL, 1.0, 0.0, &one(0.0), &one(0.002));
    assert_series(&graph_only(&out.metrics), &want);
    assert_eq!(out.stat("edges_new"), 4);
    assert_eq!(out.stat("edges_virtual"), 3);
    assert_eq!(out.stat("edges_expired"), 4);
}

/// Without the virtual-node label the label is absent, not empty.
#[test]
fn virtual_nodes_without_label() {
    let out = run(
        r#"{"compat":"contrib","histogram_buckets":[0.1,1,10],"initial_zero":false}"#,
        &["contrib/virtual-nodes.json"],
    );
    let vn = |c: &'static str, s: &'static str| {
        [("client", c), ("server", s), ("connection_type", "virtual_node"), ("failed", "false")]
    };
    let want = Expect::new()
        .edge(&vn("foo-server", "unknown"), SMALL, 1.0, 0.0, &one(0.0), &one(0.3))
        .edge(&vn("user", "bar-requester"), SMALL, 1.0, 0.0, &one(0.7), &one(0.0))
        .edge(&vn("foo-server", "AuthTokenCache"), SMALL, 1.0, 0.0, &one(0.0), &one(0.002));
    assert_series(&graph_only(&out.metrics), &want);
}

/// The same fixture under Tempo's rules: a root server is named after its
/// own peer.service, a client without a peer attribute makes no node, and
/// only the unmatched edges count as expired.
#[test]
fn virtual_nodes_under_tempo_rules() {
    let out = run(r#"{"histogram_buckets":[0.1,1,10],"initial_zero":false}"#, &["contrib/virtual-nodes.json"]);
    let vn = |c: &'static str, s: &'static str| [("client", c), ("server", s), ("connection_type", "virtual_node")];
    let want = Expect::new()
        .edge(&vn("external-platform", "bar-requester"), SMALL, 1.0, 0.0, &one(0.7), &one(0.0))
        .edge(&vn("foo-server", "AuthTokenCache"), SMALL, 1.0, 0.0, &one(0.0), &one(0.002));
    assert_series(&graph_only(&out.metrics), &want);
    assert_eq!(out.stat("edges_expired"), 2);
    assert_eq!(out.expired("SPAN_KIND_CLIENT"), 1);
    assert_eq!(out.expired("SPAN_KIND_SERVER"), 1);
}

/// Dimensions from both sides of one edge: `client_` from the client span,
/// `server_` from the server span. Both spans last 1 µs.
#[test]
fn extra_dimensions_from_both_sides() {
    let out = run(
        r#"{"compat":"contrib","dimensions":["messaging.system","db.system"],"histogram_buckets":[0.1,1,10],"initial_zero":false}"#,
        &["contrib/extra-dimensions.json"],
    );
    let labels = [
        ("client", "foo-server"),
        ("server", "bar-requester"),
        ("failed", "false"),
        ("client_messaging_system", "kafka"),
        ("server_db_system", "postgresql"),
    ];
    let want = Expect::new().edge(&labels, SMALL, 1.0, 0.0, &one(1e-06), &one(1e-06));
    assert_series(&graph_only(&out.before_expiry), &want);
}

/// contrib names a database after the database attribute's value (db.name
/// before db.namespace); db.system alone is not a database call, so that
/// span waits and becomes a virtual node named by its peer attribute.
#[test]
fn database_named_by_attribute_value() {
    let out = run(r#"{"compat":"contrib","initial_zero":false}"#, &["contrib/database.json"]);
    let db = |s: &'static str| [("client", "api"), ("server", s), ("connection_type", "database"), ("failed", "false")];
    let before = Expect::new().edge(&db("orders"), CONTRIB_BUCKETS, 1.0, 0.0, &one(0.004), &one(0.004)).edge(
        &db("inventory"),
        CONTRIB_BUCKETS,
        1.0,
        0.0,
        &one(0.008),
        &one(0.008),
    );
    assert_series(&graph_only(&out.before_expiry), &before);
    let vn = [("client", "api"), ("server", "postgresql"), ("connection_type", "virtual_node"), ("failed", "false")];
    let after = before.edge(&vn, CONTRIB_BUCKETS, 1.0, 0.0, &one(0.0), &one(0.016));
    assert_series(&graph_only(&out.metrics), &after);
}

/// The same spans under Tempo's rules: peer.service, then server.address,
/// name the node, and db.system marks a database call.
#[test]
fn database_spans_under_tempo_rules() {
    let out = run(r#"{"initial_zero":false}"#, &["contrib/database.json"]);
    let db = |s: &'static str| [("client", "api"), ("server", s), ("connection_type", "database")];
    let want = Expect::new()
        .edge(&db("db-host"), TEMPO_BUCKETS, 1.0, 0.0, &one(0.004), &one(0.004))
        .edge(&db("stock-db"), TEMPO_BUCKETS, 1.0, 0.0, &one(0.008), &one(0.008))
        .edge(&db("postgresql"), TEMPO_BUCKETS, 1.0, 0.0, &one(0.016), &one(0.016));
    assert_series(&graph_only(&out.metrics), &want);
}

/// A producer whose consumer never comes: contrib never turns a messaging
/// edge into a virtual node, and counts it expired.
#[test]
fn unpaired_producer_is_never_virtual() {
    let out = run(r#"{"compat":"contrib","initial_zero":false}"#, &["contrib/messaging-unpaired.json"]);
    assert_series(&graph_only(&out.metrics), &Expect::new());
    assert_eq!(out.stat("edges_expired"), 1);
    assert_eq!(out.expired("SPAN_KIND_PRODUCER"), 1);
}

/// Tempo makes it a virtual node named by the producer's peer.service.
#[test]
fn unpaired_producer_under_tempo_rules() {
    let out = run(r#"{"initial_zero":false}"#, &["contrib/messaging-unpaired.json"]);
    let labels = [("client", "orders"), ("server", "broker"), ("connection_type", "virtual_node")];
    let want = Expect::new().edge(&labels, TEMPO_BUCKETS, 1.0, 0.0, &one(0.0), &one(0.003));
    assert_series(&graph_only(&out.metrics), &want);
    assert_eq!(out.stat("edges_expired"), 0);
}

/// Consumers that name their producer by a span link, in another trace:
/// producer first (orders→billing), consumer first (orders→shipping), and
/// one consumer linked to two producers (orders→audit, two requests).
/// Matched producers leave without counting as expired.
#[test]
fn span_links_pair_producers_and_consumers() {
    let out = run(
        r#"{"compat":"contrib","histogram_buckets":[0.1,1,10],"initial_zero":false}"#,
        &["contrib/span-links.json"],
    );
    let mq = |s: &'static str| {
        [("client", "orders"), ("server", s), ("connection_type", "messaging_system"), ("failed", "false")]
    };
    let want = Expect::new()
        .edge(&mq("billing"), SMALL, 1.0, 0.0, &one(0.03), &one(0.002))
        .edge(&mq("shipping"), SMALL, 1.0, 0.0, &one(0.04), &one(0.004))
        .edge(&mq("audit"), SMALL, 2.0, 0.0, &[(0.02, 1.0), (0.02, 1.0)], &[(0.001, 1.0), (0.003, 1.0)]);
    assert_series(&graph_only(&out.before_expiry), &want);
    assert_series(&graph_only(&out.metrics), &want);
    assert_eq!(out.stat("edges_expired"), 0);
    assert_eq!(out.stat("edges_completed"), 4);
}
