"""The README's way to put the components in a distribution of one's own
("In your collector"): with the Rust library built in the checkout (`make
collector` builds it), the README's OCB manifest, its `path:` pointed at the
checkout's go-shim, is built by the builder that `make collector` installs,
from a temporary directory outside the checkout. The distribution it makes
holds exactly the manifest's components, and its processor counts the shop's
traffic exactly as bin/otelcol-servicemap does."""

import os
import re
import subprocess

import pytest
import yaml

import expect
import harness
import readme
import traffic
from collectors import processor_config, start_collector, stop_collector

README = os.path.join(harness.ROOT, "README.md")
PLACEHOLDER = "/path/to/servicemap"
SHIM = "github.com/servicemap/servicemap/go-shim v0.0.0"
BUILD_TIMEOUT = 1800
SETTLE_TIMEOUT = 60.0


def builder_binary():
    """bin/tools/builder-OCB_VERSION, OCB_VERSION as the Makefile sets it."""
    with open(os.path.join(harness.ROOT, "Makefile"), encoding="utf-8") as f:
        version = re.search(r"^OCB_VERSION := (\S+)$", f.read(), re.M).group(1)
    path = os.path.join(harness.ROOT, "bin", "tools", f"builder-{version}")
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} not found: `make collector` installs it", pytrace=False)
    return path


@pytest.fixture(scope="module")
def outside_collector(tmp_path_factory):
    library = os.path.join(harness.ROOT, "target", "release", "libservicemap.a")
    if not os.path.exists(library):
        pytest.fail(f"{library} not found: `make rust` (or `make collector`) builds it", pytrace=False)
    [manifest] = [b for b in readme.yaml_blocks(README) if b.marked]
    assert PLACEHOLDER in manifest.text
    workdir = str(tmp_path_factory.mktemp("ocb-outside"))
    assert os.path.commonpath([workdir, harness.ROOT]) != harness.ROOT
    with open(os.path.join(workdir, "manifest.yaml"), "w") as f:
        f.write(manifest.text.replace(PLACEHOLDER, harness.ROOT))
    dist = yaml.safe_load(manifest.text)["dist"]
    result = subprocess.run([builder_binary(), "--config=manifest.yaml"], cwd=workdir, capture_output=True,
                            text=True, timeout=BUILD_TIMEOUT, env={**os.environ, "CGO_ENABLED": "1"})
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    binary = os.path.join(workdir, dist["output_path"], dist["name"])
    assert os.access(binary, os.X_OK), binary
    return binary


def test_manifest_components_and_nothing_else(outside_collector):
    result = subprocess.run([outside_collector, "components"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    got = yaml.safe_load(result.stdout)
    names = {kind: sorted(c["name"] for c in got.get(kind) or [])
             for kind in ("receivers", "processors", "exporters", "connectors", "extensions")}
    assert names == {"receivers": ["otlp", "servicemap"], "processors": ["servicemap"], "exporters": ["debug"],
                     "connectors": ["servicemap"], "extensions": []}
    for kind in ("receivers", "processors", "connectors"):
        [shim] = [c for c in got[kind] if c["name"] == "servicemap"]
        assert shim["module"] == SHIM


def test_outside_build_counts_the_shop(outside_collector, monkeypatch, tmp_path):
    monkeypatch.setenv("SERVICEMAP_COLLECTOR", outside_collector)
    collector = start_collector("outside", processor_config, str(tmp_path))
    try:
        fleet = collector.fleet()
        try:
            traffic.run_shop(fleet)
            fleet.flush()
        finally:
            fleet.shutdown()
        want = expect.samples(traffic.EXPECTED, expect.TEMPO_BUCKETS)
        settled = expect.wait_for(collector.scrape, want, SETTLE_TIMEOUT)
        assert expect.diff(expect.actual(settled), want) == ""
    finally:
        stop_collector(collector)
