"""The example configurations in examples/: they validate, and they run
with the built collector (with loopback ports of the test's choosing merged
over the examples' fixed ones)."""

import glob
import os
import subprocess

import pytest

import expect
import harness
import traffic
from collectors import receivers, start_collector, stop_collector, telemetry

EXAMPLES = os.path.join(harness.ROOT, "examples")
PROCESSOR_EXAMPLE = os.path.join(EXAMPLES, "processor.yaml")
CONNECTOR_EXAMPLE = os.path.join(EXAMPLES, "connector.yaml")
SETTLE_TIMEOUT = 60.0


# Every example, including those that need files a deployment provides
# (certificates, tokens), which `validate` does not open.
ALL_EXAMPLES = sorted(glob.glob(os.path.join(EXAMPLES, "*.yaml")))


def test_examples_are_found():
    assert [os.path.basename(p) for p in ALL_EXAMPLES] == [
        "connector.yaml", "processor-secure.yaml", "processor.yaml", "receiver.yaml"]


@pytest.mark.parametrize("path", ALL_EXAMPLES, ids=os.path.basename)
def test_example_validates(path):
    result = subprocess.run([harness.collector_binary(), "validate", f"--config={path}"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def processor_ports(ports):
    return {
        "receivers": receivers(ports),
        "processors": {"servicemap": {"http": {"endpoint": f"{harness.LOOPBACK}:{ports['metrics']}"}}},
        "service": {"telemetry": telemetry(ports)},
    }


def connector_ports(ports):
    return {
        "receivers": receivers(ports),
        # The example pushes every 15s; push every second here.
        "connectors": {"servicemap": {"metrics_flush_interval": "1s"}},
        "exporters": {"prometheus": {"endpoint": f"{harness.LOOPBACK}:{ports['metrics']}"}},
        "service": {"telemetry": telemetry(ports)},
    }


def _send_shop(collector):
    fleet = collector.fleet()
    try:
        traffic.run_shop(fleet)
        fleet.flush()
    finally:
        fleet.shutdown()


def _wait_for_values(collector, want, drop_prefixes=()):
    """Polls until each (name, labels) of `want` has its value."""
    want = {(name, frozenset(labels.items())): value for name, labels, value in want}
    last = {}

    def check():
        got = expect.actual(collector.scrape(), drop_prefixes)
        last["got"] = {k: got.get(k) for k in want}
        return last["got"] == want

    try:
        harness.poll(check, SETTLE_TIMEOUT, interval=0.25, what="example values")
    except harness.Timeout:
        raise AssertionError(f"want {want}\ngot  {last.get('got')}") from None


def test_processor_example(workdir):
    collector = start_collector("example-processor", processor_ports, workdir, base_configs=[PROCESSOR_EXAMPLE])
    try:
        _send_shop(collector)
        env = {"deployment_environment_name": traffic.ENVIRONMENT}
        messaging = {"client": "checkout", "server": "fulfillment", "connection_type": "messaging_system", **env}
        prefix = "traces_service_graph_request"
        _wait_for_values(collector, [
            (f"{prefix}_total", {"client": "frontend", "server": "checkout", **env}, 4.0),
            (f"{prefix}_failed_total", {"client": "frontend", "server": "checkout", **env}, 1.0),
            (f"{prefix}_total", {"client": "payment", "server": "pg-primary", "connection_type": "database", **env},
             4.0),
            (f"{prefix}_total", messaging, 4.0),
            # enable_messaging_system_latency_histogram: the time from the end of
            # the producer span to the start of the consumer span.
            (f"{prefix}_messaging_system_seconds_count", messaging, 4.0),
            (f"{prefix}_messaging_system_seconds_sum", messaging, 4 * traffic.KAFKA_QUEUE),
            (f"{prefix}_messaging_system_seconds_bucket", {**messaging, "le": "0.1"}, 4.0),
        ])
    finally:
        stop_collector(collector)


def test_connector_example(workdir):
    collector = start_collector("example-connector", connector_ports, workdir, base_configs=[CONNECTOR_EXAMPLE])
    try:
        _send_shop(collector)
        # contrib always prefixes dimensions with the side they come from.
        env = {"client_deployment_environment_name": traffic.ENVIRONMENT,
               "server_deployment_environment_name": traffic.ENVIRONMENT}
        edge = {"client": "frontend", "server": "checkout", **env}
        prefix = "traces_service_graph_request"
        _wait_for_values(collector, [
            (f"{prefix}_total", {**edge, "failed": "false"}, 3.0),
            (f"{prefix}_total", {**edge, "failed": "true"}, 1.0),
            (f"{prefix}_failed_total", {**edge, "failed": "true"}, 1.0),
            # The example's own buckets: 0.25 s is in (0.1, 0.25].
            (f"{prefix}_server_seconds_bucket", {**edge, "failed": "false", "le": "0.1"}, 0.0),
            (f"{prefix}_server_seconds_bucket", {**edge, "failed": "false", "le": "0.25"}, 3.0),
        ], drop_prefixes=("otel_scope_",))
    finally:
        stop_collector(collector)
