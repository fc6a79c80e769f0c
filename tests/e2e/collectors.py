"""The collector under test: configurations on loopback ports picked at run
time, start with readiness polling, and stop."""

import json
import os

import pytest

import harness
import traffic
from harness import LOOPBACK, Process, collector_binary, free_port, http_get, poll, port_open

STARTUP_TIMEOUT = 60.0
# The processor's and connector's store wait and expiry loop: short, so that
# virtual-node edges are written within seconds.
STORE_TTL = "2s"
EXPIRATION_LOOP = "250ms"
INITIAL_ZERO_HOLD = "2s"


class Collector:
    """A running collector and the loopback ports it was given."""

    def __init__(self, name, process, ports, metrics_url, config_path):
        self.name = name
        self.process = process
        self.ports = ports
        self.metrics_url = metrics_url
        self.config_path = config_path

    @property
    def base_url(self):
        """The processor's HTTP endpoint: the service map at `/`, its API under `/api/`."""
        return f"http://{LOOPBACK}:{self.ports['metrics']}"

    @property
    def telemetry_url(self):
        return f"http://{LOOPBACK}:{self.ports['telemetry']}/metrics"

    def scrape(self):
        status, body = http_get(self.metrics_url)
        assert status == 200, f"{self.metrics_url}: HTTP {status}: {body[:300]}"
        return harness.Exposition(body)

    def fleet(self):
        return traffic.Fleet(LOOPBACK, self.ports["grpc"], self.ports["http"])


def receivers(ports):
    return {
        "otlp": {
            "protocols": {
                "grpc": {"endpoint": f"{LOOPBACK}:{ports['grpc']}"},
                "http": {"endpoint": f"{LOOPBACK}:{ports['http']}"},
            }
        }
    }


def telemetry(ports):
    # The collector's own metrics, on a port of ours rather than the default 8888.
    return {
        "metrics": {
            "readers": [{"pull": {"exporter": {"prometheus": {"host": LOOPBACK, "port": ports["telemetry"]}}}}]
        }
    }


def processor_ports_over(ports):
    """What to merge over a processor configuration file (an example's, with
    its fixed ports) to move its receivers, its HTTP endpoint and the
    collector's own telemetry to the test's ports."""
    return {
        "receivers": receivers(ports),
        "processors": {"servicemap": {"http": {"endpoint": f"{LOOPBACK}:{ports['metrics']}"}}},
        "service": {"telemetry": telemetry(ports)},
    }


def processor_config(ports):
    """OTLP in, the servicemap processor (Tempo preset) serving its own
    metrics endpoint, traces on to the debug exporter."""
    return {
        "receivers": receivers(ports),
        "processors": {
            "servicemap": {
                "compat": "tempo",
                # A new series reads 0 for two of Prometheus' 1 s scrape
                # intervals here, so that its first requests count.
                "initial_zero_hold": INITIAL_ZERO_HOLD,
                "store": {"ttl": STORE_TTL, "max_items": 10000},
                "store_expiration_loop": EXPIRATION_LOOP,
                "http": {"endpoint": f"{LOOPBACK}:{ports['metrics']}", "metrics_path": "/metrics"},
            }
        },
        "exporters": {"debug": {"verbosity": "basic"}},
        "service": {
            "telemetry": telemetry(ports),
            "pipelines": {"traces": {"receivers": ["otlp"], "processors": ["servicemap"], "exporters": ["debug"]}},
        },
    }


def connector_config(ports):
    """OTLP in, the servicemap connector (its default, contrib-compatible
    preset) into a metrics pipeline, out through the Prometheus exporter."""
    return {
        "receivers": receivers(ports),
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
            "telemetry": telemetry(ports),
            "pipelines": {
                "traces": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["servicemap"]},
                "metrics/servicemap": {"receivers": ["servicemap"], "exporters": ["prometheus"]},
            },
        },
    }


def start_collector(name, make_config, workdir, base_configs=(), attempts=3):
    """Starts the collector and polls until its receivers and metrics
    endpoint answer. Ports are picked afresh if a start fails (another
    process may have taken a port between the pick and the bind).
    `base_configs` are configuration files given before the generated one,
    which the collector merges over them."""
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
        argv = [binary] + [f"--config={path}" for path in base_configs] + [f"--config={config_path}"]
        proc = Process(argv, os.path.join(workdir, f"{name}-{attempt}.log"))
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
