"""Generated traces with known answers, as OTLP protobuf batches: the shop's
call chain user → frontend → checkout → payment → the `orders` database,
with failures on fixed traces, deterministic IDs, and times near now."""

import random
import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

SERVER, CLIENT = Span.SPAN_KIND_SERVER, Span.SPAN_KIND_CLIENT
ERROR = Status.STATUS_CODE_ERROR

# Which traces fail where. checkout fails 2% of its calls: red against the
# default 99% objective. payment fails 91 calls in 10,000 (0.91%): yellow,
# clear of both edges of the band (0.8% and 1%), so that rate()'s
# extrapolation in Prometheus cannot tip it either way.
CHECKOUT_FAILS = lambda i: i % 50 == 0  # noqa: E731
PAYMENT_FAILS = lambda i: i % 111 == 1  # noqa: E731


def expected(traces):
    """(client, server) → (requests, failed) for `traces` traces."""
    return {
        ("user", "frontend"): (traces, 0),
        ("frontend", "checkout"): (traces, sum(1 for i in range(traces) if CHECKOUT_FAILS(i))),
        ("checkout", "payment"): (traces, sum(1 for i in range(traces) if PAYMENT_FAILS(i))),
        ("payment", "orders"): (traces, 0),
    }


def _attrs(**kv):
    return [KeyValue(key=k.replace("_", "."), value=AnyValue(string_value=v)) for k, v in kv.items()]


def batches(traces, per_batch=250, seed=1, now_ns=None):
    """Yields serialized ExportTraceServiceRequests holding `traces` traces,
    `per_batch` to a request, one ResourceSpans per service."""
    rng = random.Random(seed)
    now_ns = now_ns or time.time_ns()
    ms = 1_000_000
    for first in range(0, traces, per_batch):
        spans = {name: [] for name in ("frontend", "checkout", "payment")}
        for i in range(first, min(first + per_batch, traces)):
            trace_id = rng.getrandbits(128).to_bytes(16, "big")
            ids = [rng.getrandbits(64).to_bytes(8, "big") for _ in range(6)]
            start = now_ns - 2000 * ms

            def span(service, sid, parent, kind, t0, t1, failed=False, **attrs):
                spans[service].append(Span(
                    trace_id=trace_id, span_id=sid, parent_span_id=parent, name=f"{service} op", kind=kind,
                    start_time_unix_nano=start + t0 * ms, end_time_unix_nano=start + t1 * ms,
                    attributes=_attrs(**attrs), status=Status(code=ERROR) if failed else Status()))

            span("frontend", ids[0], b"", SERVER, 0, 60)
            span("frontend", ids[1], ids[0], CLIENT, 2, 55)
            span("checkout", ids[2], ids[1], SERVER, 3, 54, failed=CHECKOUT_FAILS(i))
            span("checkout", ids[3], ids[2], CLIENT, 5, 40)
            span("payment", ids[4], ids[3], SERVER, 6, 39, failed=PAYMENT_FAILS(i))
            span("payment", ids[5], ids[4], CLIENT, 8, 20, db_system_name="postgresql", db_namespace="orders")
        request = ExportTraceServiceRequest()
        for service, ss in spans.items():
            rs = request.resource_spans.add()
            rs.resource.attributes.extend(_attrs(service_name=service))
            rs.scope_spans.add().spans.extend(ss)
        yield request.SerializeToString()
