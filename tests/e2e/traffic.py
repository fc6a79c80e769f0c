"""A small shop instrumented with the OpenTelemetry Python SDK, exporting
over OTLP to the collector under test, and the service graph it must give.

Each service has its own TracerProvider and `service.name`. Calls between
services carry the W3C trace context: the caller injects `traceparent` into
the request (or message) headers and the callee extracts it and starts its
SERVER (or CONSUMER) span under it, as instrumented HTTP and Kafka clients do.
Span times are set explicitly so that every latency is known exactly (all are
binary fractions of a second, so sums are exact too).

    frontend ──HTTP──▶ checkout ──gRPC──▶ payment ──▶ postgres (pg-primary)
        ▲                 │   └──▶ mysql (inventory-db)    └──▶ stripe-api (not instrumented)
      user                └──kafka──▶ fulfillment ──▶ redis, postgres, mongodb, mssql
"""

import time

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

MS = 1_000_000  # nanoseconds
# The instrumented services (each exports its own spans), and the
# service.version and deployment.environment.name of every one.
SERVICES = ("frontend", "checkout", "payment", "fulfillment")
SERVICE_VERSION = "1.0.0"
ENVIRONMENT = "e2e"
PROPAGATOR = TraceContextTextMapPropagator()

# Requests through the whole shop; each one is a trace.
REQUESTS = 4
# Lone CLIENT spans with no peer attribute (health checks of a sidecar that
# is not traced): they never pair and write no series.
LONE_CLIENTS = 2

# Latencies in seconds (binary fractions, exact in floating point).
FRONTEND_SERVER = 0.5
FRONTEND_TO_CHECKOUT_CLIENT = 0.375
CHECKOUT_SERVER = 0.25
CHECKOUT_TO_PAYMENT_CLIENT = 0.125
PAYMENT_SERVER = 0.0625
PAYMENT_DB = 0.03125
PAYMENT_TO_STRIPE = 0.015625
INVENTORY_DB = 0.0625
KAFKA_PRODUCE = 0.0078125
KAFKA_CONSUME = 0.25
# From the end of the producer span to the start of the consumer span.
KAFKA_QUEUE = 0.0625
FULFILLMENT_DB = 0.001953125

# (client, server, connection_type or None) -> the requests on that edge, one
# (failed, server seconds, client seconds) per request, under the Tempo preset.


def _requests(n, server_s, client_s, failed=()):
    return [(i in failed, server_s, client_s) for i in range(n)]


EXPECTED = {
    # The root SERVER span of the frontend has no caller: a virtual `user` client
    # (written when the half-edge expires; the missing client side observes 0).
    ("user", "frontend", "virtual_node"): _requests(REQUESTS, FRONTEND_SERVER, 0.0),
    # Request 1 fails on the checkout server span.
    ("frontend", "checkout", None): _requests(REQUESTS, CHECKOUT_SERVER, FRONTEND_TO_CHECKOUT_CLIENT, failed={1}),
    # Request 2 fails on both spans of the pair: still one failed request.
    ("checkout", "payment", None): _requests(REQUESTS, PAYMENT_SERVER, CHECKOUT_TO_PAYMENT_CLIENT, failed={2}),
    # Database calls are complete with the client span alone; the server latency
    # is the client's. server.address names the node (before db.namespace).
    ("payment", "pg-primary", "database"): _requests(REQUESTS, PAYMENT_DB, PAYMENT_DB, failed={3}),
    # peer.service names the node (before server.address and the db attributes).
    ("checkout", "inventory-db", "database"): _requests(REQUESTS, INVENTORY_DB, INVENTORY_DB),
    # An uninstrumented HTTP dependency named by peer.service: a virtual server
    # (the missing server side observes 0). Request 0 fails on the client span.
    ("payment", "stripe-api", "virtual_node"): _requests(REQUESTS, 0.0, PAYMENT_TO_STRIPE, failed={0}),
    # Kafka producer -> consumer, paired through the parent context.
    ("checkout", "fulfillment", "messaging_system"): _requests(REQUESTS, KAFKA_CONSUME, KAFKA_PRODUCE),
    # Database naming rules, one call each.
    # network.peer.address with network.peer.port.
    ("fulfillment", "redis.local:6379", "database"): _requests(1, FULFILLMENT_DB, FULFILLMENT_DB),
    # db.namespace (before db.system).
    ("fulfillment", "warehouse", "database"): _requests(1, FULFILLMENT_DB, FULFILLMENT_DB),
    # db.system alone.
    ("fulfillment", "mongodb", "database"): _requests(1, FULFILLMENT_DB, FULFILLMENT_DB),
    # The older db.name (before db.system).
    ("fulfillment", "legacy", "database"): _requests(1, FULFILLMENT_DB, FULFILLMENT_DB),
}

# The protocol of each edge, from its spans' attributes: rpc.system, then
# messaging.system, then db.system.name or db.system, else "http" for spans
# with HTTP attributes.
PROTOCOL = {
    ("user", "frontend", "virtual_node"): "http",
    ("frontend", "checkout", None): "http",
    ("checkout", "payment", None): "grpc",
    ("payment", "pg-primary", "database"): "postgresql",
    ("checkout", "inventory-db", "database"): "mysql",
    ("payment", "stripe-api", "virtual_node"): "http",
    ("checkout", "fulfillment", "messaging_system"): "kafka",
    ("fulfillment", "redis.local:6379", "database"): "redis",
    ("fulfillment", "warehouse", "database"): "postgresql",
    ("fulfillment", "mongodb", "database"): "mongodb",
    ("fulfillment", "legacy", "database"): "mssql",
}

# Edges that are written only when a half-edge expires.
EXPIRY_EDGES = {k for k in EXPECTED if k[2] == "virtual_node"}

# Half-edges that expire without writing anything, by the kind of their span.
EXPIRED_UNMATCHED = {"SPAN_KIND_CLIENT": LONE_CLIENTS, "SPAN_KIND_SERVER": 1}
# The same spans in traces_service_graph_unpaired_spans_total, by the side that arrived.
UNPAIRED = {("client", "frontend"): LONE_CLIENTS, ("server", "payment"): 1}


def totals(key):
    """(requests, failed requests) of one edge."""
    reqs = EXPECTED[key]
    return len(reqs), sum(1 for failed, _, _ in reqs if failed)


def edge_labels(key):
    client, server, conn = key
    labels = {"client": client, "server": server}
    if conn:
        labels["connection_type"] = conn
    return labels


class RecordingExporter(SpanExporter):
    """Passes spans to an OTLP exporter and remembers every result, so a
    test can tell that the collector took them."""

    def __init__(self, inner):
        self.inner = inner
        self.results = []
        self.spans = 0
        self.trace_ids = set()

    def export(self, spans):
        result = self.inner.export(spans)
        self.results.append(result)
        if result == SpanExportResult.SUCCESS:
            self.spans += len(spans)
            self.trace_ids.update(format(s.context.trace_id, "032x") for s in spans)
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return True


class Fleet:
    """One TracerProvider per service. Services listed in `grpc_services`
    export over OTLP/gRPC, the others over OTLP/HTTP (protobuf)."""

    def __init__(self, host, grpc_port, http_port, grpc_services=("frontend", "checkout")):
        self.host = host
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.grpc_services = set(grpc_services)
        self.providers = {}
        self.exporters = {}

    def tracer(self, service):
        if service not in self.providers:
            if service in self.grpc_services:
                inner = GrpcSpanExporter(endpoint=f"http://{self.host}:{self.grpc_port}", insecure=True, timeout=10)
            else:
                inner = HttpSpanExporter(endpoint=f"http://{self.host}:{self.http_port}/v1/traces", timeout=10)
            exporter = RecordingExporter(inner)
            provider = TracerProvider(resource=Resource.create({
                "service.name": service,
                "service.version": SERVICE_VERSION,
                "deployment.environment.name": ENVIRONMENT,
            }))
            # Spans wait in the queue until flush(), so all services send
            # within a moment of each other, well inside the store's wait.
            provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60000))
            self.providers[service] = provider
            self.exporters[service] = exporter
        return self.providers[service].get_tracer("servicemap.e2e.shop")

    def flush(self):
        """Sends every span now; fails unless the collector accepted all."""
        for service, provider in self.providers.items():
            assert provider.force_flush(timeout_millis=15000), f"{service}: flush timed out"
        for service, exporter in self.exporters.items():
            bad = [r for r in exporter.results if r != SpanExportResult.SUCCESS]
            assert not bad, f"{service}: export failed: {bad}"

    def spans_sent(self):
        return sum(e.spans for e in self.exporters.values())

    def trace_ids(self):
        """The trace IDs of every span the collector took, in hex."""
        return set().union(*(e.trace_ids for e in self.exporters.values()))

    def shutdown(self):
        for provider in self.providers.values():
            provider.shutdown()


def _span(tracer, name, kind, start_ns, seconds, context=None, attributes=None, error=False):
    """A finished span of exactly `seconds`, returned with its context."""
    span = tracer.start_span(name, context=context, kind=kind, attributes=attributes, start_time=start_ns)
    if error:
        span.set_status(Status(StatusCode.ERROR, "failed"))
    span.end(end_time=start_ns + round(seconds * 1e9))
    return span


def _headers_of(span):
    """What an instrumented client puts on the wire: a traceparent header."""
    headers = {}
    PROPAGATOR.inject(headers, context=trace.set_span_in_context(span))
    assert headers.get("traceparent", "").startswith("00-"), headers
    return headers


def _server_context(headers):
    """What an instrumented server reads from the wire."""
    return PROPAGATOR.extract(headers)


# The gRPC call from checkout to payment, as gRPC instrumentation describes it.
GRPC_CHARGE = {"rpc.system": "grpc", "rpc.service": "shop.Payments", "rpc.method": "Charge"}


def run_shop(fleet, requests=REQUESTS, lone_clients=LONE_CLIENTS):
    """Records the shop's traffic (spans are exported by flush())."""
    frontend = fleet.tracer("frontend")
    checkout = fleet.tracer("checkout")
    payment = fleet.tracer("payment")
    fulfillment = fleet.tracer("fulfillment")
    now = time.time_ns()

    for i in range(requests):
        t = now + i * 1000 * MS
        # frontend: the user's request (root SERVER span) and its call to checkout.
        root = _span(frontend, "GET /cart/checkout", SpanKind.SERVER, t, FRONTEND_SERVER,
                     attributes={"http.request.method": "GET", "http.route": "/cart/checkout"})
        root_ctx = trace.set_span_in_context(root)
        to_checkout = _span(frontend, "POST", SpanKind.CLIENT, t + 50 * MS, FRONTEND_TO_CHECKOUT_CLIENT,
                            context=root_ctx, attributes={"http.request.method": "POST",
                                                          "server.address": "checkout", "server.port": 8080})

        # checkout: serves the call (request 1 fails here).
        served = _span(checkout, "POST /api/checkout", SpanKind.SERVER, t + 100 * MS, CHECKOUT_SERVER,
                       context=_server_context(_headers_of(to_checkout)),
                       attributes={"http.request.method": "POST", "http.route": "/api/checkout",
                                   "http.response.status_code": 500 if i == 1 else 200},
                       error=(i == 1))
        served_ctx = trace.set_span_in_context(served)
        to_payment = _span(checkout, "shop.Payments/Charge", SpanKind.CLIENT, t + 110 * MS,
                           CHECKOUT_TO_PAYMENT_CLIENT, context=served_ctx, attributes=GRPC_CHARGE, error=(i == 2))
        _span(checkout, "SELECT inventory.stock", SpanKind.CLIENT, t + 240 * MS, INVENTORY_DB, context=served_ctx,
              attributes={"db.system": "mysql", "peer.service": "inventory-db", "server.address": "mysql.local",
                          "db.namespace": "inventory"})
        produce = _span(checkout, "orders publish", SpanKind.PRODUCER, t + 330 * MS, KAFKA_PRODUCE,
                        context=served_ctx,
                        attributes={"messaging.system": "kafka", "messaging.destination.name": "orders",
                                    "messaging.operation.type": "send"})

        # payment: serves the charge over gRPC (request 2 fails here too), writes to postgres
        # (request 3 fails there), and calls the card processor, which is not traced.
        charge = _span(payment, "shop.Payments/Charge", SpanKind.SERVER, t + 125 * MS, PAYMENT_SERVER,
                       context=_server_context(_headers_of(to_payment)),
                       attributes={**GRPC_CHARGE, "rpc.grpc.status_code": 13 if i == 2 else 0}, error=(i == 2))
        charge_ctx = trace.set_span_in_context(charge)
        _span(payment, "INSERT payments", SpanKind.CLIENT, t + 130 * MS, PAYMENT_DB, context=charge_ctx,
              attributes={"db.system.name": "postgresql", "db.namespace": "payments",
                          "server.address": "pg-primary", "server.port": 5432},
              error=(i == 3))
        _span(payment, "POST", SpanKind.CLIENT, t + 165 * MS, PAYMENT_TO_STRIPE, context=charge_ctx,
              attributes={"peer.service": "stripe-api", "http.request.method": "POST"}, error=(i == 0))

        # fulfillment: consumes the Kafka message; the parent comes from the message headers.
        consume_at = t + 330 * MS + round((KAFKA_PRODUCE + KAFKA_QUEUE) * 1e9)
        _span(fulfillment, "orders process", SpanKind.CONSUMER, consume_at, KAFKA_CONSUME,
              context=_server_context(_headers_of(produce)),
              attributes={"messaging.system": "kafka", "messaging.destination.name": "orders",
                          "messaging.operation.type": "process"})

    # One trace in which fulfillment calls four databases, named by different rules.
    t = now
    job = _span(fulfillment, "ship orders", SpanKind.INTERNAL, t, 0.125)
    job_ctx = trace.set_span_in_context(job)
    for j, attributes in enumerate([
        {"db.system": "redis", "network.peer.address": "redis.local", "network.peer.port": 6379},
        {"db.system": "postgresql", "db.namespace": "warehouse"},
        {"db.system": "mongodb"},
        {"db.system": "mssql", "db.name": "legacy"},
    ]):
        _span(fulfillment, f"db call {j}", SpanKind.CLIENT, t + (j + 1) * 10 * MS, FULFILLMENT_DB,
              context=job_ctx, attributes=attributes)

    # Spans that never pair: health checks from frontend to a sidecar without a
    # peer attribute, and a payment SERVER span whose caller (a batch job) does
    # not export its spans.
    for j in range(lone_clients):
        _span(frontend, "GET /healthz", SpanKind.CLIENT, now + j * MS, FULFILLMENT_DB,
              attributes={"http.request.method": "GET"})
    batch_job = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    _span(payment, "POST /refund", SpanKind.SERVER, now, PAYMENT_SERVER, context=_server_context(batch_job),
          attributes={"http.request.method": "POST", "http.route": "/refund"})


def spans_per_run(requests=REQUESTS, lone_clients=LONE_CLIENTS):
    """How many spans run_shop records."""
    return requests * 10 + 5 + lone_clients + 1
