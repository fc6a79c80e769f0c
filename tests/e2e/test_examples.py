"""The example configurations in examples/ and the collector configurations
in README.md: they validate against the built collector, and the examples run
with it (with loopback ports of the test's choosing merged over their fixed
ones). How a README fragment is made whole, and which README blocks are not
collector configurations, is in readme.py."""

import glob
import json
import os
import subprocess

import pytest
import yaml

import expect
import harness
import readme
import traffic
from collectors import processor_ports_over, receivers, start_collector, stop_collector, telemetry

EXAMPLES = os.path.join(harness.ROOT, "examples")
PROCESSOR_EXAMPLE = os.path.join(EXAMPLES, "processor.yaml")
CONNECTOR_EXAMPLE = os.path.join(EXAMPLES, "connector.yaml")
README = os.path.join(harness.ROOT, "README.md")
SETTLE_TIMEOUT = 60.0


# Every example, including those that need files a deployment provides
# (certificates, tokens), which `validate` does not open.
ALL_EXAMPLES = sorted(glob.glob(os.path.join(EXAMPLES, "**", "*.yaml"), recursive=True))
README_BLOCKS = readme.yaml_blocks(README)
README_CONFIGS = [b for b in README_BLOCKS if not b.marked]

# Test values for every environment variable the configurations refer to.
ENV_TEST_VALUES = {
    "SERVICEMAP_OTLP_GRPC_ENDPOINT": "127.0.0.1:14317",
    "SERVICEMAP_OTLP_HTTP_ENDPOINT": "127.0.0.1:14318",
    "SERVICEMAP_HTTP_ENDPOINT": "127.0.0.1:19464",
    "HOSTNAME": "servicemap-0",
    "SERVICEMAP_BACKENDS": "[127.0.0.1:14317, 127.0.0.1:24317]",
    "SERVICEMAP_OTLP_ENDPOINT": "127.0.0.1:14317",
    "SERVICEMAP_METRICS_ENDPOINT": "127.0.0.1:18889",
}


def test_examples_are_found():
    assert [os.path.relpath(p, EXAMPLES) for p in ALL_EXAMPLES] == [
        "connector.yaml", "processor-secure.yaml", "processor.yaml", "receiver.yaml",
        "two-tier/gateway.yaml", "two-tier/graph.yaml"]


def test_every_readme_yaml_block_is_read():
    assert len(README_BLOCKS) == readme.yaml_fence_count(README)
    assert len(README_CONFIGS) >= 4


def test_readme_blocks_are_configurations_or_marked_manifests():
    for block in README_BLOCKS:
        config = block.parse()
        if block.marked:
            assert isinstance(config, dict) and "dist" in config, \
                f"{block.id}: marked as not a collector configuration, but it is no OCB manifest"
        else:
            assert readme.is_collector_config(config), (
                f"{block.id}: neither a collector configuration nor marked with "
                f"{readme.NOT_A_CONFIG!r}: top-level keys {sorted(config) if isinstance(config, dict) else config!r}")


def test_environment_variables_have_test_values():
    texts = [b.text for b in README_CONFIGS] + [open(p, encoding="utf-8").read() for p in ALL_EXAMPLES]
    assert set().union(*(readme.env_vars(t) for t in texts)) == set(ENV_TEST_VALUES)


@pytest.fixture(scope="module")
def components():
    """The collector's `components` output: which signals each component supports."""
    result = subprocess.run([harness.collector_binary(), "components"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def validate(configs):
    result = subprocess.run([harness.collector_binary(), "validate"] + [f"--config={p}" for p in configs],
                            capture_output=True, text=True, timeout=120, env={**os.environ, **ENV_TEST_VALUES})
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", ALL_EXAMPLES, ids=os.path.basename)
def test_example_validates(path, components):
    with open(path, encoding="utf-8") as f:
        assert readme.wrap_for(yaml.safe_load(f), components) == {}, f"{path} is not a whole configuration"
    validate([path])


@pytest.mark.parametrize("block", README_CONFIGS, ids=lambda b: b.id)
def test_readme_config_validates(block, components, tmp_path):
    block_path = tmp_path / "block.yaml"
    block_path.write_text(block.text)
    configs = [str(block_path)]
    wrap = readme.wrap_for(block.parse(), components)
    if wrap:
        wrap_path = tmp_path / "wrap.yaml"
        wrap_path.write_text(json.dumps(wrap, indent=2))   # JSON is YAML
        configs.append(str(wrap_path))
    validate(configs)


# A fragment without a service section, as the README may show one.
FRAGMENT = """
extensions:
  health_check:
processors:
  resource/instance:
    attributes:
      - {key: servicemap.instance, value: "${env:HOSTNAME}", action: upsert}
connectors:
  servicemap:
    compat: tempo
"""


def test_fragment_without_service_is_wrapped(components, tmp_path):
    wrap = readme.wrap_for(yaml.safe_load(FRAGMENT), components)
    assert wrap == {
        "service": {
            "extensions": ["health_check"],
            "pipelines": {
                "traces/resource-instance-processor": {
                    "receivers": ["otlp"], "processors": ["resource/instance"], "exporters": ["debug"]},
                "traces/servicemap-connector-in": {"receivers": ["otlp"], "exporters": ["servicemap"]},
                "metrics/servicemap-connector-out": {"receivers": ["servicemap"], "exporters": ["debug"]},
            },
        },
        "receivers": {"otlp": readme.STAND_INS[("receivers", "otlp")]},
        "exporters": {"debug": {}},
    }
    (tmp_path / "fragment.yaml").write_text(FRAGMENT)
    (tmp_path / "wrap.yaml").write_text(json.dumps(wrap))
    validate([str(tmp_path / "fragment.yaml"), str(tmp_path / "wrap.yaml")])


def test_component_used_without_stand_in_is_an_error(components):
    config = {"service": {"pipelines": {"traces": {"receivers": ["zipkin"], "exporters": ["debug"]}}}}
    with pytest.raises(AssertionError, match="receiver 'zipkin' is used but not defined"):
        readme.wrap_for(config, components)


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
    collector = start_collector("example-processor", processor_ports_over, workdir, base_configs=[PROCESSOR_EXAMPLE])
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


def test_readme_second_tier_labels_each_instance(workdir, tmp_path, monkeypatch):
    """The README's second-tier configuration ("Past one collector") as
    written, on ports of the test's choosing: the label it promises is on
    every series, with the instance's HOSTNAME."""
    [block] = [b for b in README_CONFIGS if "resource/instance" in b.text]
    block_path = tmp_path / "second-tier.yaml"
    block_path.write_text(block.text)
    monkeypatch.setenv("HOSTNAME", ENV_TEST_VALUES["HOSTNAME"])

    def ports_over(ports):
        protocols = {"grpc": {"endpoint": f"{harness.LOOPBACK}:{ports['grpc']}"},
                     "http": {"endpoint": f"{harness.LOOPBACK}:{ports['http']}"}}
        return {
            "receivers": {"servicemap": {"protocols": protocols, "metrics_flush_interval": "1s"}},
            "exporters": {"prometheus": {"endpoint": f"{harness.LOOPBACK}:{ports['metrics']}"}},
            "service": {"telemetry": telemetry(ports)},
        }

    collector = start_collector("readme-second-tier", ports_over, workdir, base_configs=[str(block_path)])
    try:
        _send_shop(collector)
        edge = {"client": "frontend", "server": "checkout", "servicemap_instance": ENV_TEST_VALUES["HOSTNAME"]}
        prefix = "traces_service_graph_request"
        _wait_for_values(collector, [
            (f"{prefix}_total", {**edge, "failed": "false"}, 3.0),
            (f"{prefix}_total", {**edge, "failed": "true"}, 1.0),
        ], drop_prefixes=("otel_scope_",))
        unlabelled = [key for key in expect.actual(collector.scrape(), ("otel_scope_",))
                      if ("servicemap_instance", ENV_TEST_VALUES["HOSTNAME"]) not in key[1]]
        assert unlabelled == []
    finally:
        stop_collector(collector)
