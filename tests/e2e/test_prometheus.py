"""A real Prometheus server scrapes the processor, and answers the PromQL
queries that Grafana's service graph runs (Tempo data source, service map
and its node/edge links)."""

import math
import subprocess

import expect
import harness
import traffic
from harness import tool

# (client, server) of every edge, and of the edges with failures.
EDGES = {(c, s) for c, s, _ in traffic.EXPECTED}
FAILED_EDGES = {(c, s) for (c, s, conn) in traffic.EXPECTED if traffic.totals((c, s, conn))[1] > 0}
# Edges whose server side observed only zeros (virtual servers).
ZERO_SERVER_EDGES = {(c, s) for (c, s, conn), reqs in traffic.EXPECTED.items() if all(r[1] == 0 for r in reqs)}


def test_target_is_up(settled):
    assert settled.query('up{job="servicemap"}')[0]["value"][1] == "1"


def test_request_rate(settled):
    rates = harness.by_edge(settled.query("sum by (client, server) (rate(traces_service_graph_request_total[1m]))",
                                           at=settled.settled_at))
    assert set(rates) == EDGES
    assert all(v > 0 for v in rates.values()), rates


def test_failed_request_rate(settled):
    rates = harness.by_edge(settled.query("sum by (client, server) (rate(traces_service_graph_request_failed_total[1m]))",
                                           at=settled.settled_at))
    assert set(rates) == FAILED_EDGES
    assert all(v > 0 for v in rates.values()), rates


def test_server_seconds_rate(settled):
    rates = harness.by_edge(
        settled.query("sum by (client, server) (rate(traces_service_graph_request_server_seconds_sum[1m]))",
                      at=settled.settled_at))
    assert set(rates) == EDGES
    for edge, value in rates.items():
        if edge in ZERO_SERVER_EDGES:
            assert value == 0, edge
        else:
            assert value > 0, edge


def test_counter_values(settled):
    # The stored counters are the exact request and failure counts.
    totals = harness.by_edge(settled.query("sum by (client, server) (traces_service_graph_request_total)"))
    assert totals == {(c, s): float(traffic.totals((c, s, conn))[0]) for (c, s, conn) in traffic.EXPECTED}
    failed = harness.by_edge(settled.query("sum by (client, server) (traces_service_graph_request_failed_total)"))
    assert failed == {(c, s): float(traffic.totals((c, s, conn))[1])
                      for (c, s, conn) in traffic.EXPECTED if (c, s) in FAILED_EDGES}


def test_increase_over_the_run_counts_every_request_with_a_second_scraper(settled, prom_collector):
    # Evaluated at the last scrape, increase() does not extrapolate past it,
    # and a counter first seen at zero is not extrapolated before it: the
    # answer is exact when Prometheus saw each series at zero before its
    # first requests, which a second scraper must not prevent.
    last = max(float(row["value"][1]) for row in settled.query("timestamp(traces_service_graph_request_total)"))
    got = harness.by_edge(settled.query("sum by (client, server) (increase(traces_service_graph_request_total[30m]))",
                                at=last))
    assert got == {(c, s): float(traffic.totals((c, s, conn))[0]) for (c, s, conn) in traffic.EXPECTED}


def test_back_to_back_scrapes_agree(settled, prom_collector):
    for _ in range(10):
        first, second = prom_collector.scrape(), prom_collector.scrape()
        assert first.text == second.text


def test_edge_label_sets(settled):
    # What Grafana uses to tell instrumented servers from databases and
    # virtual nodes.
    rows = settled.query("group by (client, connection_type, server) (traces_service_graph_request_total)")
    got = {frozenset(row["metric"].items()) for row in rows}
    want = {frozenset(traffic.edge_labels(key).items()) for key in traffic.EXPECTED}
    assert got == want
    assert all(row["value"][1] == "1" for row in rows)


def test_edge_label_sets_for_each_grafana_metric(settled):
    want = {frozenset(traffic.edge_labels(key).items()) for key in traffic.EXPECTED}
    want_failed = {frozenset(traffic.edge_labels(key).items())
                   for key in traffic.EXPECTED if (key[0], key[1]) in FAILED_EDGES}
    for metric, expected in [
        ("traces_service_graph_request_server_seconds_sum", want),
        ("traces_service_graph_request_failed_total", want_failed),
        ("traces_service_graph_request_server_seconds_bucket", want),
    ]:
        rows = settled.query(f"group by (client, connection_type, server) ({metric})")
        assert {frozenset(row["metric"].items()) for row in rows} == expected, metric


def test_connection_types(settled):
    rows = settled.query("count by (connection_type) (traces_service_graph_request_total)")
    got = {row["metric"].get("connection_type", ""): float(row["value"][1]) for row in rows}
    want = {}
    for _, _, conn in traffic.EXPECTED:
        want[conn or ""] = want.get(conn or "", 0.0) + 1
    assert got == want
    assert got == {"": 2.0, "database": 6.0, "messaging_system": 1.0, "virtual_node": 2.0}


def test_server_latency_p90(settled):
    rows = settled.query("histogram_quantile(0.9, sum(rate(traces_service_graph_request_server_seconds_bucket[1m]))"
                         " by (le, client, server))", at=settled.settled_at)
    got = harness.by_edge(rows)
    assert set(got) == EDGES
    for (client, server, _), reqs in traffic.EXPECTED.items():
        counts = [(b, sum(1 for r in reqs if r[1] <= b)) for b in expect.TEMPO_BUCKETS] + [(math.inf, len(reqs))]
        want = harness.bucket_quantile(0.9, counts)
        assert math.isclose(got[(client, server)], want, rel_tol=1e-9, abs_tol=1e-12), (client, server, want)
    # Spot checks: 0.25 s lies in (0.2, 0.4]; the virtual server's zeros in (0, 0.1].
    assert math.isclose(got[("frontend", "checkout")], 0.38, rel_tol=1e-9)
    assert math.isclose(got[("payment", "stripe-api")], 0.09, rel_tol=1e-9)


def test_grafana_node_links(settled):
    # The node graph's context links, with a server filter and a short range.
    rate = harness.by_edge(settled.query(
        'sum by (client, server)(rate(traces_service_graph_request_total{server="checkout"}[1m]))',
        at=settled.settled_at))
    assert set(rate) == {("frontend", "checkout")} and rate[("frontend", "checkout")] > 0
    failed = harness.by_edge(settled.query(
        'sum by (client, server)(rate(traces_service_graph_request_failed_total{server="checkout"}[1m]))',
        at=settled.settled_at))
    assert set(failed) == {("frontend", "checkout")} and failed[("frontend", "checkout")] > 0
    p90 = harness.by_edge(settled.query(
        'histogram_quantile(0.9, sum(rate(traces_service_graph_request_server_seconds_bucket{server="payment"}[1m]))'
        ' by (le, client, server))', at=settled.settled_at))
    assert set(p90) == {("checkout", "payment")}
    # 0.0625 s lies in (0, 0.1].
    assert math.isclose(p90[("checkout", "payment")], 0.09, rel_tol=1e-9)


def test_grafana_empty_state_check(settled):
    # Grafana shows "No service graph data found" unless these metrics have labels.
    import json
    import urllib.parse

    match = ('{__name__=~"traces_service_graph_request_server_seconds_sum|traces_service_graph_request_total'
             '|traces_service_graph_request_failed_total"}')
    status, body = harness.http_get(f"{settled.url}/api/v1/labels?" + urllib.parse.urlencode({"match[]": match}))
    assert status == 200
    names = set(json.loads(body)["data"])
    assert {"client", "server", "connection_type"} <= names


def test_promtool_accepts_the_exposition(settled, prom_collector):
    status, body = harness.http_get(prom_collector.metrics_url)
    assert status == 200
    assert "traces_service_graph_request_total{" in body
    promtool = tool("promtool", "PROMTOOL_BIN")
    # promtool exits 0 when the text parses and has no lint problems, 1 on a
    # parse error and 3 on lint problems, which it lists.
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"promtool exit {result.returncode}\n{result.stdout}\n{result.stderr}"
