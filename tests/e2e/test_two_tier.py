"""Scale-out as examples/two-tier runs it: a gateway routing by trace ID to
two graph instances, a real Prometheus scraping both, and the whole map
read back from Prometheus. 10,000 generated traces with known answers."""

import json
import os
import subprocess

import pytest

import harness
import tracegen
from collectors import STARTUP_TIMEOUT
from conftest import start_prometheus
from harness import LOOPBACK, Process, free_port, http_get, http_post, poll, port_open
from test_map_from_prometheus import CLI, cli

TRACES = 10_000
EXPECTED = tracegen.expected(TRACES)
EXAMPLES = os.path.join(harness.ROOT, "examples", "two-tier")
SETTLE_TIMEOUT = 180.0


def telemetry_override(workdir, name):
    """The collector's own metrics on a free port, not the shared default 8888."""
    path = os.path.join(workdir, f"{name}-telemetry.yaml")
    with open(path, "w") as f:
        json.dump({"service": {"telemetry": {"metrics": {"readers": [
            {"pull": {"exporter": {"prometheus": {"host": LOOPBACK, "port": free_port()}}}}]}}}}, f)
    return path


def start(workdir, name, example, env, ready):
    proc = Process([harness.collector_binary(), f"--config={os.path.join(EXAMPLES, example)}",
                    f"--config={telemetry_override(workdir, name)}"],
                   os.path.join(workdir, f"{name}.log"), env={**os.environ, **env})

    def up():
        if not proc.alive():
            raise RuntimeError(f"{name} exited:\n{proc.log()}")
        return ready()

    poll(up, STARTUP_TIMEOUT, interval=0.1, what=f"{name} ready")
    return proc


@pytest.fixture(scope="module")
def tiers(workdir):
    graphs, procs = [], []
    try:
        for n in ("graph-a", "graph-b"):
            otlp, metrics = free_port(), free_port()
            env = {"SERVICEMAP_OTLP_ENDPOINT": f"{LOOPBACK}:{otlp}",
                   "SERVICEMAP_METRICS_ENDPOINT": f"{LOOPBACK}:{metrics}"}
            url = f"http://{LOOPBACK}:{metrics}/metrics"
            procs.append(start(workdir, n, "graph.yaml", env,
                               lambda o=otlp, u=url: port_open(o) and http_get(u, timeout=2)[0] == 200))
            graphs.append({"otlp": otlp, "metrics": metrics, "url": url})
        grpc, http = free_port(), free_port()
        backends = "[" + ", ".join(f"{LOOPBACK}:{g['otlp']}" for g in graphs) + "]"
        procs.append(start(workdir, "gateway", "gateway.yaml", {
            "SERVICEMAP_BACKENDS": backends,
            "SERVICEMAP_OTLP_GRPC_ENDPOINT": f"{LOOPBACK}:{grpc}",
            "SERVICEMAP_OTLP_HTTP_ENDPOINT": f"{LOOPBACK}:{http}"}, lambda: port_open(grpc) and port_open(http)))
        prom = start_prometheus(workdir, "prometheus-two-tier", [f"{LOOPBACK}:{g['metrics']}" for g in graphs])
        procs.append(prom.process)
        yield {"graphs": graphs, "gateway": f"http://{LOOPBACK}:{http}/v1/traces", "prometheus": prom}
    finally:
        for p in reversed(procs):
            p.stop(grace=15.0)


def counts(expo, name):
    out = {}
    for labels, value in expo.series(name):
        edge = (labels["client"], labels["server"])
        out[edge] = out.get(edge, 0) + value
    return out


@pytest.fixture(scope="module")
def sent(tiers, workdir):
    """The traces, through the gateway; also written to files for the
    single-instance CLI. Returns once Prometheus holds every request."""
    files = []
    for n, body in enumerate(tracegen.batches(TRACES)):
        status, text = http_post(tiers["gateway"], body, content_type="application/x-protobuf", timeout=30)
        assert status == 200, text
        path = os.path.join(workdir, f"two-tier-{n:03}.pb")
        with open(path, "wb") as f:
            f.write(body)
        files.append(path)
    prom = tiers["prometheus"]
    want = {edge: float(reqs) for edge, (reqs, _) in EXPECTED.items()}

    def complete():
        rows = prom.query("sum by (client, server) (traces_service_graph_request_total)")
        return {(r["metric"]["client"], r["metric"]["server"]): float(r["value"][1]) for r in rows} == want

    poll(complete, SETTLE_TIMEOUT, interval=1.0, what="every request counted in Prometheus")
    return files


def test_the_instances_sum_to_the_totals_exactly(tiers, sent):
    per_instance = [harness.Exposition(http_get(g["url"])[1]) for g in tiers["graphs"]]
    for name, column in (("traces_service_graph_request_total", 0), ("traces_service_graph_request_failed_total", 1)):
        total = {}
        for expo in per_instance:
            for edge, v in counts(expo, name).items():
                total[edge] = total.get(edge, 0) + v
        assert total == {e: float(v[column]) for e, v in EXPECTED.items() if v[column] or column == 0}, name
    # Both instances took a share: the gateway spread the traces.
    shares = [counts(e, "traces_service_graph_request_total")[("frontend", "checkout")] for e in per_instance]
    assert all(s > 0 for s in shares) and sum(shares) == TRACES, shares
    # Nothing waits unpaired: every trace went, whole, to one instance.
    for expo in per_instance:
        assert counts(expo, "traces_service_graph_unpaired_spans_total") == {}, "unpaired spans"


def test_prometheus_sums_the_failures(tiers, sent):
    rows = tiers["prometheus"].query("sum by (client, server) (traces_service_graph_request_failed_total)")
    got = {(r["metric"]["client"], r["metric"]["server"]): float(r["value"][1]) for r in rows}
    assert got == {e: float(f) for e, (_, f) in EXPECTED.items() if f}


def test_the_map_from_prometheus_is_the_single_instance_map(tiers, sent):
    url = tiers["prometheus"].url
    remote = json.loads(cli("graph", "--prometheus", url, "--format", "json").stdout)
    single = json.loads(cli("graph", "--format", "json", *sent).stdout)
    edges = lambda g: {(e["client"], e["server"], e["connection_type"]) for e in g["edges"]}  # noqa: E731
    assert edges(remote) == edges(single)
    assert {(c, s) for c, s, _ in edges(remote)} == set(EXPECTED)
    kinds = lambda g: {n["id"]: n["kind"] for n in g["nodes"]}  # noqa: E731
    assert kinds(remote) == kinds(single)
    # rate() extrapolates the request and failure counters each on its own,
    # so their ratio is near, not at, the exact failed share.
    errors = {(e["client"], e["server"]): e["error_rate"] for e in remote["edges"]}
    for edge, (reqs, failed) in EXPECTED.items():
        assert errors[edge] == pytest.approx(failed / reqs, rel=0.02), edge


@pytest.mark.parametrize("service", ["orders", "payment", "checkout", "frontend"])
def test_impact_from_prometheus_is_the_single_instance_answer(tiers, sent, service):
    remote = json.loads(cli("impact", service, "--prometheus", tiers["prometheus"].url, "--format", "json").stdout)
    single = json.loads(cli("impact", service, "--format", "json", *sent).stdout)
    for key in ("found", "health", "dependents", "degraded_dependents", "dependencies", "root_cause_direction",
                "suspects", "recovery_order", "recovery_steps", "callers"):
        assert remote[key] == single[key], key
    assert set(remote) == set(single)


def test_the_cli_is_built():
    assert os.access(CLI, os.X_OK) and subprocess.run([CLI, "--version"], capture_output=True).returncode == 0
