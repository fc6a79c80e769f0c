//! A synthetic OTLP trace stream that looks like a real shop backend, for
//! benchmarks, demos and tests.
//!
//! Twenty services call each other over HTTP and gRPC, write to databases
//! and caches, call uninstrumented third parties (named by `peer.service`),
//! and pass messages through Kafka, where one consumer is a child of its
//! producer and another only links to it. Spans carry the attributes real
//! instrumentation writes (about ten each, some in the older semantic
//! conventions), so a span is about 400 bytes on the wire.
//!
//! Traces have 8 to 12 spans. As with a collector's batch processor, a batch
//! does not hold whole traces: part of a trace may arrive in the next batch,
//! and resources are shuffled within a batch, so a client span arrives
//! sometimes before and sometimes after its server span.
//!
//! Everything is derived from a seed: the same seed gives the same bytes.
//!
//! This crate is test support: the tests, the benchmarks and the examples
//! use it; the library the collector links does not.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span, status};
use prost::Message;

pub mod incidents;

/// SplitMix64: a small, fast generator with a 64-bit state; plenty for
/// synthetic data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`; `n` must be positive.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + ((self.next_u64() as u128 * (hi - lo + 1) as u128) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn id<const N: usize>(&mut self) -> [u8; N] {
        loop {
            let mut out = [0u8; N];
            for chunk in out.chunks_mut(8) {
                let bytes = self.next_u64().to_le_bytes();
                chunk.copy_from_slice(&bytes[..chunk.len()]);
            }
            if out != [0u8; N] {
                return out;
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Http,
    Grpc,
}

/// One outgoing call a service makes.
#[derive(Debug)]
enum Call {
    /// An instrumented service, over the callee's protocol.
    Service(usize),
    Db(&'static Database),
    /// A third party that sends no spans.
    External {
        peer: &'static str,
        host: &'static str,
        path: &'static str,
    },
    /// A Kafka message. A `linked` consumer starts a new trace with a span link
    /// to the producer; otherwise it is the producer's child.
    Produce {
        topic: &'static str,
        consumer: usize,
        linked: bool,
    },
    Internal(&'static str),
}

impl Call {
    fn spans(&self) -> usize {
        match self {
            Call::Service(_) | Call::Produce { .. } => 2,
            _ => 1,
        }
    }
}

#[derive(Debug)]
struct Database {
    system: &'static str,
    namespace: &'static str,
    host: &'static str,
    port: i64,
    operation: &'static str,
    collection: &'static str,
    query: &'static str,
}

#[derive(Debug)]
struct Service {
    name: &'static str,
    proto: Proto,
    /// Writes `http.method`-style attribute names (older instrumentation).
    legacy: bool,
    language: &'static str,
    /// HTTP routes (`METHOD /route`) or gRPC methods of `rpc`.
    endpoints: &'static [&'static str],
    rpc: &'static str,
    port: i64,
    /// Calls it makes; one listed twice is made twice as often.
    calls: &'static [Call],
}

const FRONTEND: usize = 0;
const MOBILE_BFF: usize = 1;
const GATEWAY: usize = 2;
const AUTH: usize = 3;
const USER: usize = 4;
const CATALOG: usize = 5;
const SEARCH: usize = 6;
const RECOMMENDATION: usize = 7;
const CART: usize = 8;
const CHECKOUT: usize = 9;
const PAYMENT: usize = 10;
const SHIPPING: usize = 11;
const INVENTORY: usize = 12;
const PRICING: usize = 13;
const CURRENCY: usize = 14;
const ORDER: usize = 15;
const NOTIFICATION: usize = 16;
const EMAIL: usize = 17;
const FRAUD: usize = 18;
const AD: usize = 19;

const fn pg(namespace: &'static str, collection: &'static str, query: &'static str) -> Database {
    Database {
        system: "postgresql",
        namespace,
        host: "postgres-primary.data.svc.cluster.local",
        port: 5432,
        operation: "SELECT",
        collection,
        query,
    }
}

const fn redis(operation: &'static str, query: &'static str) -> Database {
    Database {
        system: "redis",
        namespace: "0",
        host: "redis-master.data.svc.cluster.local",
        port: 6379,
        operation,
        collection: "",
        query,
    }
}

static USERS_DB: Database = pg("users", "accounts", "SELECT id, email, tier, locale FROM accounts WHERE id = $1");
static CATALOG_DB: Database =
    pg("catalog", "products", "SELECT id, sku, title, price_cents FROM products WHERE category_id = $1 LIMIT $2");
static INVENTORY_DB: Database =
    pg("inventory", "stock_levels", "SELECT sku, warehouse_id, quantity FROM stock_levels WHERE sku = ANY($1)");
static PAYMENTS_DB: Database = Database {
    operation: "INSERT",
    ..pg("payments", "charges", "INSERT INTO charges (order_id, amount_cents, currency, status) VALUES ($1,$2,$3,$4)")
};
static ORDERS_DB: Database = Database {
    operation: "UPDATE",
    ..pg("orders", "orders", "UPDATE orders SET status = $2, updated_at = now() WHERE id = $1")
};
static SESSION_CACHE: Database = redis("GET", "GET session:{token}");
static CART_CACHE: Database = redis("HGETALL", "HGETALL cart:{user_id}");
static PRICE_CACHE: Database = redis("MGET", "MGET price:{sku} price:{sku} price:{sku}");
static SEARCH_INDEX: Database = Database {
    system: "elasticsearch",
    namespace: "products-v7",
    host: "search-es.data.svc.cluster.local",
    port: 9200,
    operation: "search",
    collection: "products-v7",
    query: "{\"query\":{\"multi_match\":{\"query\":\"?\",\"fields\":[\"title^3\",\"description\"]}},\"size\":24}",
};

static SERVICES: [Service; 20] = [
    Service {
        name: "frontend",
        proto: Proto::Http,
        legacy: false,
        language: "nodejs",
        endpoints: &["GET /", "GET /product/{id}", "GET /cart", "POST /cart/checkout", "GET /search"],
        rpc: "",
        port: 8080,
        calls: &[
            Call::Service(GATEWAY),
            Call::Service(GATEWAY),
            Call::Service(GATEWAY),
            Call::Service(AD),
            Call::Service(RECOMMENDATION),
            Call::Internal("renderPage"),
        ],
    },
    Service {
        name: "mobile-bff",
        proto: Proto::Http,
        legacy: true,
        language: "java",
        endpoints: &["GET /v2/home", "GET /v2/products/{id}", "POST /v2/orders"],
        rpc: "",
        port: 8080,
        calls: &[
            Call::Service(GATEWAY),
            Call::Service(GATEWAY),
            Call::Service(AUTH),
            Call::Service(USER),
            Call::Internal("assembleResponse"),
        ],
    },
    Service {
        name: "api-gateway",
        proto: Proto::Http,
        legacy: false,
        language: "go",
        endpoints: &["GET /api/products", "GET /api/products/{id}", "GET /api/cart", "POST /api/checkout"],
        rpc: "",
        port: 8000,
        calls: &[
            Call::Service(AUTH),
            Call::Service(CATALOG),
            Call::Service(SEARCH),
            Call::Service(CART),
            Call::Service(CHECKOUT),
            Call::Service(CHECKOUT),
            Call::Service(USER),
        ],
    },
    Service {
        name: "auth",
        proto: Proto::Http,
        legacy: true,
        language: "java",
        endpoints: &["POST /oauth/token/introspect", "GET /session"],
        rpc: "",
        port: 8443,
        calls: &[Call::Service(USER), Call::Db(&SESSION_CACHE)],
    },
    Service {
        name: "user",
        proto: Proto::Grpc,
        legacy: false,
        language: "go",
        endpoints: &["GetUser", "GetPreferences"],
        rpc: "shop.user.v1.UserService",
        port: 50051,
        calls: &[Call::Db(&USERS_DB)],
    },
    Service {
        name: "catalog",
        proto: Proto::Http,
        legacy: false,
        language: "python",
        endpoints: &["GET /products", "GET /products/{id}", "GET /categories/{id}/products"],
        rpc: "",
        port: 8000,
        calls: &[Call::Service(INVENTORY), Call::Service(PRICING), Call::Db(&CATALOG_DB)],
    },
    Service {
        name: "search",
        proto: Proto::Http,
        legacy: true,
        language: "java",
        endpoints: &["GET /search", "GET /suggest"],
        rpc: "",
        port: 8080,
        calls: &[Call::Service(CATALOG), Call::Db(&SEARCH_INDEX)],
    },
    Service {
        name: "recommendation",
        proto: Proto::Grpc,
        legacy: false,
        language: "python",
        endpoints: &["ListRecommendations"],
        rpc: "shop.reco.v1.RecommendationService",
        port: 50051,
        calls: &[Call::Service(CATALOG), Call::Db(&PRICE_CACHE), Call::Internal("scoreCandidates")],
    },
    Service {
        name: "cart",
        proto: Proto::Grpc,
        legacy: false,
        language: "dotnet",
        endpoints: &["GetCart", "AddItem", "EmptyCart"],
        rpc: "shop.cart.v1.CartService",
        port: 7070,
        calls: &[Call::Db(&CART_CACHE), Call::Service(PRICING)],
    },
    Service {
        name: "checkout",
        proto: Proto::Grpc,
        legacy: false,
        language: "go",
        endpoints: &["PlaceOrder"],
        rpc: "shop.checkout.v1.CheckoutService",
        port: 5050,
        calls: &[
            Call::Service(CART),
            Call::Service(PAYMENT),
            Call::Service(PAYMENT),
            Call::Service(SHIPPING),
            Call::Service(CURRENCY),
            Call::Service(ORDER),
            Call::Service(ORDER),
            Call::Produce { topic: "orders", consumer: NOTIFICATION, linked: false },
            Call::Produce { topic: "orders", consumer: NOTIFICATION, linked: false },
        ],
    },
    Service {
        name: "payment",
        proto: Proto::Grpc,
        legacy: false,
        language: "nodejs",
        endpoints: &["Charge", "Refund"],
        rpc: "shop.payment.v1.PaymentService",
        port: 50051,
        calls: &[
            Call::Service(FRAUD),
            Call::Service(FRAUD),
            Call::External { peer: "stripe-api", host: "api.stripe.com", path: "/v1/payment_intents" },
            Call::Db(&PAYMENTS_DB),
        ],
    },
    Service {
        name: "shipping",
        proto: Proto::Grpc,
        legacy: false,
        language: "rust",
        endpoints: &["GetQuote", "ShipOrder"],
        rpc: "shop.shipping.v1.ShippingService",
        port: 50051,
        calls: &[
            Call::External { peer: "carrier-rates", host: "rates.carrier.example.com", path: "/v3/quotes" },
            Call::Service(CURRENCY),
        ],
    },
    Service {
        name: "inventory",
        proto: Proto::Grpc,
        legacy: false,
        language: "java",
        endpoints: &["CheckStock", "Reserve"],
        rpc: "shop.inventory.v1.InventoryService",
        port: 50051,
        calls: &[Call::Db(&INVENTORY_DB)],
    },
    Service {
        name: "pricing",
        proto: Proto::Grpc,
        legacy: false,
        language: "go",
        endpoints: &["GetPrices"],
        rpc: "shop.pricing.v1.PricingService",
        port: 50051,
        calls: &[Call::Service(CURRENCY), Call::Db(&PRICE_CACHE)],
    },
    Service {
        name: "currency",
        proto: Proto::Grpc,
        legacy: false,
        language: "cpp",
        endpoints: &["Convert", "GetSupportedCurrencies"],
        rpc: "shop.currency.v1.CurrencyService",
        port: 7000,
        calls: &[
            Call::External {
                peer: "ecb-rates",
                host: "www.ecb.europa.eu",
                path: "/stats/eurofxref/eurofxref-daily.xml",
            },
            Call::Internal("convertAmount"),
        ],
    },
    Service {
        name: "order",
        proto: Proto::Grpc,
        legacy: true,
        language: "java",
        endpoints: &["CreateOrder", "UpdateStatus"],
        rpc: "shop.order.v1.OrderService",
        port: 50051,
        calls: &[
            Call::Db(&ORDERS_DB),
            Call::Produce { topic: "order-events", consumer: EMAIL, linked: true },
            Call::Produce { topic: "order-events", consumer: EMAIL, linked: true },
        ],
    },
    Service {
        name: "notification",
        proto: Proto::Http,
        legacy: false,
        language: "python",
        endpoints: &["POST /notify"],
        rpc: "",
        port: 8000,
        calls: &[
            Call::Service(USER),
            Call::External { peer: "twilio", host: "api.twilio.com", path: "/2010-04-01/Accounts/Messages.json" },
        ],
    },
    Service {
        name: "email",
        proto: Proto::Http,
        legacy: false,
        language: "ruby",
        endpoints: &["POST /send"],
        rpc: "",
        port: 8080,
        calls: &[
            Call::External { peer: "sendgrid", host: "api.sendgrid.com", path: "/v3/mail/send" },
            Call::Internal("renderTemplate"),
        ],
    },
    Service {
        name: "fraud-detection",
        proto: Proto::Grpc,
        legacy: false,
        language: "kotlin",
        endpoints: &["Score"],
        rpc: "shop.fraud.v1.FraudService",
        port: 50051,
        calls: &[Call::Db(&SESSION_CACHE), Call::Internal("evaluateRules")],
    },
    Service {
        name: "ad",
        proto: Proto::Grpc,
        legacy: false,
        language: "java",
        endpoints: &["GetAds"],
        rpc: "shop.ad.v1.AdService",
        port: 9555,
        calls: &[Call::Db(&PRICE_CACHE), Call::Internal("selectCampaign")],
    },
];

/// Instances per service; each is a resource of its own.
const PODS: usize = 2;
/// Share of traces split over two consecutive batches.
const SPLIT_SHARE: f64 = 0.3;
/// Share of failed requests.
const ERROR_SHARE: f64 = 0.03;

const BROWSERS: [&str; 4] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "ShopApp/5.12.0 (Android 14; Pixel 8) okhttp/4.12.0",
];

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn s(key: &str, v: impl Into<String>) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.into()))
}

fn i(key: &str, v: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(v))
}

fn pod_ip(service: usize, pod: usize) -> String {
    format!("10.42.{}.{}", service + 1, 17 + pod * 23)
}

fn pod_suffix(service: usize, pod: usize) -> String {
    let mut r = Rng::new(((service * PODS + pod) as u64) << 32 | 0x5eed);
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut s = String::new();
    for n in [10, 5] {
        if !s.is_empty() {
            s.push('-');
        }
        s.extend((0..n).map(|_| *r.pick(ALPHABET) as char));
    }
    s
}

fn resource(service: usize, pod: usize) -> Resource {
    let svc = &SERVICES[service];
    let pod_name = format!("{}-{}", svc.name, pod_suffix(service, pod));
    let node = (service * 7 + pod * 3) % 12;
    let attributes = vec![
        s("service.name", svc.name),
        s("service.namespace", "shop"),
        s("service.version", format!("1.{}.{}", 4 + service % 5, (service * 7 + 3) % 19)),
        s("service.instance.id", format!("{pod_name}-{:08x}", Rng::new(service as u64 * 31 + pod as u64).next_u64())),
        s("deployment.environment.name", "production"),
        s("host.name", format!("ip-10-0-{}-{}.eu-west-1.compute.internal", 16 + node, 40 + node * 9)),
        s("k8s.namespace.name", "shop"),
        s("k8s.deployment.name", svc.name),
        s("k8s.pod.name", pod_name),
        s("k8s.node.name", format!("ip-10-0-{}-{}.eu-west-1.compute.internal", 16 + node, 40 + node * 9)),
        s("cloud.provider", "aws"),
        s("cloud.region", "eu-west-1"),
        s("telemetry.sdk.name", "opentelemetry"),
        s("telemetry.sdk.language", svc.language),
        s("telemetry.sdk.version", "1.38.0"),
    ];
    Resource { attributes, ..Default::default() }
}

fn scope(service: usize) -> InstrumentationScope {
    let svc = &SERVICES[service];
    let name = match (svc.language, svc.proto) {
        ("java" | "kotlin", _) => "io.opentelemetry.javaagent",
        ("go", Proto::Http) => "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp",
        ("go", Proto::Grpc) => "go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc",
        ("python", _) => "opentelemetry.instrumentation.auto",
        ("nodejs", _) => "@opentelemetry/auto-instrumentations-node",
        _ => "opentelemetry",
    };
    InstrumentationScope { name: name.into(), version: "0.52.0".into(), ..Default::default() }
}

/// Counts over everything a [`Corpus`] has produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CorpusStats {
    pub batches: u64,
    pub spans: u64,
    pub traces: u64,
    /// Encoded bytes of all batches.
    pub bytes: u64,
}

impl CorpusStats {
    pub fn bytes_per_span(&self) -> f64 {
        if self.spans == 0 { 0.0 } else { self.bytes as f64 / self.spans as f64 }
    }
}

/// A span waiting to be put in a batch, with the resource it belongs to.
#[derive(Debug, Clone)]
struct Pending {
    resource: usize,
    span: Span,
}

/// A span that may still make calls while its trace is being built.
#[derive(Debug, Clone, Copy)]
struct Caller {
    service: usize,
    pod: usize,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    start_ns: u64,
    duration_ns: u64,
    calls_left: u32,
}

/// A deterministic stream of OTLP trace batches.
#[derive(Debug)]
pub struct Corpus {
    rng: Rng,
    resources: Vec<Resource>,
    scopes: Vec<InstrumentationScope>,
    /// Spans held back for the next batch.
    carry: Vec<Pending>,
    clock_ns: u64,
    stats: CorpusStats,
}

/// Where span timestamps start: 2026-01-01T00:00:00Z.
/// The corpus clock's start: 2026-01-01T00:00:00Z.
pub const EPOCH_NS: u64 = 1_767_225_600_000_000_000;

impl Corpus {
    pub fn new(seed: u64) -> Corpus {
        let mut resources = Vec::new();
        for service in 0..SERVICES.len() {
            for pod in 0..PODS {
                resources.push(resource(service, pod));
            }
        }
        Corpus {
            rng: Rng::new(seed ^ 0x7365_7276_6963_656d),
            resources,
            scopes: (0..SERVICES.len()).map(scope).collect(),
            carry: Vec::new(),
            clock_ns: EPOCH_NS,
            stats: CorpusStats::default(),
        }
    }

    /// Names of the services that send spans.
    pub fn services() -> impl Iterator<Item = &'static str> {
        SERVICES.iter().map(|s| s.name)
    }

    pub fn stats(&self) -> CorpusStats {
        self.stats
    }

    /// `n_batches` encoded `ExportTraceServiceRequest`s of exactly
    /// `spans_per_batch` spans each.
    pub fn batches(&mut self, n_batches: usize, spans_per_batch: usize) -> Vec<Vec<u8>> {
        (0..n_batches).map(|_| self.next_batch(spans_per_batch)).collect()
    }

    /// The next encoded batch, of exactly `spans` spans.
    pub fn next_batch(&mut self, spans: usize) -> Vec<u8> {
        let request = self.next_request(spans);
        let bytes = request.encode_to_vec();
        self.stats.batches += 1;
        self.stats.spans += spans as u64;
        self.stats.bytes += bytes.len() as u64;
        bytes
    }

    /// The next batch, not yet encoded.
    pub fn next_request(&mut self, spans: usize) -> ExportTraceServiceRequest {
        let mut now = std::mem::take(&mut self.carry);
        let mut later = Vec::new();
        let mut trace = Vec::new();
        while now.len() < spans {
            trace.clear();
            self.trace(&mut trace);
            self.stats.traces += 1;
            let split = self.rng.chance(SPLIT_SHARE);
            for p in trace.drain(..) {
                if split && self.rng.chance(0.5) { later.push(p) } else { now.push(p) }
            }
        }
        // What does not fit goes first into the next batch.
        if now.len() > spans {
            later.splice(0..0, now.drain(spans..));
        }
        self.carry = later;
        self.encode(now)
    }

    fn encode(&mut self, spans: Vec<Pending>) -> ExportTraceServiceRequest {
        let mut by_resource: Vec<Vec<Span>> = vec![Vec::new(); self.resources.len()];
        for p in spans {
            by_resource[p.resource].push(p.span);
        }
        let mut order: Vec<usize> = (0..by_resource.len()).filter(|&r| !by_resource[r].is_empty()).collect();
        for k in (1..order.len()).rev() {
            order.swap(k, self.rng.below(k + 1));
        }
        let resource_spans = order
            .into_iter()
            .map(|r| ResourceSpans {
                resource: Some(self.resources[r].clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(self.scopes[r / PODS].clone()),
                    spans: std::mem::take(&mut by_resource[r]),
                    schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
                }],
                schema_url: String::new(),
            })
            .collect();
        ExportTraceServiceRequest { resource_spans }
    }

    /// Log-uniform between `lo` and `hi` nanoseconds.
    fn duration(&mut self, lo: f64, hi: f64) -> u64 {
        (lo * (hi / lo).powf(self.rng.unit())) as u64
    }

    fn pod(&mut self) -> usize {
        self.rng.below(PODS)
    }

    /// One trace's spans, in the order they were built.
    fn trace(&mut self, out: &mut Vec<Pending>) {
        let target = self.rng.range(8, 12) as usize;
        let trace_id = self.rng.id::<16>();
        self.clock_ns += self.rng.range(5_000, 50_000);
        let entry = if self.rng.chance(0.6) { FRONTEND } else { MOBILE_BFF };
        let root = Caller {
            service: entry,
            pod: self.pod(),
            trace_id,
            span_id: self.rng.id(),
            start_ns: self.clock_ns,
            duration_ns: self.duration(5e6, 3e9),
            calls_left: 4,
        };
        let failed = self.rng.chance(ERROR_SHARE);
        let browser = *self.rng.pick(&BROWSERS);
        let span = self.server_span(&root, None, failed, browser);
        out.push(Pending { resource: root.service * PODS + root.pod, span });

        let first = out.len();
        let mut callers = vec![root];
        while out.len() - first + 1 < target && !callers.is_empty() {
            // Mostly depth first, so that requests reach the back end.
            let k = if self.rng.chance(0.75) { callers.len() - 1 } else { self.rng.below(callers.len()) };
            let caller = callers[k];
            let calls = SERVICES[caller.service].calls;
            if calls.is_empty() || caller.calls_left == 0 {
                callers.swap_remove(k);
                continue;
            }
            callers[k].calls_left -= 1;
            let call = self.rng.pick(calls);
            if out.len() - first + 1 + call.spans() > target {
                continue;
            }
            if let Some(callee) = self.call(&caller, call, out) {
                callers.push(callee);
            }
        }
    }

    /// Emits the spans of one call; returns the callee when it is instrumented.
    fn call(&mut self, caller: &Caller, call: &Call, out: &mut Vec<Pending>) -> Option<Caller> {
        let at = caller.resource();
        let start_ns = caller.start_ns + self.rng.range(0, caller.duration_ns / 2);
        let duration_ns = self.duration(3e5, (caller.duration_ns / 2).max(400_000) as f64);
        let failed = self.rng.chance(ERROR_SHARE);
        let client_id = self.rng.id();
        match *call {
            Call::Service(callee) => {
                let net = self.rng.range(100_000, 900_000);
                let server = Caller {
                    service: callee,
                    pod: self.pod(),
                    trace_id: caller.trace_id,
                    span_id: self.rng.id(),
                    start_ns: start_ns + net / 2,
                    duration_ns: duration_ns.saturating_sub(net).max(50_000),
                    calls_left: self.rng.range(1, 3) as u32,
                };
                let span = self.client_span(caller, &server, client_id, start_ns, duration_ns, failed);
                out.push(Pending { resource: at, span });
                let ua =
                    if SERVICES[caller.service].language == "java" { "okhttp/4.12.0" } else { "Go-http-client/1.1" };
                let span = self.server_span(&server, Some(client_id), failed, ua);
                out.push(Pending { resource: server.resource(), span });
                Some(server)
            }
            Call::Db(db) => {
                let failed = failed && self.rng.chance(0.3);
                let span = self.db_span(caller, db, client_id, start_ns, duration_ns, failed);
                out.push(Pending { resource: at, span });
                None
            }
            Call::External { peer, host, path } => {
                let span = self.external_span(caller, peer, host, path, client_id, start_ns, duration_ns, failed);
                out.push(Pending { resource: at, span });
                None
            }
            Call::Produce { topic, consumer, linked } => {
                let producer = self.producer_span(caller, topic, client_id, start_ns);
                let consumer = Caller {
                    service: consumer,
                    pod: self.pod(),
                    trace_id: if linked { self.rng.id() } else { caller.trace_id },
                    span_id: self.rng.id(),
                    start_ns: start_ns + self.duration(1e6, 5e8),
                    duration_ns: self.duration(1e6, 2e8),
                    calls_left: self.rng.range(1, 2) as u32,
                };
                out.push(Pending { resource: at, span: producer });
                let span = self.consumer_span(&consumer, topic, caller.trace_id, client_id, linked, failed);
                out.push(Pending { resource: consumer.resource(), span });
                Some(consumer)
            }
            Call::Internal(function) => {
                let span = self.internal_span(caller, function, client_id, start_ns, duration_ns);
                out.push(Pending { resource: at, span });
                None
            }
        }
    }

    fn base_span(c: &Caller, span_id: [u8; 8], parent: Option<[u8; 8]>, name: String, kind: span::SpanKind) -> Span {
        Span {
            trace_id: c.trace_id.to_vec(),
            span_id: span_id.to_vec(),
            parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
            flags: 0x301,
            name,
            kind: kind as i32,
            start_time_unix_nano: c.start_ns,
            end_time_unix_nano: c.start_ns + c.duration_ns,
            ..Default::default()
        }
    }

    fn status(failed: bool, message: &str) -> Option<Status> {
        failed.then(|| Status { code: status::StatusCode::Error as i32, message: message.into() })
    }

    /// A request served by `c`, over its protocol.
    fn server_span(&mut self, c: &Caller, parent: Option<[u8; 8]>, failed: bool, user_agent: &str) -> Span {
        let svc = &SERVICES[c.service];
        let endpoint = *self.rng.pick(svc.endpoints);
        let mut span;
        if svc.proto == Proto::Grpc {
            span = Self::base_span(c, c.span_id, parent, format!("{}/{}", svc.rpc, endpoint), span::SpanKind::Server);
            span.attributes = vec![
                s("rpc.system", "grpc"),
                s("rpc.service", svc.rpc),
                s("rpc.method", endpoint),
                i("rpc.grpc.status_code", if failed { 13 } else { 0 }),
                s("server.address", svc.name),
                i("server.port", svc.port),
                s("network.peer.address", format!("10.42.{}.{}", self.rng.range(1, 20), self.rng.range(2, 250))),
                i("network.peer.port", self.rng.range(32768, 60999) as i64),
                s("network.transport", "tcp"),
                s("network.type", "ipv4"),
            ];
        } else {
            let (method, route) = endpoint.split_once(' ').unwrap_or(("GET", endpoint));
            let path = route.replace("{id}", &self.rng.range(1000, 99999).to_string());
            let code = if failed { 500 } else { 200 };
            span = Self::base_span(c, c.span_id, parent, format!("{method} {route}"), span::SpanKind::Server);
            span.attributes = if svc.legacy {
                vec![
                    s("http.method", method),
                    s("http.route", route),
                    s("http.target", path),
                    s("http.scheme", "http"),
                    i("http.status_code", code),
                    s("net.host.name", format!("{}.shop.svc.cluster.local", svc.name)),
                    i("net.host.port", svc.port),
                    s("net.sock.peer.addr", pod_ip(self.rng.below(20), 0)),
                    s("http.user_agent", user_agent),
                    s("http.flavor", "1.1"),
                ]
            } else {
                vec![
                    s("http.request.method", method),
                    s("http.route", route),
                    s("url.path", path),
                    s("url.scheme", "http"),
                    i("http.response.status_code", code),
                    s("server.address", format!("{}.shop.svc.cluster.local", svc.name)),
                    i("server.port", svc.port),
                    s("client.address", pod_ip(self.rng.below(20), 0)),
                    s("user_agent.original", user_agent),
                    s("network.protocol.version", "1.1"),
                ]
            };
        }
        span.status = Self::status(failed, "internal error");
        span
    }

    /// The client side of a call from `c` to the instrumented `server`.
    fn client_span(&mut self, c: &Caller, server: &Caller, id: [u8; 8], start: u64, dur: u64, failed: bool) -> Span {
        let callee = &SERVICES[server.service];
        let me = Caller { start_ns: start, duration_ns: dur, ..*c };
        let endpoint = *self.rng.pick(callee.endpoints);
        let peer_ip = pod_ip(server.service, server.pod);
        let mut span;
        if callee.proto == Proto::Grpc {
            span = Self::base_span(
                &me,
                id,
                Some(c.span_id),
                format!("{}/{}", callee.rpc, endpoint),
                span::SpanKind::Client,
            );
            span.attributes = vec![
                s("rpc.system", "grpc"),
                s("rpc.service", callee.rpc),
                s("rpc.method", endpoint),
                i("rpc.grpc.status_code", if failed { 13 } else { 0 }),
                s("server.address", format!("{}.shop.svc.cluster.local", callee.name)),
                i("server.port", callee.port),
                s("network.peer.address", peer_ip),
                i("network.peer.port", callee.port),
                s("network.transport", "tcp"),
            ];
        } else {
            let (method, route) = endpoint.split_once(' ').unwrap_or(("GET", endpoint));
            let path = route.replace("{id}", &self.rng.range(1000, 99999).to_string());
            let host = format!("{}.shop.svc.cluster.local", callee.name);
            let code = if failed { 500 } else { 200 };
            span = Self::base_span(&me, id, Some(c.span_id), method.to_string(), span::SpanKind::Client);
            span.attributes = if SERVICES[c.service].legacy {
                vec![
                    s("http.method", method),
                    s("http.url", format!("http://{host}:{}{path}", callee.port)),
                    i("http.status_code", code),
                    s("net.peer.name", host),
                    i("net.peer.port", callee.port),
                    s("net.sock.peer.addr", peer_ip),
                    s("http.flavor", "1.1"),
                    s("thread.name", format!("http-nio-exec-{}", self.rng.range(1, 32))),
                ]
            } else {
                vec![
                    s("http.request.method", method),
                    s("url.full", format!("http://{host}:{}{path}", callee.port)),
                    i("http.response.status_code", code),
                    s("server.address", host),
                    i("server.port", callee.port),
                    s("network.peer.address", peer_ip),
                    i("network.peer.port", callee.port),
                    s("network.protocol.version", "1.1"),
                ]
            };
        }
        span.status = Self::status(failed, "");
        span
    }

    fn db_span(&mut self, c: &Caller, db: &Database, id: [u8; 8], start: u64, dur: u64, failed: bool) -> Span {
        let me = Caller { start_ns: start, duration_ns: dur / 4 + 20_000, ..*c };
        let name = if db.collection.is_empty() {
            db.operation.to_string()
        } else {
            format!("{} {}.{}", db.operation, db.namespace, db.collection)
        };
        let mut span = Self::base_span(&me, id, Some(c.span_id), name, span::SpanKind::Client);
        span.attributes = vec![
            s("db.system", db.system),
            s("db.namespace", db.namespace),
            s("db.operation.name", db.operation),
            s("db.query.text", db.query),
            s("server.address", db.host),
            i("server.port", db.port),
            s("network.peer.address", format!("10.42.100.{}", 10 + db.port % 7)),
            i("network.peer.port", db.port),
        ];
        if !db.collection.is_empty() {
            span.attributes.push(s("db.collection.name", db.collection));
        }
        span.status = Self::status(failed, "connection reset by peer");
        span
    }

    #[allow(clippy::too_many_arguments)]
    fn external_span(
        &mut self,
        c: &Caller,
        peer: &str,
        host: &str,
        path: &str,
        id: [u8; 8],
        start: u64,
        dur: u64,
        failed: bool,
    ) -> Span {
        let me = Caller { start_ns: start, duration_ns: dur, ..*c };
        let mut span = Self::base_span(&me, id, Some(c.span_id), "POST".into(), span::SpanKind::Client);
        span.attributes = vec![
            s("peer.service", peer),
            s("http.request.method", "POST"),
            s("url.full", format!("https://{host}{path}")),
            i("http.response.status_code", if failed { 503 } else { 200 }),
            s("server.address", host),
            i("server.port", 443),
            s("network.peer.address", format!("52.{}.{}.{}", 10 + peer.len(), self.rng.range(1, 254), 7)),
            i("network.peer.port", 443),
            s("network.protocol.version", "2"),
        ];
        span.status = Self::status(failed, "upstream unavailable");
        span
    }

    fn producer_span(&mut self, c: &Caller, topic: &str, id: [u8; 8], start: u64) -> Span {
        let me = Caller { start_ns: start, duration_ns: self.duration(2e5, 5e6), ..*c };
        let mut span = Self::base_span(&me, id, Some(c.span_id), format!("publish {topic}"), span::SpanKind::Producer);
        span.attributes = vec![
            s("messaging.system", "kafka"),
            s("messaging.destination.name", topic),
            s("messaging.operation.type", "publish"),
            s("messaging.client.id", format!("{}-producer-1", SERVICES[c.service].name)),
            s("messaging.kafka.message.key", format!("order-{}", self.rng.range(100_000, 999_999))),
            s("messaging.destination.partition.id", self.rng.below(12).to_string()),
            s("server.address", "kafka-0.kafka.data.svc.cluster.local"),
            i("server.port", 9092),
        ];
        span
    }

    fn consumer_span(
        &mut self,
        c: &Caller,
        topic: &str,
        producer_trace: [u8; 16],
        producer: [u8; 8],
        linked: bool,
        failed: bool,
    ) -> Span {
        let parent = (!linked).then_some(producer);
        let mut span = Self::base_span(c, c.span_id, parent, format!("process {topic}"), span::SpanKind::Consumer);
        span.attributes = vec![
            s("messaging.system", "kafka"),
            s("messaging.destination.name", topic),
            s("messaging.operation.type", "process"),
            s("messaging.consumer.group.name", SERVICES[c.service].name),
            s("messaging.client.id", format!("{}-consumer-{}", SERVICES[c.service].name, c.pod + 1)),
            i("messaging.kafka.offset", self.rng.range(1_000_000, 9_999_999) as i64),
            s("messaging.destination.partition.id", self.rng.below(12).to_string()),
            s("server.address", "kafka-0.kafka.data.svc.cluster.local"),
            i("server.port", 9092),
        ];
        if linked {
            span.links = vec![span::Link {
                trace_id: producer_trace.to_vec(),
                span_id: producer.to_vec(),
                flags: 0x301,
                ..Default::default()
            }];
        }
        span.status = Self::status(failed, "handler failed");
        span
    }

    fn internal_span(&mut self, c: &Caller, function: &str, id: [u8; 8], start: u64, dur: u64) -> Span {
        let me = Caller { start_ns: start, duration_ns: dur / 3 + 10_000, ..*c };
        let svc = &SERVICES[c.service];
        let mut span = Self::base_span(&me, id, Some(c.span_id), function.into(), span::SpanKind::Internal);
        span.attributes = vec![
            s("code.function.name", function),
            s("code.file.path", format!("/app/src/{}/handlers.{}", svc.name, svc.language)),
            i("code.line.number", 40 + (function.len() as i64 * 13) % 400),
            s("thread.name", format!("worker-{}", self.rng.range(1, 16))),
            i("thread.id", self.rng.range(20, 80) as i64),
        ];
        span
    }
}

impl Caller {
    fn resource(&self) -> usize {
        self.service * PODS + self.pod
    }
}
