"""The processor's live service map over HTTP, fed by the shop's traffic:
/api/graph, the incident queries, the Graphviz and Mermaid exports, and
edges posted from elsewhere. Every expected answer is derived from the
shop's table in traffic.py (see expect_map.py); a few are also spelled out
to show what the derivation gives for this topology."""

import json
import time

import pytest

import expect_map
import harness
import traffic
from collectors import processor_config, start_collector, stop_collector

SETTLE_TIMEOUT = 60.0
DATABASE = "pg-primary"

NODE_FIELDS = ("id", "kind", "health", "rate", "error_rate", "owner", "tier", "version", "environment",
               "namespace", "k8s_namespace", "last_deploy_unix_nano")
EDGE_FIELDS = ("client", "server", "connection_type", "protocol", "rate", "error_rate",
               "p50_seconds", "p90_seconds", "p99_seconds", "health", "reason")


@pytest.fixture(scope="module")
def graph(processor_collector, shop_traffic):
    """/api/graph once every node and edge of the shop shows its full traffic."""
    return expect_map.wait_for_graph(processor_collector.base_url, SETTLE_TIMEOUT)


def get(collector, path):
    return expect_map.get_json(collector.base_url + path)


def test_expectations_for_this_topology():
    # What expect_map derives from traffic.py, written out once.
    assert expect_map.is_acyclic(expect_map.edges())
    assert {k: v for k, v in expect_map.node_kinds().items() if v != "service"} == {
        "user": "user", "stripe-api": "external", "pg-primary": "database", "inventory-db": "database",
        "redis.local:6379": "database", "warehouse": "database", "mongodb": "database", "legacy": "database"}
    assert sorted(k for k, e in expect_map.edges().items() if e["health"] == "red") == [
        ("checkout", "payment"), ("frontend", "checkout"), ("payment", "pg-primary"), ("payment", "stripe-api")]
    assert expect_map.root_causes() == ["pg-primary", "stripe-api"]
    want = expect_map.impact(DATABASE)
    assert want["dependents"] == ["payment", "checkout", "frontend"]
    assert (want["root_cause_direction"], want["suspects"]) == ("self", [DATABASE])
    assert want["blast_radius_rps"] == 4 / 300


def test_schema_and_window(graph):
    assert graph["schema"] == expect_map.SCHEMA
    assert graph["window_seconds"] == expect_map.WINDOW_SECONDS
    assert isinstance(graph["at_unix_nano"], int) and graph["at_unix_nano"] > 0


def test_nodes_with_kinds_facts_and_health(graph, shop_traffic):
    assert set(shop_traffic.providers) == set(traffic.SERVICES)
    got = {n["id"]: {k: n[k] for k in NODE_FIELDS} for n in graph["nodes"]}
    assert got == expect_map.nodes()
    # Nodes come sorted by name.
    assert [n["id"] for n in graph["nodes"]] == sorted(got)
    for n in graph["nodes"]:
        assert 0 < n["first_seen_unix_nano"] <= n["last_seen_unix_nano"] <= graph["at_unix_nano"], n


def test_edges_with_connection_types_and_protocols(graph):
    got = {(e["client"], e["server"]): (e["connection_type"], e["protocol"]) for e in graph["edges"]}
    want = {k: (e["connection_type"], e["protocol"]) for k, e in expect_map.edges().items()}
    assert got == want
    # Each protocol rule shows up: HTTP attributes, rpc.system, messaging.system, db.system(.name).
    assert got[("frontend", "checkout")] == ("", "http")
    assert got[("checkout", "payment")] == ("", "grpc")
    assert got[("checkout", "fulfillment")] == ("messaging_system", "kafka")
    assert got[("payment", "pg-primary")] == ("database", "postgresql")
    assert got[("checkout", "inventory-db")] == ("database", "mysql")


def test_edge_rates_latencies_and_health(graph):
    got = {(e["client"], e["server"]): {k: e[k] for k in EDGE_FIELDS} for e in graph["edges"]}
    assert got == expect_map.edges()
    assert [(e["client"], e["server"]) for e in graph["edges"]] == sorted(got)
    for e in graph["edges"]:
        assert 0 < e["first_seen_unix_nano"] <= e["last_seen_unix_nano"] <= graph["at_unix_nano"], e


def test_health_under_the_default_slo(graph):
    # An edge whose failed share is over the 1 % error budget is red; the
    # shop's latencies stay under 80 % of 1 s at p99, so no edge is yellow.
    for e in graph["edges"]:
        requests, failed = traffic.totals(next(k for k in traffic.EXPECTED if k[:2] == (e["client"], e["server"])))
        if failed / requests > 1 - expect_map.AVAILABILITY:
            assert (e["health"], e["reason"]) == (
                "red", f"error rate {failed / requests * 100:.2f}% over the budget 1.00%"), e
        else:
            assert (e["health"], e["reason"]) == ("green", ""), e
    health = {n["id"]: n["health"] for n in graph["nodes"]}
    # The user calls but is never called: no incoming traffic, unknown.
    assert health["user"] == "unknown"
    assert {n for n, h in health.items() if h == "red"} == {"checkout", "payment", "pg-primary", "stripe-api"}


def test_root_causes(processor_collector, graph):
    want = expect_map.root_causes()
    assert graph["root_causes"] == want
    assert get(processor_collector, "/api/root_causes") == {"root_causes": want}


def test_recovery_order(processor_collector, graph):
    assert get(processor_collector, "/api/recovery_order") == expect_map.recovery_order()


def test_impact_of_the_database(processor_collector, graph):
    got = get(processor_collector, f"/api/impact?service={DATABASE}")
    assert got == expect_map.impact(DATABASE)
    # 4 requests in the 5-minute window reach the database directly.
    assert got["blast_radius_rps"] == len(traffic.EXPECTED[("payment", DATABASE, "database")]) / 300


def test_impact_of_a_service_in_the_middle(processor_collector, graph):
    got = get(processor_collector, "/api/impact?service=payment")
    assert got == expect_map.impact("payment")
    # What it depends on first, then it, then its callers, each after what it calls.
    assert got["recovery_order"] == ["pg-primary", "stripe-api", "payment", "checkout", "frontend"]


def test_impact_of_an_unknown_service(processor_collector, graph):
    got = get(processor_collector, "/api/impact?service=no-such-service")
    assert got == {"service": "no-such-service", "found": False, "health": "unknown", "dependents": [],
                   "degraded_dependents": [], "dependencies": [], "user_facing_rps": 0.0, "user_facing_share": 0.0,
                   "root_cause_direction": "none", "suspects": [], "evidence": [], "recovery_order": [],
                   "recovery_steps": [], "blast_radius_rps": 0.0, "rate": 0.0, "error_rate": 0.0, "callers": []}


def test_graphviz_lines_coloured_by_health(processor_collector, graph):
    status, body = harness.http_get(processor_collector.base_url + "/graph.dot")
    assert status == 200
    lines = body.splitlines()
    assert lines[0] == "digraph servicemap {" and lines[-1] == "}"
    node_lines, edge_lines = expect_map.dot_lines()
    for line in node_lines:
        assert line in lines, f"missing from /graph.dot: {line}\n{body}"
    assert [line for line in lines if " -> " in line] == edge_lines
    assert len([line for line in lines if "fillcolor=" in line]) == len(node_lines)
    # The failing database call is drawn red.
    assert '  "payment" -> "pg-primary" [color="#c62828", label="0.01 req/s, 25.0% err, p99 31ms"];' in lines


def test_mermaid_classes_by_health(processor_collector, graph):
    status, body = harness.http_get(processor_collector.base_url + "/graph.mmd")
    assert status == 200
    lines = body.splitlines()
    assert lines[0] == "graph LR"
    ids = {}
    for i, (name, n) in enumerate(expect_map.nodes().items()):
        ids[name] = f"n{i}"
        # Labels are written with Mermaid's entity codes for its own syntax (":" among them).
        label = name.replace(":", "#58;")
        shape = {"database": f'n{i}[("{label}")]', "queue": f'n{i}>"{label}"]',
                 "user": f'n{i}(("{label}"))'}.get(n["kind"], f'n{i}["{label}"]')
        assert f"  {shape}:::{n['health']}" in lines, body
    arrows = [line for line in lines if "-->" in line]
    assert [(a.split()[0], a.split()[-1]) for a in arrows] == [(ids[c], ids[s]) for c, s in sorted(expect_map.edges())]
    for health, colour in expect_map.COLOUR.items():
        assert f"  classDef {health} fill:{colour},color:#fff" in lines


def test_posting_edges_is_off_by_default(processor_collector, graph):
    base = processor_collector.base_url
    before = get(processor_collector, "/api/graph")
    assert harness.http_post(f"{base}/api/edges", json.dumps({"client": "intruder", "server": DATABASE}) + "\n") == (
        404, "POST /api/edges is off: set `http: {accept_edges: true}` in the servicemap processor's configuration "
             "to accept edges\n")
    assert [n["id"] for n in get(processor_collector, "/api/graph")["nodes"]] == [n["id"] for n in before["nodes"]]


def test_bad_queries_are_400_with_a_message(processor_collector):
    base = processor_collector.base_url
    assert harness.http_get(f"{base}/api/impact") == (
        400, "the service parameter is required, as in /api/impact?service=checkout\n")
    assert harness.http_get(f"{base}/api/diff") == (
        400, "the from parameter is required, as in /api/diff?from=1h (an hour ago)\n")
    assert harness.http_get(f"{base}/api/diff?from=yesterday") == (
        400, 'from: "yesterday" is not an RFC 3339 time, Unix seconds or a duration before now\n')


# --- Edges posted from elsewhere, on a collector of their own (they change
# the map, which the other tests and the page test read) ---------------------


def processor_accepting_edges(ports):
    """processor_config with POST /api/edges turned on (it is off by default)."""
    config = processor_config(ports)
    config["processors"]["servicemap"]["http"]["accept_edges"] = True
    return config


@pytest.fixture(scope="module")
def edges_collector(workdir):
    """A processor collector taking posted edges, that took its first
    topology snapshot before the shop's traffic arrived, with the shop's map
    settled."""
    c = start_collector("map-edges", processor_accepting_edges, workdir)
    fleet = c.fleet()
    try:
        harness.poll(lambda: get(c, "/api/history")["snapshots_unix_nano"], SETTLE_TIMEOUT,
                     what="first topology snapshot")
        traffic.run_shop(fleet)
        fleet.flush()
        expect_map.wait_for_graph(c.base_url, SETTLE_TIMEOUT)
        yield c
    finally:
        fleet.shutdown()
        stop_collector(c)


def rfc3339(unix_nano):
    seconds, nanos = divmod(unix_nano, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


def test_diff_since_the_first_snapshot(edges_collector):
    # Runs before the edges are posted (tests run in file order).
    first = get(edges_collector, "/api/history")["snapshots_unix_nano"][0]
    got = get(edges_collector, f"/api/diff?from={rfc3339(first)}")
    assert got["from_unix_nano"] == first and got["to_unix_nano"] > first
    assert {k: v for k, v in got.items() if not k.endswith("_unix_nano")} == {
        "nodes_added": sorted(expect_map.nodes()),
        "nodes_removed": [],
        "edges_added": [{"client": c, "server": s} for c, s in sorted(expect_map.edges())],
        "edges_removed": [],
        "health_changes": [],
    }


def test_posted_edges_join_the_map(edges_collector):
    base = edges_collector.base_url
    # A reporting job reads the database three times, seen in gateway logs.
    posted = {"client": "reporting", "server": DATABASE, "count": 3, "errors": 0, "latency_seconds": 0.02,
              "connection_type": "database", "protocol": "postgresql"}
    assert harness.http_post(f"{base}/api/edges", json.dumps(posted) + "\n") == (204, "")
    got = get(edges_collector, f"/api/impact?service={DATABASE}")
    want = expect_map.impact(DATABASE, extra_edges=[("reporting", DATABASE, 3)])
    assert got == want
    assert got["dependents"] == ["payment", "reporting", "checkout", "frontend"]
    assert got["blast_radius_rps"] == 4 / 300 + 3 / 300
    graph = get(edges_collector, "/api/graph")
    edge = next(e for e in graph["edges"] if (e["client"], e["server"]) == ("reporting", DATABASE))
    assert {k: edge[k] for k in ("connection_type", "protocol", "rate", "error_rate", "health", "reason")} == {
        "connection_type": "database", "protocol": "postgresql", "rate": 3 / 300, "error_rate": 0.0,
        "health": "green", "reason": ""}
    assert next(n for n in graph["nodes"] if n["id"] == "reporting")["kind"] == "service"


def test_refused_edges_change_nothing(edges_collector):
    base = edges_collector.base_url
    before = get(edges_collector, "/api/graph")
    good = json.dumps({"client": "nightly-export", "server": DATABASE})
    cases = [
        # The second line has no server: the whole body is refused, the first line too.
        (good + "\n" + json.dumps({"client": "nightly-export"}) + "\n",
         "edge line 2: `server` must be a non-empty string"),
        ("{not json}\n", "edge line 1: not valid JSON"),
        (json.dumps({"client": "a", "server": "b", "count": 1, "errors": 2}) + "\n",
         "edge line 1: `errors` is larger than `count`"),
        (json.dumps({"client": "a", "server": "b", "connection_type": "carrier_pigeon"}) + "\n",
         'edge line 1: unknown connection_type "carrier_pigeon"'),
    ]
    for body, message in cases:
        status, text = harness.http_post(f"{base}/api/edges", body)
        assert status == 400, (body, status, text)
        assert message in text, (body, text)
    # What a web page on another site can send without a CORS preflight.
    assert harness.http_post(f"{base}/api/edges", good + "\n", content_type="text/plain",
                             headers={"Origin": "http://evil.example"}) == (
        403, f'POST /api/edges from origin "http://evil.example" refused: only requests from {base} itself, '
             "or from an origin listed in the server's cors.allowed_origins, may post edges\n")
    assert harness.http_post(f"{base}/api/edges", good + "\n", content_type="text/plain") == (
        415, 'POST /api/edges takes Content-Type application/json or application/x-ndjson (JSON lines), '
             'not "text/plain"\n')
    after = get(edges_collector, "/api/graph")
    assert [n["id"] for n in after["nodes"]] == [n["id"] for n in before["nodes"]]
    assert [(e["client"], e["server"], e["rate"]) for e in after["edges"]] == [
        (e["client"], e["server"], e["rate"]) for e in before["edges"]]
