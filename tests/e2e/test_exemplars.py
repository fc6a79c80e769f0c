"""Exemplars as a real Prometheus keeps them: the processor's OpenMetrics
carries the last request of each histogram bucket, Prometheus (exemplar
storage on) stores them, and `servicemap graph --prometheus` links each
edge's slowest request to its trace."""

import json
import time

import harness
from test_map_from_prometheus import from_prometheus
from test_prometheus import EDGES

BUCKETS = "traces_service_graph_request_server_seconds_bucket"


def stored_exemplars(prom):
    """(client, server) → [(trace ID, value)] of the server histogram's exemplars
    over the last hour."""
    now = time.time()
    status, body = harness.http_get(
        f"{prom.url}/api/v1/query_exemplars?query={BUCKETS}&start={now - 3600:.3f}&end={now + 60:.3f}")
    assert status == 200, body
    out = {}
    for series in json.loads(body)["data"]:
        edge = (series["seriesLabels"]["client"], series["seriesLabels"]["server"])
        out.setdefault(edge, []).extend((x["labels"]["traceID"], float(x["value"])) for x in series["exemplars"])
    return out


def test_prometheus_stores_exemplars_of_the_traces_sent(settled, prom_shop_traffic):
    sent = prom_shop_traffic.trace_ids()

    def every_edge():
        return set(stored_exemplars(settled)) == EDGES

    harness.poll(every_edge, 60, interval=0.5, what="an exemplar of every edge in Prometheus")
    for edge, exemplars in stored_exemplars(settled).items():
        for trace_id, value in exemplars:
            assert trace_id in sent, (edge, trace_id)
            assert value >= 0, (edge, value)


def test_the_map_links_each_edge_to_its_slowest_stored_request(settled, prom_shop_traffic):
    sent = prom_shop_traffic.trace_ids()
    harness.poll(lambda: set(stored_exemplars(settled)) == EDGES, 60, interval=0.5,
                 what="an exemplar of every edge in Prometheus")
    stored = stored_exemplars(settled)
    graph = from_prometheus(settled, "graph", "--format", "json")
    for e in graph["edges"]:
        edge = (e["client"], e["server"])
        slowest = max(v for _, v in stored[edge])
        assert e["slowest_trace_id"] in sent, edge
        assert (e["slowest_trace_id"], e["slowest_seconds"]) in [(t, v) for t, v in stored[edge] if v == slowest]


def test_the_processor_map_links_each_edge_to_a_trace_sent(prom_collector, prom_shop_traffic):
    sent = prom_shop_traffic.trace_ids()
    status, body = harness.http_get(prom_collector.base_url + "/api/graph")
    assert status == 200, body
    edges = json.loads(body)["edges"]
    assert {(e["client"], e["server"]) for e in edges} == EDGES
    for e in edges:
        assert e["slowest_trace_id"] in sent and e["slowest_seconds"] >= 0, e
