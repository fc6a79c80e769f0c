"""Helpers for the end-to-end tests: loopback ports, processes that are always
stopped, bounded polling, HTTP without proxies, and a reader for the
Prometheus text exposition format."""

import math
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

LOOPBACK = "127.0.0.1"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Never send test traffic through a proxy: every address here is loopback.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def collector_binary():
    """The collector under test (`make collector` builds it)."""
    import pytest

    path = os.environ.get("SERVICEMAP_COLLECTOR", os.path.join(ROOT, "bin", "otelcol-servicemap"))
    if not os.access(path, os.X_OK):
        pytest.fail(f"collector binary {path} not found: build it with `make collector`", pytrace=False)
    return path


def demotraffic_binary():
    """The demo's traffic generator (`make demotraffic` builds it)."""
    import pytest

    path = os.environ.get("SERVICEMAP_DEMOTRAFFIC", os.path.join(ROOT, "bin", "demotraffic"))
    if not os.access(path, os.X_OK):
        pytest.fail(f"demo traffic generator {path} not found: build it with `make demotraffic`", pytrace=False)
    return path


def tool(name, env_var):
    """A program the tests need (`make setup-test` installs them)."""
    import pytest

    path = os.environ.get(env_var) or shutil.which(name)
    if not path:
        pytest.fail(f"{name} not found: run `make setup-test`", pytrace=False)
    return path


class Timeout(AssertionError):
    """A polled condition did not hold before its deadline."""


def free_port():
    """A TCP port on the loopback address that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def port_open(port, host=LOOPBACK):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_get(url, timeout=5.0, headers=None):
    """Returns (status, body as text). Connection errors raise OSError."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def http_post(url, body, content_type="application/x-ndjson", timeout=5.0, headers=None):
    """POSTs `body` (bytes or text) with any further `headers`; returns
    (status, body as text)."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type, **(headers or {})})
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            # An OTLP answer may be binary protobuf (a partial success).
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def poll(condition, timeout, interval=0.2, what="condition"):
    """Calls `condition` until it returns a true value, which is returned.
    Exceptions and false values are retried until `timeout` seconds pass;
    then Timeout is raised with the last value or error."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = condition()
            if value:
                return value
            last = value
        except (OSError, ValueError, KeyError, AssertionError) as e:
            last = e
        if time.monotonic() >= deadline:
            raise Timeout(f"{what}: not reached within {timeout}s; last: {last!r}")
        time.sleep(interval)


class Process:
    """A child process whose output goes to a log file, stopped for sure by
    stop(): SIGTERM, then SIGKILL after a grace period."""

    def __init__(self, argv, log_path, cwd=None, env=None):
        self.argv = list(argv)
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def log(self, tail=8000):
        self._log.flush()
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()
        except OSError:
            return ""
        return data[-tail:].decode("utf-8", "replace")

    def stop(self, grace=10.0):
        """Stops the process; returns its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=grace)
        self._log.close()
        return self.proc.returncode


# --- Prometheus text exposition -------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?\s*$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def _unescape(value):
    out, i = [], 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            n = value[i + 1]
            out.append({"n": "\n", "\\": "\\", '"': '"'}.get(n, "\\" + n))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _value(text):
    if text in ("+Inf", "Inf"):
        return math.inf
    if text == "-Inf":
        return -math.inf
    return float(text)


class Exposition:
    """Samples of one scrape, addressable by metric name and label set."""

    def __init__(self, text):
        self.text = text
        self.samples = {}  # (name, frozenset(labels.items())) -> value
        self.types = {}
        for line in text.splitlines():
            line = line.strip()
            if not line:
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 4 and parts[1] == "TYPE":
                    self.types[parts[2]] = parts[3]
                continue
            m = _SAMPLE.match(line)
            if not m:
                raise ValueError(f"unreadable exposition line: {line!r}")
            name, _, body, value, _ = m.groups()
            labels = {}
            if body:
                pos = 0
                while pos < len(body):
                    lm = _LABEL.match(body, pos)
                    if not lm:
                        raise ValueError(f"unreadable labels in line: {line!r}")
                    labels[lm.group(1)] = _unescape(lm.group(2))
                    pos = lm.end()
            key = (name, frozenset(labels.items()))
            if key in self.samples:
                raise ValueError(f"duplicate sample: {line!r}")
            self.samples[key] = _value(value)

    def get(self, name, **labels):
        """The value of the sample with exactly these labels, or None."""
        return self.samples.get((name, frozenset(labels.items())))

    def series(self, name):
        """[(labels dict, value)] of every sample of one metric name."""
        return [(dict(k[1]), v) for k, v in self.samples.items() if k[0] == name]

    def edges(self, name="traces_service_graph_request_total", ignore=()):
        """{label set without `ignore` labels: value} for one metric."""
        out = {}
        for labels, value in self.series(name):
            key = frozenset((k, v) for k, v in labels.items() if k not in ignore)
            out[key] = out.get(key, 0.0) + value
        return out


def labels_key(**labels):
    return frozenset(labels.items())


# --- Prometheus HTTP API --------------------------------------------------


def prom_query(base_url, promql, timeout=5.0, at=None):
    """Runs an instant query (at Unix time `at`, now if None); returns the
    result list of a vector result."""
    import json

    params = {"query": promql}
    if at is not None:
        params["time"] = f"{at:.3f}"
    url = f"{base_url}/api/v1/query?" + urllib.parse.urlencode(params)
    status, body = http_get(url, timeout=timeout)
    doc = json.loads(body)
    if status != 200 or doc.get("status") != "success":
        raise AssertionError(f"query {promql!r} failed: HTTP {status}: {body[:500]}")
    if doc["data"]["resultType"] != "vector":
        raise AssertionError(f"query {promql!r}: expected a vector, got {doc['data']['resultType']}")
    return doc["data"]["result"]


def by_edge(result, labels=("client", "server")):
    """{(label values): float value} of a query result, failing on duplicates."""
    out = {}
    for row in result:
        key = tuple(row["metric"].get(name, "") for name in labels)
        assert key not in out, f"duplicate row {row}"
        out[key] = float(row["value"][1])
    return out


def bucket_quantile(q, bounds_counts):
    """Prometheus's histogram_quantile for one series: bounds_counts is a
    sorted list of (upper bound, cumulative count), ending with +Inf."""
    total = bounds_counts[-1][1]
    if total == 0:
        return math.nan
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for i, (bound, count) in enumerate(bounds_counts):
        if count >= rank:
            if math.isinf(bound):
                return bounds_counts[-2][0]
            if i == 0 and bound <= 0:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return math.nan
