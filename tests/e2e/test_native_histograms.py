"""Native histograms with a real Prometheus: the collector of
examples/processor.yaml with `histograms: both`, scraped by a Prometheus with
its native-histogram and exemplar-storage features on (it then asks for the
protobuf exposition). Ninety-nine requests take 1 ms, 2 ms, … 99 ms on the
server side: `histogram_quantile` over the native histogram gives their
median, 50 ms, within the schema's error (one bucket, a factor 2^(1/8)), as
does the map read back from Prometheus, and the exemplars Prometheus stores
are of the traces sent."""

import json
import math
import os
import subprocess
import time

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind

import harness
import traffic
from collectors import processor_ports_over, start_collector, stop_collector
from conftest import start_prometheus
from harness import LOOPBACK
from test_examples import PROCESSOR_EXAMPLE

REQUESTS = 99
MS = traffic.MS
MEDIAN_S = 0.050
# Schema 3 (bucket factor 1.1): a bucket spans a factor 2^(1/8).
SCHEMA_ERROR = 2 ** (1 / 8)
HISTOGRAM = "traces_service_graph_request_server_seconds"
QUANTILE = f"histogram_quantile(0.5, sum(rate({HISTOGRAM}[1m])))"


def native_both(ports):
    config = processor_ports_over(ports)
    config["processors"]["servicemap"]["histograms"] = "both"
    return config


def send(fleet):
    """web → api, one trace per request; the server span of request i takes i ms."""
    web, api = fleet.tracer("web"), fleet.tracer("api")
    now = time.time_ns()
    for i in range(1, REQUESTS + 1):
        t = now + i * MS
        client = traffic._span(web, "GET", SpanKind.CLIENT, t, (i + 2) / 1000,
                               attributes={"http.request.method": "GET", "server.address": "api"})
        traffic._span(api, "GET /items", SpanKind.SERVER, t + MS, i / 1000,
                      context=traffic._server_context(traffic._headers_of(client)),
                      attributes={"http.request.method": "GET", "http.route": "/items"})


@pytest.fixture(scope="module")
def scraped(workdir):
    collector = start_collector("native-histograms", native_both, workdir, base_configs=[PROCESSOR_EXAMPLE])
    prom = start_prometheus(workdir, "prometheus-native", [f"{LOOPBACK}:{collector.ports['metrics']}"],
                            features=("native-histograms", "exemplar-storage"))
    fleet = collector.fleet()
    try:
        harness.poll(lambda: prom.query("up") and prom.query("up")[0]["value"][1] == "1", 60, interval=0.25,
                     what="prometheus target up")
        send(fleet)
        fleet.flush()
        yield prom, fleet.trace_ids()
    finally:
        fleet.shutdown()
        prom.process.stop(grace=15.0)
        stop_collector(collector)


def test_histogram_quantile_over_the_native_histogram_is_the_median(scraped):
    prom, _ = scraped
    count = f"histogram_count(sum({HISTOGRAM}))"

    def all_counted():
        # Every request in the native histogram, and the rate over the last
        # minute seeing all of them (the series read zero for a while first).
        at = round(time.time(), 3)
        total = prom.query(count, at=at)
        rate = prom.query(f"histogram_count(sum(rate({HISTOGRAM}[1m]))) * 60", at=at)
        if total and float(total[0]["value"][1]) == REQUESTS and rate and float(rate[0]["value"][1]) > 0:
            return at
        return None

    at = harness.poll(all_counted, 90, interval=0.5, what="the native histogram in Prometheus")
    # The rate's window holds the first zero sample, so all requests count.
    rate = float(prom.query(f"histogram_count(sum(increase({HISTOGRAM}[1m])))", at=at)[0]["value"][1])
    assert rate == pytest.approx(REQUESTS, rel=0.25), rate
    median = float(prom.query(QUANTILE, at=at)[0]["value"][1])
    assert abs(math.log2(median / MEDIAN_S)) <= math.log2(SCHEMA_ERROR), median
    # No classic series beside it: Prometheus took the native histogram.
    assert prom.query(f"{HISTOGRAM}_bucket", at=at) == []


def test_prometheus_stores_exemplars_of_the_traces_sent(scraped):
    prom, sent = scraped

    def stored():
        now = time.time()
        status, body = harness.http_get(
            f"{prom.url}/api/v1/query_exemplars?query={HISTOGRAM}&start={now - 3600:.3f}&end={now + 60:.3f}")
        assert status == 200, body
        return [x["labels"]["traceID"] for s in json.loads(body)["data"] for x in s["exemplars"]]

    got = harness.poll(lambda: stored() or None, 60, interval=0.5, what="exemplars in Prometheus")
    assert got and set(got) <= sent, (got, sent)


def test_the_map_from_prometheus_reads_the_native_histogram(scraped):
    """Prometheus kept the native histogram only: the map read back from it
    takes its percentiles from there, within the schema's error."""
    prom, _ = scraped
    cli = os.environ.get("SERVICEMAP_CLI", os.path.join(harness.ROOT, "target", "release", "servicemap"))
    if not os.access(cli, os.X_OK):
        pytest.fail(f"{cli} not found: build it with `make rust`", pytrace=False)

    def edge():
        r = subprocess.run([cli, "graph", "--prometheus", prom.url, "--window", "5m", "--format", "json"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        found = [e for e in json.loads(r.stdout)["edges"] if (e["client"], e["server"]) == ("web", "api")]
        return found[0] if found and found[0].get("p50_seconds") is not None else None

    e = harness.poll(edge, 90, interval=0.5, what="web → api with a median from the native histogram")
    assert abs(math.log2(e["p50_seconds"] / MEDIAN_S)) <= math.log2(SCHEMA_ERROR), e
