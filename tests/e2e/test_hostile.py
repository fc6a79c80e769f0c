"""Hostile input against the built collector, in each of its three modes
(processor, connector, receiver): a batch whose service name nests 30,000
and 200,000 levels deep, a flood of made-up service names that never pair,
and a real request sent afterwards, which must still be counted. The
collector must stay up, and its memory within the stated bound."""

import os
import struct
import time

import pytest

import harness
from collectors import (EXPIRATION_LOOP, STORE_TTL, connector_config, processor_config, start_collector,
                        stop_collector, telemetry)
from harness import LOOPBACK, http_post, poll

# What the collector may hold at most, resident, after the flood below: the
# caps (store, series, unpaired counters, map) bound it whatever the number
# of names. Measured 72 MB (processor), 98 MB (receiver), 113 MB (connector).
RSS_BOUND_MB = 250
FLOOD_SPANS = 60_000
FLOOD_BATCH = 2_000


# --- OTLP protobuf, written by hand: nesting no protobuf library would build.

def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field(number, body):
    """A length-delimited field."""
    return varint(number << 3 | 2) + varint(len(body)) + body


def fixed64(number, value):
    return varint(number << 3 | 1) + struct.pack("<Q", value)


def string_value(s):
    return field(1, s.encode())


def nested_value(depth):
    """An AnyValue of arrays `depth` deep around the string "x". Sizes are
    computed inside out, then the headers written outside in, so it costs
    O(depth) rather than a copy per level."""
    sizes = [3]  # the innermost AnyValue: string "x"
    for _ in range(depth):
        inner = sizes[-1]
        array = 1 + len(varint(inner)) + inner  # ArrayValue { values: inner }
        sizes.append(1 + len(varint(array)) + array)  # AnyValue { array_value }
    parts = []
    for level in range(depth, 0, -1):
        inner = sizes[level - 1]
        array = 1 + len(varint(inner)) + inner
        parts.append(b"\x2a" + varint(array) + b"\x0a" + varint(inner))
    parts.append(string_value("x"))
    value = b"".join(parts)
    assert len(value) == sizes[-1]
    return value


def key_value(key, any_value):
    return field(1, key.encode()) + field(2, any_value)


def span(trace_id, span_id, kind, start_ns, end_ns, parent=b""):
    body = field(1, trace_id) + field(2, span_id)
    if parent:
        body += field(4, parent)
    body += field(5, b"op") + varint(6 << 3) + varint(kind)
    return body + fixed64(7, start_ns) + fixed64(8, end_ns)


def resource_spans(attributes, spans):
    resource = b"".join(field(1, a) for a in attributes)
    scope = b"".join(field(2, s) for s in spans)
    return field(1, resource) + field(2, scope)


def request(*resources):
    return b"".join(field(1, r) for r in resources)


CLIENT, SERVER = 3, 2


def trace_id(n, tag):
    return struct.pack(">QQ", 0x5E5E_0000 + n, tag)


def real_pair(client, server, n):
    """One request from `client` to `server`, both sides."""
    now = time.time_ns()
    tid = trace_id(n, 0xAB)
    return request(
        resource_spans([key_value("service.name", string_value(client))],
                       [span(tid, struct.pack(">Q", 1), CLIENT, now, now + 10_000_000)]),
        resource_spans([key_value("service.name", string_value(server))],
                       [span(tid, struct.pack(">Q", 2), SERVER, now, now + 5_000_000, parent=struct.pack(">Q", 1))]),
    )


def deep_batch(depth):
    """A client span whose service name nests `depth` levels deep, answered
    by a server span of service `deep-server`."""
    now = time.time_ns()
    tid = trace_id(depth, 0xDE)
    return request(
        resource_spans([key_value("service.name", nested_value(depth))],
                       [span(tid, struct.pack(">Q", 1), CLIENT, now, now + 10_000_000)]),
        resource_spans([key_value("service.name", string_value("deep-server"))],
                       [span(tid, struct.pack(">Q", 2), SERVER, now, now + 5_000_000, parent=struct.pack(">Q", 1))]),
    )


def junk_batch(first, count):
    """`count` resources, each a new service with one client span nothing answers."""
    now = time.time_ns()
    return request(*(
        resource_spans([key_value("service.name", string_value(f"junk-{n}"))],
                       [span(trace_id(n, 0xEE), struct.pack(">Q", n + 1), CLIENT, now, now + 1_000_000)])
        for n in range(first, first + count)))


# --- The three modes.

def receiver_config(ports):
    """The servicemap receiver (contrib preset) into the Prometheus exporter."""
    return {
        "receivers": {
            "servicemap": {
                "protocols": {"grpc": {"endpoint": f"{LOOPBACK}:{ports['grpc']}"},
                              "http": {"endpoint": f"{LOOPBACK}:{ports['http']}"}},
                "store": {"ttl": STORE_TTL, "max_items": 1000},
                "store_expiration_loop": EXPIRATION_LOOP,
                "metrics_flush_interval": "500ms",
            }
        },
        "exporters": {"prometheus": {"endpoint": f"{LOOPBACK}:{ports['metrics']}"}},
        "service": {
            "telemetry": telemetry(ports),
            "pipelines": {"metrics/servicemap": {"receivers": ["servicemap"], "exporters": ["prometheus"]}},
        },
    }


MODES = {"processor": processor_config, "connector": connector_config, "receiver": receiver_config}


@pytest.fixture(params=sorted(MODES))
def collector(request, workdir):
    c = start_collector(f"hostile-{request.param}", MODES[request.param], workdir)
    yield c
    stop_collector(c)


def post_traces(c, body):
    return http_post(f"http://{LOOPBACK}:{c.ports['http']}/v1/traces", body, content_type="application/x-protobuf",
                     timeout=30)


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def waiting(c):
    """Half-edges waiting in the engine, from the collector's own telemetry."""
    status, body = harness.http_get(c.telemetry_url)
    assert status == 200, body[:300]
    for line in body.splitlines():
        if line.startswith("otelcol_servicemap_engine_waiting"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no otelcol_servicemap_engine_waiting in the collector's telemetry")


def counted(c, client, server):
    """The request count of one edge, whatever other labels the preset adds."""
    return sum(v for labels, v in c.scrape().series("traces_service_graph_request_total")
               if labels.get("client") == client and labels.get("server") == server)


def test_deep_nesting_is_cut_and_the_collector_stays_up(collector):
    for depth in (30_000, 200_000):
        status, body = post_traces(collector, deep_batch(depth))
        assert status == 200, f"depth {depth}: HTTP {status}: {body[:300]}"
        assert collector.process.alive(), collector.process.log()
    # The client's name is the array cut at 32 levels.
    cut = "[" * 32 + '"..."' + "]" * 32
    poll(lambda: counted(collector, cut, "deep-server") == 2, 30, what="the two deep requests counted")
    assert post_traces(collector, real_pair("web", "api", 1))[0] == 200
    poll(lambda: counted(collector, "web", "api") == 1, 30, what="a real request after the deep ones")
    assert collector.process.alive()


def test_a_flood_of_names_stays_bounded_and_real_edges_still_count(collector):
    for first in range(0, FLOOD_SPANS, FLOOD_BATCH):
        status, body = post_traces(collector, junk_batch(first, FLOOD_BATCH))
        assert status == 200, f"HTTP {status}: {body[:300]}"
    assert collector.process.alive(), collector.process.log()
    # Once the junk has expired (store ttl) the store has room again.
    poll(lambda: waiting(collector) == 0, 60, what="the flood's spans expired")
    assert post_traces(collector, real_pair("checkout", "payment", 2))[0] == 200
    poll(lambda: counted(collector, "checkout", "payment") == 1, 60, what="a real request after the flood")
    rss = rss_mb(collector.process.pid)
    print(f"{collector.name}: {rss:.0f} MB resident after {FLOOD_SPANS} junk spans")
    assert rss < RSS_BOUND_MB, f"{collector.name}: {rss:.0f} MB resident after {FLOOD_SPANS} junk spans"
