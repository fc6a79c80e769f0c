"""Fixtures: the built collector (processor and connector pipelines) and a
Prometheus server, each started on loopback ports picked at run time,
waited for by polling, and stopped at the end of the session."""

import json
import os

import pytest

import harness
from harness import LOOPBACK, Process, collector_binary, free_port, http_get, poll, port_open, tool
import traffic

# No proxy for loopback traffic (gRPC and HTTP clients both read these).
for _var in ("NO_PROXY", "no_proxy"):
    os.environ[_var] = ",".join(filter(None, [os.environ.get(_var, ""), "127.0.0.1", "localhost"]))

STARTUP_TIMEOUT = 60.0
# The processor's and connector's store wait and expiry loop: short, so that
# virtual-node edges are written within seconds.
STORE_TTL = "2s"
EXPIRATION_LOOP = "250ms"


class Collector:
    """A running collector and the loopback ports it was given."""

    def __init__(self, name, process, ports, metrics_url, config_path):
        self.name = name
        self.process = process
        self.ports = ports
        self.metrics_url = metrics_url
        self.config_path = config_path

    @property
    def telemetry_url(self):
        return f"http://{LOOPBACK}:{self.ports['telemetry']}/metrics"

    def scrape(self):
        status, body = http_get(self.metrics_url)
        assert status == 200, f"{self.metrics_url}: HTTP {status}: {body[:300]}"
        return harness.Exposition(body)

    def fleet(self):
        return traffic.Fleet(LOOPBACK, self.ports["grpc"], self.ports["http"])


def _receivers(ports):
    return {
        "otlp": {
            "protocols": {
                "grpc": {"endpoint": f"{LOOPBACK}:{ports['grpc']}"},
                "http": {"endpoint": f"{LOOPBACK}:{ports['http']}"},
            }
        }
    }


def _telemetry(ports):
    # The collector's own metrics, on a port of ours rather than the default 8888.
    return {
        "metrics": {
            "readers": [{"pull": {"exporter": {"prometheus": {"host": LOOPBACK, "port": ports["telemetry"]}}}}]
        }
    }


def processor_config(ports):
    """OTLP in, the servicemap processor (Tempo preset) serving its own
    metrics endpoint, traces on to the debug exporter."""
    return {
        "receivers": _receivers(ports),
        "processors": {
            "servicemap": {
                "compat": "tempo",
                "store": {"ttl": STORE_TTL, "max_items": 10000},
                "store_expiration_loop": EXPIRATION_LOOP,
                "http": {"endpoint": f"{LOOPBACK}:{ports['metrics']}", "metrics_path": "/metrics"},
            }
        },
        "exporters": {"debug": {"verbosity": "basic"}},
        "service": {
            "telemetry": _telemetry(ports),
            "pipelines": {"traces": {"receivers": ["otlp"], "processors": ["servicemap"], "exporters": ["debug"]}},
        },
    }


def connector_config(ports):
    """OTLP in, the servicemap connector (its default, contrib-compatible
    preset) into a metrics pipeline, out through the Prometheus exporter."""
    return {
        "receivers": _receivers(ports),
        "processors": {"batch": {"timeout": "100ms"}},
        "connectors": {
            "servicemap": {
                "store": {"ttl": STORE_TTL, "max_items": 1000},
                "store_expiration_loop": EXPIRATION_LOOP,
                "metrics_flush_interval": "500ms",
            }
        },
        "exporters": {"prometheus": {"endpoint": f"{LOOPBACK}:{ports['metrics']}"}},
        "service": {
            "telemetry": _telemetry(ports),
            "pipelines": {
                "traces": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["servicemap"]},
                "metrics/servicemap": {"receivers": ["servicemap"], "exporters": ["prometheus"]},
            },
        },
    }


def start_collector(name, make_config, workdir, attempts=3):
    """Starts the collector and polls until its receivers and metrics
    endpoint answer. Ports are picked afresh if a start fails (another
    process may have taken a port between the pick and the bind)."""
    binary = collector_binary()
    last_log = ""
    for attempt in range(attempts):
        ports = {k: free_port() for k in ("grpc", "http", "metrics", "telemetry")}
        if len(set(ports.values())) != len(ports):
            continue
        config_path = os.path.join(workdir, f"{name}-{attempt}.yaml")
        with open(config_path, "w") as f:
            # JSON is YAML: the collector reads it as is.
            json.dump(make_config(ports), f, indent=2)
        proc = Process([binary, f"--config={config_path}"], os.path.join(workdir, f"{name}-{attempt}.log"))
        metrics_url = f"http://{LOOPBACK}:{ports['metrics']}/metrics"

        def ready():
            if not proc.alive():
                raise RuntimeError("exited")
            return (port_open(ports["grpc"]) and port_open(ports["http"])
                    and http_get(metrics_url, timeout=2)[0] == 200)

        try:
            poll(ready, STARTUP_TIMEOUT, interval=0.1, what=f"{name} collector ready")
            return Collector(name, proc, ports, metrics_url, config_path)
        except (harness.Timeout, RuntimeError):
            proc.stop()
            last_log = proc.log()
    pytest.fail(f"{name} collector did not start after {attempts} attempts; last log:\n{last_log}", pytrace=False)


def stop_collector(collector):
    code = collector.process.stop(grace=15.0)
    # A clean shutdown on SIGTERM exits 0.
    assert code == 0, f"{collector.name} collector exited with {code}:\n{collector.process.log()}"


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

    def query(self, promql):
        return harness.prom_query(self.url, promql)


@pytest.fixture(scope="session")
def prom_collector(workdir):
    """A second processor collector that only Prometheus scrapes, so that
    Prometheus sees every series first at zero (as the engine writes it)."""
    c = start_collector("prom-processor", processor_config, workdir)
    yield c
    stop_collector(c)


@pytest.fixture(scope="session")
def prometheus(workdir, prom_collector):
    """A Prometheus server scraping prom_collector's metrics endpoint every second."""
    binary = tool("prometheus", "PROMETHEUS_BIN")
    target = f"{LOOPBACK}:{prom_collector.ports['metrics']}"
    last_log = ""
    for attempt in range(3):
        port = free_port()
        base = os.path.join(workdir, f"prometheus-{attempt}")
        os.makedirs(os.path.join(base, "data"))
        config_path = os.path.join(base, "prometheus.yml")
        with open(config_path, "w") as f:
            json.dump({
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [{
                    "job_name": "servicemap",
                    "metrics_path": "/metrics",
                    "static_configs": [{"targets": [target]}],
                }],
            }, f, indent=2)
        proc = Process([
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={os.path.join(base, 'data')}",
            f"--web.listen-address={LOOPBACK}:{port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
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
        try:
            yield Prometheus(proc, port, target)
        finally:
            proc.stop(grace=15.0)
        return
    pytest.fail(f"prometheus did not start; last log:\n{last_log}", pytrace=False)


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
    try:
        traffic.run_shop(fleet)
        fleet.flush()
        yield fleet
    finally:
        fleet.shutdown()
