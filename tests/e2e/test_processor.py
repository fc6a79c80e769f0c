"""The servicemap processor in the built collector, fed by the OpenTelemetry
Python SDK over OTLP gRPC and HTTP, checked on its own metrics endpoint."""

import pytest

import expect
import harness
import traffic

SETTLE_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def settled(processor_collector, shop_traffic):
    """The processor's exposition once every expected series (including the
    virtual-node edges written at expiry) shows its final value."""
    want = expect.samples(traffic.EXPECTED, expect.TEMPO_BUCKETS)
    return expect.wait_for(processor_collector.scrape, want, SETTLE_TIMEOUT)


def total(exp, client, server, connection_type=None):
    labels = {"client": client, "server": server}
    if connection_type:
        labels["connection_type"] = connection_type
    return exp.get("traces_service_graph_request_total", **labels)


def failed(exp, client, server, connection_type=None):
    labels = {"client": client, "server": server}
    if connection_type:
        labels["connection_type"] = connection_type
    return exp.get("traces_service_graph_request_failed_total", **labels)


def test_all_spans_reached_the_collector(shop_traffic):
    assert shop_traffic.spans_sent() == traffic.spans_per_run()


def test_exact_series_set(settled):
    # wait_for already compared every request counter, failure counter and
    # histogram sample with the expectation; check it once more, on the
    # scrape it returned, so a failure here shows the full difference.
    want = expect.samples(traffic.EXPECTED, expect.TEMPO_BUCKETS)
    assert expect.diff(expect.actual(settled), want) == ""


def test_instrumented_http_edges(settled):
    assert total(settled, "frontend", "checkout") == 4
    assert failed(settled, "frontend", "checkout") == 1
    assert total(settled, "checkout", "payment") == 4
    # Both spans of request 2 are ERROR: one failed request.
    assert failed(settled, "checkout", "payment") == 1
    assert settled.get("traces_service_graph_request_server_seconds_sum", client="frontend", server="checkout") == 1.0
    assert settled.get("traces_service_graph_request_client_seconds_sum", client="frontend", server="checkout") == 1.5
    assert settled.get("traces_service_graph_request_server_seconds_bucket",
                       client="frontend", server="checkout", le="0.2") == 0
    assert settled.get("traces_service_graph_request_server_seconds_bucket",
                       client="frontend", server="checkout", le="0.4") == 4


def test_database_edges_named_by_tempo_rules(settled):
    # peer.service first (the span also has server.address and db.namespace).
    assert total(settled, "checkout", "inventory-db", "database") == 4
    # server.address before the database attributes.
    assert total(settled, "payment", "pg-primary", "database") == 4
    assert failed(settled, "payment", "pg-primary", "database") == 1
    # network.peer.address with its port.
    assert total(settled, "fulfillment", "redis.local:6379", "database") == 1
    # db.namespace, then db.name, then db.system.
    assert total(settled, "fulfillment", "warehouse", "database") == 1
    assert total(settled, "fulfillment", "legacy", "database") == 1
    assert total(settled, "fulfillment", "mongodb", "database") == 1
    # The server side of a database edge is the client's latency.
    for side in ("server", "client"):
        assert settled.get(f"traces_service_graph_request_{side}_seconds_sum",
                           client="payment", server="pg-primary", connection_type="database") == 0.125
    # No other naming of the same calls shows up.
    servers = {labels["server"] for labels, _ in settled.series("traces_service_graph_request_total")}
    for name in ("mysql", "mysql.local", "inventory", "payments", "postgresql", "redis", "redis.local", "mssql"):
        assert name not in servers


def test_messaging_edge(settled):
    assert total(settled, "checkout", "fulfillment", "messaging_system") == 4
    assert failed(settled, "checkout", "fulfillment", "messaging_system") is None
    assert settled.get("traces_service_graph_request_server_seconds_sum",
                       client="checkout", server="fulfillment", connection_type="messaging_system") == 1.0
    assert settled.get("traces_service_graph_request_client_seconds_sum",
                       client="checkout", server="fulfillment", connection_type="messaging_system") == 0.03125


def test_virtual_node_edges_after_expiry(settled):
    # Root SERVER spans of the frontend: a virtual `user` client.
    assert total(settled, "user", "frontend", "virtual_node") == 4
    assert settled.get("traces_service_graph_request_server_seconds_sum",
                       client="user", server="frontend", connection_type="virtual_node") == 2.0
    assert settled.get("traces_service_graph_request_client_seconds_sum",
                       client="user", server="frontend", connection_type="virtual_node") == 0.0
    assert settled.get("traces_service_graph_request_client_seconds_count",
                       client="user", server="frontend", connection_type="virtual_node") == 4
    # A CLIENT span with peer.service and no server span: a virtual server.
    assert total(settled, "payment", "stripe-api", "virtual_node") == 4
    assert failed(settled, "payment", "stripe-api", "virtual_node") == 1
    assert settled.get("traces_service_graph_request_server_seconds_bucket",
                       client="payment", server="stripe-api", connection_type="virtual_node", le="0.1") == 4


def test_unmatched_spans_write_no_edge(settled):
    # The health checks (no peer attribute) and the SERVER span whose caller
    # exports nothing expire without an edge.
    edges = {(labels["client"], labels["server"]) for labels, _ in settled.series("traces_service_graph_request_total")}
    assert edges == {(c, s) for c, s, _ in traffic.EXPECTED}
    unpaired = {}
    for labels, value in settled.series("traces_service_graph_unpaired_spans_total"):
        assert len(labels) == 1, labels
        unpaired[next(iter(labels.items()))] = value
    assert unpaired == traffic.UNPAIRED


def test_no_span_dropped(settled):
    assert settled.series("traces_service_graph_dropped_spans_total") in ([], [({}, 0.0)])


def _stats(exposition, prefix):
    """{statistic name, lower case: value} of the engine statistics among the
    collector's own metrics (a counter may carry a `_total` suffix)."""
    out = {}
    for (name, _labels), value in exposition.samples.items():
        if name.startswith(prefix):
            stat = name[len(prefix):].lower()
            out[stat[: -len("_total")] if stat.endswith("_total") else stat] = value
    return out


def test_engine_statistics_in_collector_telemetry(processor_collector, settled):
    """The engine's counters, as the collector's own metrics."""
    want = {f"expired_by_kind_{kind}".lower(): float(n) for kind, n in traffic.EXPIRED_UNMATCHED.items()}
    want["edges_virtual"] = float(len(traffic.EXPECTED[("user", "frontend", "virtual_node")])
                                  + len(traffic.EXPECTED[("payment", "stripe-api", "virtual_node")]))
    want["spans_received"] = float(traffic.spans_per_run())
    want["spans_dropped"] = 0.0
    want["batches_rejected"] = 0.0
    last = {}

    def stats():
        status, body = harness.http_get(processor_collector.telemetry_url)
        assert status == 200
        got = _stats(harness.Exposition(body), "otelcol_servicemap_engine_")
        last["got"] = {k: got.get(k) for k in want}
        return last["got"] == want

    try:
        harness.poll(stats, 30, interval=0.5, what="engine statistics")
    except harness.Timeout:
        raise AssertionError(f"engine statistics: want {want}, got {last.get('got')}") from None


def test_openmetrics_on_request(processor_collector, settled):
    status, body = harness.http_get(processor_collector.metrics_url,
                                    headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert status == 200
    assert body.rstrip().endswith("# EOF")
    assert 'traces_service_graph_request_total{client="frontend",server="checkout"} 4' in body
