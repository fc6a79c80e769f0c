"""Fixtures: the built collector (processor and connector pipelines), a
Prometheus server, each started on loopback ports picked at run time,
waited for by polling, and stopped at the end of the session; and a headless
Chromium for the map page tests."""

import json
import os
import shutil
import tempfile
import threading
import time

import pytest

import harness
from collectors import STARTUP_TIMEOUT, connector_config, processor_config, start_collector, stop_collector
from harness import LOOPBACK, Process, free_port, http_get, poll, tool
from map_page import CHROMIUM, CHROMIUM_ARGS, LOAD_TIMEOUT_MS, VIEWPORT
import traffic

# No proxy for loopback traffic (gRPC and HTTP clients both read these).
for _var in ("NO_PROXY", "no_proxy"):
    os.environ[_var] = ",".join(filter(None, [os.environ.get(_var, ""), "127.0.0.1", "localhost"]))


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("e2e"))


@pytest.fixture(scope="session")
def processor_collector(workdir):
    """The collector with the servicemap processor, scraped by the tests directly."""
    c = start_collector("processor", processor_config, workdir)
    yield c
    stop_collector(c)


@pytest.fixture(scope="session")
def connector_collector(workdir):
    """The collector with the servicemap connector and the Prometheus exporter."""
    c = start_collector("connector", connector_config, workdir)
    yield c
    stop_collector(c)


@pytest.fixture(scope="session")
def shop_traffic(processor_collector):
    """The shop's traffic, sent once to processor_collector."""
    fleet = processor_collector.fleet()
    try:
        traffic.run_shop(fleet)
        fleet.flush()
        yield fleet
    finally:
        fleet.shutdown()


class Prometheus:
    def __init__(self, process, port, target):
        self.process = process
        self.url = f"http://{LOOPBACK}:{port}"
        self.target = target

    def query(self, promql, at=None):
        return harness.prom_query(self.url, promql, at=at)


@pytest.fixture(scope="session")
def prom_collector(workdir):
    """A second processor collector, scraped by Prometheus and, beside it,
    by a second scraper (see prom_shop_traffic): what one sees must not
    depend on the other."""
    c = start_collector("prom-processor", processor_config, workdir)
    yield c
    stop_collector(c)


def start_prometheus(workdir, name, targets, features=("exemplar-storage",)):
    """A Prometheus server scraping `targets` (host:port of /metrics
    endpoints) every second, as job `servicemap`, with `features` enabled
    (exemplar storage: it keeps the exemplars OpenMetrics carries); stop it
    with `.process.stop()`."""
    binary = tool("prometheus", "PROMETHEUS_BIN")
    last_log = ""
    for attempt in range(3):
        port = free_port()
        base = os.path.join(workdir, f"{name}-{attempt}")
        os.makedirs(os.path.join(base, "data"))
        config_path = os.path.join(base, "prometheus.yml")
        with open(config_path, "w") as f:
            json.dump({
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [{
                    "job_name": "servicemap",
                    "metrics_path": "/metrics",
                    "static_configs": [{"targets": list(targets)}],
                }],
            }, f, indent=2)
        proc = Process([
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={os.path.join(base, 'data')}",
            f"--web.listen-address={LOOPBACK}:{port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
            *(f"--enable-feature={f}" for f in features),
        ], os.path.join(base, "prometheus.log"), cwd=base)
        url = f"http://{LOOPBACK}:{port}"

        def ready():
            if not proc.alive():
                raise RuntimeError("exited")
            return http_get(f"{url}/-/ready", timeout=2)[0] == 200

        try:
            poll(ready, STARTUP_TIMEOUT, interval=0.2, what="prometheus ready")
        except (harness.Timeout, RuntimeError):
            proc.stop()
            last_log = proc.log()
            continue
        return Prometheus(proc, port, targets[0] if len(targets) == 1 else tuple(targets))
    pytest.fail(f"prometheus did not start; last log:\n{last_log}", pytrace=False)


@pytest.fixture(scope="session")
def prometheus(workdir, prom_collector):
    """A Prometheus server scraping prom_collector's metrics endpoint every second."""
    p = start_prometheus(workdir, "prometheus", [f"{LOOPBACK}:{prom_collector.ports['metrics']}"])
    try:
        yield p
    finally:
        p.process.stop(grace=15.0)


@pytest.fixture(scope="session")
def prom_shop_traffic(prometheus, prom_collector):
    """The shop's traffic, sent to prom_collector once Prometheus scrapes it."""

    def target_up():
        status, body = http_get(f"{prometheus.url}/api/v1/targets")
        targets = json.loads(body)["data"]["activeTargets"]
        return any(t["scrapeUrl"].startswith(f"http://{prometheus.target}/") and t["health"] == "up"
                   for t in targets)

    poll(target_up, 60, interval=0.25, what="prometheus target up")
    fleet = prom_collector.fleet()
    # A second scraper, as in a Prometheus HA pair or someone running curl:
    # it must change nothing of what Prometheus sees.
    other = Scraper(prom_collector.metrics_url)
    other.start()
    try:
        traffic.run_shop(fleet)
        fleet.flush()
        yield fleet
    finally:
        other.stop()
        fleet.shutdown()


@pytest.fixture(scope="session")
def settled(prometheus, prom_shop_traffic):
    """`prometheus` once it holds all of the shop's traffic: every edge's
    request rate above zero (so both of each series' samples, 0 and then its
    value, were scraped) and the histograms complete. Its `settled_at` is
    when that was first true: a rate over the last minute falls back to zero
    a minute after the traffic ends, and the tests that read one run later
    than that, so they evaluate it then."""
    rate_query = "sum by (client, server) (rate(traces_service_graph_request_total[1m]))"
    count_query = "sum by (client, server) (traces_service_graph_request_server_seconds_count)"
    edges = {(c, s) for c, s, _ in traffic.EXPECTED}
    want_counts = {(c, s): float(len(reqs)) for (c, s, _), reqs in traffic.EXPECTED.items()}

    def ready():
        at = round(time.time(), 3)
        rates = harness.by_edge(prometheus.query(rate_query, at=at))
        counts = harness.by_edge(prometheus.query(count_query, at=at))
        if set(rates) == edges and all(v > 0 for v in rates.values()) and counts == want_counts:
            return at
        return None

    prometheus.settled_at = poll(ready, 90.0, interval=0.5, what="all edges with a positive rate in Prometheus")
    return prometheus


class Scraper(threading.Thread):
    """Scrapes a metrics endpoint every 200 ms until stopped."""

    def __init__(self, url):
        super().__init__(daemon=True)
        self.url = url
        self.scrapes = 0
        self.halt = threading.Event()

    def run(self):
        while not self.halt.wait(0.2):
            if http_get(self.url)[0] == 200:
                self.scrapes += 1

    def stop(self):
        self.halt.set()
        self.join()


@pytest.fixture(scope="module")
def browser():
    """A Chromium with a fresh profile, closed (and its processes ended) at the end."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} not found: run `make setup-test`", pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: run `make setup-test`", pytrace=False)
    profile = tempfile.mkdtemp(prefix="servicemap-chromium-")
    pw = sync_playwright().start()
    context = None
    try:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, viewport=VIEWPORT,
            timeout=LOAD_TIMEOUT_MS)
        yield context
    finally:
        if context is not None:
            context.close()
        pw.stop()
        shutil.rmtree(profile, ignore_errors=True)
