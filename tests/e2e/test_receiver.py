"""The servicemap receiver's OTLP/HTTP endpoint in the built collector takes
OTLP/JSON as well as protobuf: two collectors with the receiver are sent the
same traces, one as protobuf and one as OTLP/JSON (a plain request, then a
gzip one), and the Prometheus exporter shows the same series for both.
Answers come in the request's encoding."""

import gzip
import json
import struct
import time
import urllib.error
import urllib.request

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Status

from collectors import start_collector, stop_collector
from harness import LOOPBACK, poll
from test_hostile import receiver_config

SETTLE_TIMEOUT = 30.0
MS = 1_000_000
CLIENT, SERVER = 3, 2
ERROR = 2

# Never through a proxy: every address here is loopback.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def post(c, body, content_type, encoding=None):
    """POSTs to the receiver's /v1/traces; returns (status, Content-Type, body bytes)."""
    headers = {"Content-Type": content_type}
    if encoding:
        headers["Content-Encoding"] = encoding
    req = urllib.request.Request(f"http://{LOOPBACK}:{c.ports['http']}/v1/traces", data=body, method="POST",
                                 headers=headers)
    try:
        with _OPENER.open(req, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type"), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


# --- The traffic, as data, then encoded both ways.

def span(trace, span_id, kind, start_ms, end_ms, parent=0, attributes=(), failed=False):
    """One span; times in milliseconds after the traffic's base time."""
    return {"trace_id": struct.pack(">QQ", 0x7EC0_0000, trace), "span_id": struct.pack(">Q", span_id),
            "parent": struct.pack(">Q", parent) if parent else b"", "kind": kind,
            "start_ms": start_ms, "end_ms": end_ms, "attributes": dict(attributes), "failed": failed}


def pair(trace, client_ms, server_ms, failed=False):
    """The two spans of one request: (client span, server span). Durations
    are binary fractions of a second, so that sums are exact."""
    return (span(trace, trace << 1, CLIENT, 0, client_ms),
            span(trace, trace << 1 | 1, SERVER, 1, 1 + server_ms, parent=trace << 1, failed=failed))


def batches():
    """Two batches of [(service, [span])]: web calls api three times (the
    second fails), auth twice, and checkout calls payments, which is not
    traced (a virtual node once its wait is over)."""
    api = [pair(n, 250, 125, failed=(n == 2)) for n in (1, 2, 3)]
    auth = [pair(n, 500, 250) for n in (4, 5)]
    lone = span(6, 12, CLIENT, 0, 250, attributes={"peer.service": "payments", "http.response.status_code": 200})
    first = [("web", [c for c, _ in api] + [auth[0][0]]), ("api", [s for _, s in api]), ("auth", [auth[0][1]])]
    second = [("web", [auth[1][0]]), ("auth", [auth[1][1]]), ("checkout", [lone])]
    return first, second


def to_protobuf(resources, base_ns):
    req = ExportTraceServiceRequest()
    for service, spans in resources:
        rs = ResourceSpans()
        rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value=service)))
        ss = rs.scope_spans.add()
        for s in spans:
            out = ss.spans.add()
            out.trace_id, out.span_id, out.parent_span_id = s["trace_id"], s["span_id"], s["parent"]
            out.name = "call"
            out.kind = s["kind"]
            out.start_time_unix_nano = base_ns + s["start_ms"] * MS
            out.end_time_unix_nano = base_ns + s["end_ms"] * MS
            for k, v in s["attributes"].items():
                value = AnyValue(int_value=v) if isinstance(v, int) else AnyValue(string_value=v)
                out.attributes.append(KeyValue(key=k, value=value))
            if s["failed"]:
                out.status.code = Status.STATUS_CODE_ERROR
        req.resource_spans.append(rs)
    return req.SerializeToString()


def to_json(resources, base_ns):
    """OTLP/JSON: hex IDs, integer enums, 64-bit integers as strings, lowerCamelCase keys."""

    def value(v):
        return {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}

    def encode(s):
        out = {"traceId": s["trace_id"].hex(), "spanId": s["span_id"].hex(), "name": "call", "kind": s["kind"],
               "startTimeUnixNano": str(base_ns + s["start_ms"] * MS),
               "endTimeUnixNano": str(base_ns + s["end_ms"] * MS)}
        if s["parent"]:
            out["parentSpanId"] = s["parent"].hex()
        if s["attributes"]:
            out["attributes"] = [{"key": k, "value": value(v)} for k, v in s["attributes"].items()]
        if s["failed"]:
            out["status"] = {"code": ERROR}
        return out

    return json.dumps({"resourceSpans": [
        {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
         "scopeSpans": [{"spans": [encode(s) for s in spans]}]}
        for service, spans in resources]}).encode()


# (client, server, connection_type or None) -> (requests, failed)
EXPECTED = {
    ("web", "api", None): (3, 1),
    ("web", "auth", None): (2, 0),
    ("checkout", "payments", "virtual_node"): (1, 0),
}


@pytest.fixture(scope="module")
def collectors(workdir):
    """Two collectors with the receiver: the first is sent protobuf, the second JSON."""
    started = []
    try:
        for name in ("receiver-protobuf", "receiver-json"):
            started.append(start_collector(name, receiver_config, workdir))
        yield started
    finally:
        for c in started:
            stop_collector(c)


def graph_series(c):
    """{(name, labels): value} of every service-graph sample in one scrape."""
    return {k: v for k, v in c.scrape().samples.items() if k[0].startswith("traces_service_graph_")}


def edge(labels):
    """(client, server, connection_type or None): the exporter writes an
    empty connection_type on the series that have none."""
    return labels["client"], labels["server"], labels.get("connection_type") or None


def edge_counts(c):
    """{(client, server, connection_type): (requests, failed)} of one scrape."""
    exp = c.scrape()
    out = {}
    for labels, value in exp.series("traces_service_graph_request_total"):
        key = edge(labels)
        failed = sum(v for ls, v in exp.series("traces_service_graph_request_failed_total") if edge(ls) == key)
        out[key] = (out.get(key, (0, 0))[0] + value, failed)
    return out


def test_protobuf_and_json_give_the_same_series(collectors):
    by_protobuf, by_json = collectors
    base_ns = time.time_ns() - 1000 * MS
    first, second = batches()

    for body, encoding in ((to_protobuf(first, base_ns), None), (gzip.compress(to_protobuf(second, base_ns)), "gzip")):
        status, content_type, answer = post(by_protobuf, body, "application/x-protobuf", encoding)
        assert (status, content_type, answer) == (200, "application/x-protobuf", b""), answer[:300]
    for body, encoding in ((to_json(first, base_ns), None), (gzip.compress(to_json(second, base_ns)), "gzip")):
        status, content_type, answer = post(by_json, body, "application/json", encoding)
        assert (status, content_type, answer) == (200, "application/json", b"{}"), answer[:300]

    for c in collectors:
        poll(lambda: edge_counts(c) == EXPECTED, SETTLE_TIMEOUT, what=f"{c.name}: the three edges counted")
    # Everything sent is counted on both; every service-graph series, its
    # labels and value (histogram buckets and sums included), is the same.
    pb, js = graph_series(by_protobuf), graph_series(by_json)
    assert pb == js, {"only protobuf": sorted(set(pb.items()) - set(js.items()), key=str),
                      "only JSON": sorted(set(js.items()) - set(pb.items()), key=str)}
    # And they are the traffic's: the two requests of web to api that did
    # not fail took 0.125 s each on the server, 0.25 s on the client.
    sums = {(name, labels.get("client"), labels.get("server"), labels.get("failed")): value
            for (name, labelset), value in pb.items() for labels in [dict(labelset)] if name.endswith("_seconds_sum")}
    assert sums[("traces_service_graph_request_server_seconds_sum", "web", "api", "false")] == 0.25
    assert sums[("traces_service_graph_request_client_seconds_sum", "web", "api", "false")] == 0.5
    assert sums[("traces_service_graph_request_server_seconds_sum", "web", "auth", "false")] == 0.5


def test_a_bad_json_request_is_answered_in_json(collectors):
    c = collectors[1]
    status, content_type, answer = post(c, b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"7e"}]}]}]}',
                                        "application/json")
    assert (status, content_type) == (400, "application/json"), answer[:300]
    doc = json.loads(answer)
    assert doc["code"] == 3, doc  # INVALID_ARGUMENT
    assert doc["message"].startswith("the body is not an OTLP/JSON ExportTraceServiceRequest: "), doc
    status, content_type, answer = post(c, b"{}", "text/plain")
    assert (status, content_type) == (415, "application/x-protobuf"), answer[:300]
