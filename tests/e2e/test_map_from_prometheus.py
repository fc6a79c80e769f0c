"""The map read back from Prometheus: `servicemap graph|impact|diff|serve
--prometheus URL` over the series a real Prometheus scraped from the
processor, against the processor's own map of the same traffic."""

import json
import os
import re
import subprocess

import pytest

import harness
import traffic
from test_prometheus import EDGES

CLI = os.environ.get("SERVICEMAP_CLI", os.path.join(harness.ROOT, "target", "release", "servicemap"))


def cli(*args, check=True):
    if not os.access(CLI, os.X_OK):
        pytest.fail(f"{CLI} not found: build it with `make rust`", pytrace=False)
    r = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120)
    if check:
        assert r.returncode == 0, f"{args}: exit {r.returncode}: {r.stderr}"
    return r


def from_prometheus(settled, *args):
    return json.loads(cli(*args, "--prometheus", settled.url, "--window", "5m").stdout)


def processor_api(prom_collector, path):
    status, body = harness.http_get(prom_collector.base_url + path)
    assert status == 200, body
    return json.loads(body)


def test_graph_has_every_edge_and_node_kind(settled, prom_collector):
    graph = from_prometheus(settled, "graph", "--format", "json")
    assert {(e["client"], e["server"]) for e in graph["edges"]} == EDGES
    own = processor_api(prom_collector, "/api/graph")
    assert {n["id"]: n["kind"] for n in graph["nodes"]} == {n["id"]: n["kind"] for n in own["nodes"]}
    conn = {(e["client"], e["server"]): e["connection_type"] for e in graph["edges"]}
    assert conn == {(e["client"], e["server"]): e["connection_type"] for e in own["edges"]}
    for e in graph["edges"]:
        assert e["rate"] > 0, e
    failed = {(c, s) for (c, s, conn) in traffic.EXPECTED if traffic.totals((c, s, conn))[1] > 0}
    assert {(e["client"], e["server"]) for e in graph["edges"] if e["error_rate"] > 0} == failed


@pytest.mark.parametrize("service", ["checkout", "payment", "frontend"])
def test_impact_answers_as_the_processor(settled, prom_collector, service):
    remote = from_prometheus(settled, "impact", service, "--format", "json")
    own = processor_api(prom_collector, f"/api/impact?service={service}")
    for key in ("dependents", "dependencies", "recovery_order", "recovery_steps", "callers", "found"):
        assert remote[key] == own[key], key
    assert set(remote) == set(own)


def test_serve_gives_the_page_and_the_api(settled):
    proc = subprocess.Popen([CLI, "serve", "--prometheus", settled.url, "--listen", "127.0.0.1:0", "--window", "5m"],
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        url = re.search(r"http://[0-9.:]+/", line).group(0)
        status, page = harness.http_get(url)
        assert status == 200 and "<title>servicemap</title>" in page
        status, body = harness.http_get(url + "api/graph")
        assert status == 200
        assert {(e["client"], e["server"]) for e in json.loads(body)["edges"]} == EDGES
        status, body = harness.http_get(url + "api/impact?service=payment")
        assert status == 200 and json.loads(body)["service"] == "payment"
        status, body = harness.http_get(url + "api/impact")
        assert status == 400 and "service parameter is required" in body
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_an_unreachable_store_is_a_clear_error():
    port = harness.free_port()
    r = cli("graph", "--prometheus", f"http://127.0.0.1:{port}", "--timeout", "5s", check=False)
    assert r.returncode == 1 and r.stdout == ""
    assert f"servicemap: error: metrics store: cannot reach http://127.0.0.1:{port}/api/v1/query" in r.stderr


def test_a_refused_query_names_the_store_and_its_reason(settled):
    # Ten hours of baselines in steps of a second: more points than Prometheus answers.
    r = cli("impact", "payment", "--prometheus", settled.url, "--history", "10h", "--step", "1s", check=False)
    assert r.returncode == 1 and r.stdout == ""
    assert f"servicemap: error: metrics store: {settled.url}/api/v1/query_range refused" in r.stderr, r.stderr
    assert "(HTTP 400, bad_data)" in r.stderr, r.stderr


def test_diff_since_before_the_traffic(settled):
    # An hour ago Prometheus held nothing: every edge the traffic made appeared since.
    diff = from_prometheus(settled, "diff", "--from", "1h")
    assert {(e["client"], e["server"]) for e in diff["edges_added"]} == EDGES
    assert diff["edges_removed"] == [] and diff["nodes_removed"] == []
    assert set(diff["nodes_added"]) == {n for edge in EDGES for n in edge}


@pytest.fixture(scope="module")
def contrib_series(workdir, connector_collector):
    """The connector (contrib's preset and label set: `failed`, the Prometheus
    exporter's `job` and `instance`) scraped by a Prometheus of its own."""
    from conftest import start_prometheus

    prom = start_prometheus(workdir, "prometheus-contrib", [f"{harness.LOOPBACK}:{connector_collector.ports['metrics']}"])
    fleet = connector_collector.fleet()
    try:
        traffic.run_shop(fleet)
        fleet.flush()
        query = "group by (client, server) (traces_service_graph_request_total)"

        def own():
            series = connector_collector.scrape().series("traces_service_graph_request_total")
            return {(labels["client"], labels["server"]) for labels, _ in series}

        def scraped():
            rows = prom.query(query)
            return own() and {(r["metric"]["client"], r["metric"]["server"]) for r in rows} == own()

        harness.poll(scraped, 120, interval=0.5, what="the connector's edges in Prometheus")
        yield prom, own()
    finally:
        fleet.shutdown()
        prom.process.stop(grace=15.0)


def test_the_map_from_contrib_series(contrib_series):
    prom, edges = contrib_series
    graph = json.loads(cli("graph", "--prometheus", prom.url, "--format", "json").stdout)
    assert {(e["client"], e["server"]) for e in graph["edges"]} == edges
    # Several series an edge (`failed` true and false), one edge on the map.
    rows = prom.query("traces_service_graph_request_total")
    assert any(r["metric"].get("failed") == "true" for r in rows) and len(rows) > len(graph["edges"])
