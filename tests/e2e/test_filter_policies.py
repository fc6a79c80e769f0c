"""Filter policies in the built collector: the shop's traffic through a
processor that leaves out the payment service (by resource attribute) and
the fulfillment database calls (by span name, which the collector's
projection then keeps). Every edge touching a span left out is gone, none is
left behind as unpaired or virtual, every other edge is exact, and the
engine counts what it filtered and dropped."""

import pytest

import expect
import harness
import traffic
from collectors import processor_config, start_collector, stop_collector

SETTLE_TIMEOUT = 60.0

POLICIES = [
    {"exclude": {"match_type": "strict",
                 "attributes": [{"key": "resource.service.name", "value": "payment"}]}},
    {"exclude": {"match_type": "regex", "attributes": [{"key": "name", "value": "^db call "}]}},
]

# Spans left out: per request payment's server span and its two calls, the
# payment server span of the untraced batch job, and the four "db call" spans.
FILTERED_SPANS = traffic.REQUESTS * 3 + 1 + 4
# The checkout→payment client spans, whose server side was left out.
DROPPED_EDGES = traffic.REQUESTS


def kept(edge):
    client, server, _ = edge
    return "payment" not in (client, server) and not (client == "fulfillment" and edge[2] == "database")


@pytest.fixture(scope="module")
def filtered_collector(workdir):
    def config(ports):
        c = processor_config(ports)
        c["processors"]["servicemap"]["filter_policies"] = POLICIES
        return c

    c = start_collector("filtered", config, workdir)
    fleet = c.fleet()
    try:
        traffic.run_shop(fleet)
        fleet.flush()
    finally:
        fleet.shutdown()
    yield c
    stop_collector(c)


def test_only_the_edges_of_spans_kept(filtered_collector):
    want_edges = {k: v for k, v in traffic.EXPECTED.items() if kept(k)}
    assert len(want_edges) == 4, want_edges
    want = expect.samples(want_edges, expect.TEMPO_BUCKETS)
    exposition = expect.wait_for(filtered_collector.scrape, want, SETTLE_TIMEOUT)
    # Only frontend's lone health checks are unpaired: the filtered payment
    # server of the batch job is not.
    unpaired = {tuple(sorted(labels.items())): v
                for labels, v in exposition.series("traces_service_graph_unpaired_spans_total")}
    assert unpaired == {(("client", "frontend"),): float(traffic.LONE_CLIENTS)}, unpaired


def test_the_engine_counts_what_it_left_out(filtered_collector):
    want = {"spans_filtered": float(FILTERED_SPANS), "edges_dropped_by_filter": float(DROPPED_EDGES),
            "edges_virtual": float(traffic.REQUESTS), "overflow_dropped_sides": 0.0}
    last = {}

    def stats():
        status, body = harness.http_get(filtered_collector.telemetry_url)
        assert status == 200
        got = {}
        for (name, _), value in harness.Exposition(body).samples.items():
            stat = name.removeprefix("otelcol_servicemap_engine_").removesuffix("_total")
            if name.startswith("otelcol_servicemap_engine_") and stat in want:
                got[stat] = value
        last["got"] = got
        return got == want

    try:
        harness.poll(stats, 30, interval=0.5, what="engine statistics")
    except harness.Timeout:
        raise AssertionError(f"engine statistics: want {want}, got {last.get('got')}") from None
