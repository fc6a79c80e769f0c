"""The servicemap connector in the built collector: traces in over OTLP,
service-graph metrics out through a metrics pipeline and the Prometheus
exporter. The connector's default preset is the collector-contrib
servicegraph connector's, so the same traffic gives contrib's graph."""

import pytest

import expect
import traffic
from traffic import (
    CHECKOUT_SERVER,
    CHECKOUT_TO_PAYMENT_CLIENT,
    FRONTEND_SERVER,
    FRONTEND_TO_CHECKOUT_CLIENT,
    FULFILLMENT_DB,
    INVENTORY_DB,
    KAFKA_CONSUME,
    KAFKA_PRODUCE,
    LONE_CLIENTS,
    PAYMENT_DB,
    PAYMENT_SERVER,
    PAYMENT_TO_STRIPE,
    REQUESTS,
)

SETTLE_TIMEOUT = 60.0
# Labels the Prometheus exporter adds from the instrumentation scope.
SCOPE_LABELS = ("otel_scope_",)


def _requests(n, server_s, client_s, failed=()):
    return [(i in failed, server_s, client_s) for i in range(n)]


# The shop's graph under contrib's rules: databases are named by the value
# of db.name or db.namespace (not by peer.service or server.address); a
# client span without them becomes a virtual node named by its first peer
# attribute (peer.service, db.name, db.namespace, db.system, db.system.name),
# or `unknown`.
CONTRIB_EXPECTED = {
    ("user", "frontend", "virtual_node"): _requests(REQUESTS, FRONTEND_SERVER, 0.0),
    ("frontend", "checkout", None): _requests(REQUESTS, CHECKOUT_SERVER, FRONTEND_TO_CHECKOUT_CLIENT, failed={1}),
    ("checkout", "payment", None): _requests(REQUESTS, PAYMENT_SERVER, CHECKOUT_TO_PAYMENT_CLIENT, failed={2}),
    ("payment", "payments", "database"): _requests(REQUESTS, PAYMENT_DB, PAYMENT_DB, failed={3}),
    ("checkout", "inventory", "database"): _requests(REQUESTS, INVENTORY_DB, INVENTORY_DB),
    ("payment", "stripe-api", "virtual_node"): _requests(REQUESTS, 0.0, PAYMENT_TO_STRIPE, failed={0}),
    ("checkout", "fulfillment", "messaging_system"): _requests(REQUESTS, KAFKA_CONSUME, KAFKA_PRODUCE),
    ("fulfillment", "warehouse", "database"): _requests(1, FULFILLMENT_DB, FULFILLMENT_DB),
    ("fulfillment", "legacy", "database"): _requests(1, FULFILLMENT_DB, FULFILLMENT_DB),
    ("fulfillment", "redis", "virtual_node"): _requests(1, 0.0, FULFILLMENT_DB),
    ("fulfillment", "mongodb", "virtual_node"): _requests(1, 0.0, FULFILLMENT_DB),
    ("frontend", "unknown", "virtual_node"): _requests(LONE_CLIENTS, 0.0, FULFILLMENT_DB),
}

# Every span whose half-edge expired, by the side that arrived (contrib
# counts the ones written as virtual nodes too).
CONTRIB_UNPAIRED = {
    ("server", "frontend"): REQUESTS,
    ("client", "payment"): REQUESTS,
    ("client", "fulfillment"): 2,
    ("client", "frontend"): LONE_CLIENTS,
    ("server", "payment"): 1,
}


@pytest.fixture(scope="module")
def settled(connector_collector):
    fleet = connector_collector.fleet()
    try:
        traffic.run_shop(fleet)
        fleet.flush()
        assert fleet.spans_sent() == traffic.spans_per_run()
    finally:
        fleet.shutdown()
    want = expect.samples(CONTRIB_EXPECTED, expect.CONTRIB_BUCKETS, failed_label=True)
    return expect.wait_for(connector_collector.scrape, want, SETTLE_TIMEOUT, drop_prefixes=SCOPE_LABELS)


def test_exact_series_set(settled):
    want = expect.samples(CONTRIB_EXPECTED, expect.CONTRIB_BUCKETS, failed_label=True)
    assert expect.diff(expect.actual(settled, SCOPE_LABELS), want) == ""


def test_failed_label_splits_requests(settled):
    got = expect.actual(settled, SCOPE_LABELS)

    def total(failed):
        return got.get(("traces_service_graph_request_total",
                        frozenset({"client": "frontend", "server": "checkout", "failed": failed}.items())))

    assert total("false") == 3
    assert total("true") == 1
    assert got.get(("traces_service_graph_request_failed_total",
                    frozenset({"client": "frontend", "server": "checkout", "failed": "true"}.items()))) == 1


def test_contrib_database_and_virtual_node_naming(settled):
    got = expect.actual(settled, SCOPE_LABELS)
    edges = {(dict(labels)["client"], dict(labels)["server"], dict(labels).get("connection_type"))
             for name, labels in got if name == "traces_service_graph_request_total"}
    assert ("checkout", "inventory", "database") in edges
    assert ("payment", "payments", "database") in edges
    assert ("fulfillment", "redis", "virtual_node") in edges
    assert ("frontend", "unknown", "virtual_node") in edges


def test_contrib_labels_always_present(settled):
    # contrib writes connection_type and failed on every series, even empty.
    for labels, _ in settled.series("traces_service_graph_request_total"):
        assert "connection_type" in labels and labels["failed"] in ("true", "false"), labels


def test_unpaired_spans(settled):
    got = {}
    for labels, value in settled.series("traces_service_graph_unpaired_spans_total"):
        side = {k: v for k, v in labels.items() if not k.startswith(SCOPE_LABELS)}
        assert len(side) == 1, labels
        got[next(iter(side.items()))] = value
    assert got == CONTRIB_UNPAIRED
