// Command demotraffic sends synthetic traces of a small shop to a local
// collector over OTLP/HTTP (protobuf), so that the service graph has
// something to show. It only talks to loopback addresses and stops by itself.
//
// Topology (every arrow is a client/server or producer/consumer pair):
//
//	user -> frontend -HTTP-> checkout -gRPC-> payment -HTTP-> payments-gateway (uninstrumented, peer.service)
//	                           checkout -> postgres (db.system=postgresql, db.namespace=orders)
//	                           checkout -kafka-> shipping
//
// With -rollout-at, payment is rolled out at a new version partway through
// the run, so that the map shows a deploy.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/servicemap/servicemap/go-shim/internal/traffic"
)

func main() {
	endpoint := flag.String("endpoint", "http://localhost:4318/v1/traces", "OTLP/HTTP traces URL (loopback only)")
	rate := flag.Float64("rate", 20, "traces per second (0 < rate <= 10000)")
	duration := flag.Duration("duration", time.Minute, "how long to send (0 < duration <= 24h)")
	errorRate := flag.Float64("error-rate", 0.05, "fraction of checkouts whose payment fails")
	seed := flag.Uint64("seed", 1, "random seed")
	rolloutAt := flag.Float64("rollout-at", 0, "share of the duration after which payment runs a new version (0: never)")
	flag.Parse()

	if err := run(*endpoint, *rate, *duration, *errorRate, *seed, *rolloutAt); err != nil {
		fmt.Fprintln(os.Stderr, "demotraffic:", err)
		os.Exit(1)
	}
}

func run(endpoint string, rate float64, duration time.Duration, errorRate float64, seed uint64, rolloutAt float64) error {
	if !(rate > 0 && rate <= 10000) {
		return fmt.Errorf("-rate must be in (0, 10000], got %v", rate)
	}
	if duration <= 0 || duration > 24*time.Hour {
		return fmt.Errorf("-duration must be in (0, 24h], got %s", duration)
	}
	if errorRate < 0 || errorRate > 1 {
		return fmt.Errorf("-error-rate must be in [0, 1], got %v", errorRate)
	}
	if rolloutAt < 0 || rolloutAt >= 1 {
		return fmt.Errorf("-rollout-at must be in [0, 1), got %v", rolloutAt)
	}
	if err := checkLoopback(endpoint); err != nil {
		return err
	}

	// An interrupt stops everything at once; the end of the run lets the
	// requests of the last tick finish, so that no trace is sent half.
	interrupted, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(interrupted, duration)
	defer cancel()

	s := &sender{endpoint: endpoint, client: loopbackClient()}
	g := &generator{rng: traffic.New(seed, seed^0x9e3779b97f4a7c15), errorRate: errorRate}

	const tick = 100 * time.Millisecond
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	fmt.Printf("demotraffic: %.1f traces/s to %s for %s\n", rate, endpoint, duration)

	start := time.Now()
	rollout := time.Duration(rolloutAt * float64(duration))
	var due float64
	var traces, failed int
	for {
		select {
		case <-ctx.Done():
			fmt.Printf("demotraffic: sent %d traces (%d with errors) in %d requests, %d requests failed\n", traces, failed, s.requests, s.failures)
			if s.requests > 0 && s.failures == s.requests {
				return fmt.Errorf("every request failed; last error: %v", s.lastErr)
			}
			return nil
		case <-ticker.C:
		}
		if rolloutAt > 0 && !g.rolledOut && time.Since(start) >= rollout {
			g.rolledOut = true
			fmt.Printf("demotraffic: %s rolled out at version %s after %d traces\n", paymentNext.name, paymentNext.version, traces)
		}
		due += rate * tick.Seconds()
		n := int(due)
		due -= float64(n)
		if n == 0 {
			continue
		}
		batches := map[string]ptrace.Traces{}
		now := time.Now()
		for i := 0; i < n; i++ {
			if g.checkout(now, batches) {
				failed++
			}
		}
		traces += n
		// One request per service, in random order, as separate SDKs would send.
		names := make([]string, 0, len(batches))
		for name := range batches {
			names = append(names, name)
		}
		g.rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
		for _, name := range names {
			s.send(interrupted, batches[name])
		}
	}
}

// checkLoopback refuses any endpoint that is not on this machine.
func checkLoopback(endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return fmt.Errorf("-endpoint: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("-endpoint must be an http(s) URL, got %q", endpoint)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("-endpoint must be a loopback address (localhost, 127.0.0.1, ::1), got %q", host)
}

// loopbackClient refuses to connect anywhere but a loopback address, whatever
// a name resolves to.
func loopbackClient() *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.Proxy = nil
	transport.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if tcp, ok := conn.RemoteAddr().(*net.TCPAddr); !ok || !tcp.IP.IsLoopback() {
			_ = conn.Close()
			return nil, fmt.Errorf("refusing non-loopback address %s", conn.RemoteAddr())
		}
		return conn, nil
	}
	return &http.Client{Transport: transport, Timeout: 10 * time.Second}
}

type sender struct {
	endpoint string
	client   *http.Client
	requests int
	failures int
	lastErr  error
}

func (s *sender) send(ctx context.Context, td ptrace.Traces) {
	s.requests++
	body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err == nil {
		err = s.post(ctx, body)
	}
	if err != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) && !errors.Is(ctx.Err(), context.Canceled) {
		s.failures++
		if s.lastErr == nil || s.failures%50 == 1 {
			fmt.Fprintf(os.Stderr, "demotraffic: request failed (%d so far): %v\n", s.failures, err)
		}
		s.lastErr = err
	}
}

func (s *sender) post(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.endpoint, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// service describes one instrumented service's resource.
type service struct {
	name, version, language string
}

var (
	frontend = service{"frontend", "2.3.1", "nodejs"}
	checkout = service{"checkout", "1.8.0", "go"}
	payment  = service{"payment", "0.9.4", "java"}
	shipping = service{"shipping", "3.0.2", "python"}
	// payment after the rollout.
	paymentNext = service{"payment", "0.10.0", "java"}
)

type generator struct {
	rng       *traffic.Rand
	errorRate float64
	// rolledOut: payment runs paymentNext's version.
	rolledOut bool
}

// payment is the payment service as it runs now.
func (g *generator) payment() service {
	if g.rolledOut {
		return paymentNext
	}
	return payment
}

// spanSpec is one span to write.
type spanSpec struct {
	id         pcommon.SpanID
	svc        service
	name       string
	kind       ptrace.SpanKind
	parent     pcommon.SpanID
	start, end time.Time
	failed     bool
	attrs      map[string]any
}

// checkout writes one checkout request into batches (one ptrace.Traces per
// service) and reports whether it failed.
func (g *generator) checkout(now time.Time, batches map[string]ptrace.Traces) bool {
	trace := g.rng.TraceID()
	payFails := g.rng.Chance(g.errorRate)
	gatewayFails := !payFails && g.rng.Chance(g.errorRate/2)

	t0 := now.Add(-g.rng.Between(400*time.Millisecond, 900*time.Millisecond))
	feServer, feClient := g.rng.SpanID(), g.rng.SpanID()
	coServer, coDB, coPay, coProduce := g.rng.SpanID(), g.rng.SpanID(), g.rng.SpanID(), g.rng.SpanID()
	payServer, payGateway := g.rng.SpanID(), g.rng.SpanID()
	shipConsume := g.rng.SpanID()

	// Timeline, inside out.
	feClientStart := t0.Add(g.rng.Between(time.Millisecond, 5*time.Millisecond))
	coServerStart := feClientStart.Add(g.rng.Between(500*time.Microsecond, 2*time.Millisecond))
	dbStart := coServerStart.Add(g.rng.Between(time.Millisecond, 3*time.Millisecond))
	dbEnd := dbStart.Add(g.rng.Between(2*time.Millisecond, 25*time.Millisecond))
	payStart := dbEnd.Add(g.rng.Between(500*time.Microsecond, 2*time.Millisecond))
	payServerStart := payStart.Add(g.rng.Between(300*time.Microsecond, time.Millisecond))
	gwStart := payServerStart.Add(g.rng.Between(time.Millisecond, 3*time.Millisecond))
	gwEnd := gwStart.Add(g.rng.Between(30*time.Millisecond, 180*time.Millisecond))
	if gatewayFails {
		gwEnd = gwStart.Add(250 * time.Millisecond) // client-side timeout
	}
	payServerEnd := gwEnd.Add(g.rng.Between(time.Millisecond, 4*time.Millisecond))
	payEnd := payServerEnd.Add(g.rng.Between(300*time.Microsecond, time.Millisecond))
	produceStart := payEnd.Add(g.rng.Between(500*time.Microsecond, 2*time.Millisecond))
	produceEnd := produceStart.Add(g.rng.Between(time.Millisecond, 4*time.Millisecond))
	coServerEnd := produceEnd.Add(g.rng.Between(500*time.Microsecond, 2*time.Millisecond))
	feClientEnd := coServerEnd.Add(g.rng.Between(500*time.Microsecond, 2*time.Millisecond))
	feServerEnd := feClientEnd.Add(g.rng.Between(time.Millisecond, 5*time.Millisecond))
	consumeStart := produceEnd.Add(g.rng.Between(5*time.Millisecond, 60*time.Millisecond))
	consumeEnd := consumeStart.Add(g.rng.Between(10*time.Millisecond, 40*time.Millisecond))

	failed := payFails || gatewayFails
	status := 200
	if failed {
		status = 502
	}
	specs := []spanSpec{
		{id: feServer, svc: frontend, name: "GET /checkout", kind: ptrace.SpanKindServer,
			start: t0, end: feServerEnd, failed: failed,
			attrs: map[string]any{"http.request.method": "GET", "http.route": "/checkout", "http.response.status_code": status}},
		{id: feClient, svc: frontend, name: "POST", kind: ptrace.SpanKindClient, parent: feServer,
			start: feClientStart, end: feClientEnd, failed: failed,
			attrs: map[string]any{"http.request.method": "POST", "server.address": "checkout", "url.full": "http://checkout:8080/api/checkout", "http.response.status_code": status}},
		{id: coServer, svc: checkout, name: "POST /api/checkout", kind: ptrace.SpanKindServer, parent: feClient,
			start: coServerStart, end: coServerEnd, failed: failed,
			attrs: map[string]any{"http.request.method": "POST", "http.route": "/api/checkout", "http.response.status_code": status}},
		{id: coDB, svc: checkout, name: "SELECT orders.carts", kind: ptrace.SpanKindClient, parent: coServer,
			start: dbStart, end: dbEnd,
			attrs: map[string]any{"db.system": "postgresql", "db.system.name": "postgresql", "db.namespace": "orders",
				"db.operation.name": "SELECT", "db.collection.name": "carts", "server.address": "postgres", "server.port": 5432}},
		{id: coPay, svc: checkout, name: "payment.PaymentService/Charge", kind: ptrace.SpanKindClient, parent: coServer,
			start: payStart, end: payEnd, failed: failed,
			attrs: map[string]any{"rpc.system": "grpc", "rpc.service": "payment.PaymentService", "rpc.method": "Charge", "server.address": "payment"}},
		{id: payServer, svc: g.payment(), name: "payment.PaymentService/Charge", kind: ptrace.SpanKindServer, parent: coPay,
			start: payServerStart, end: payServerEnd, failed: failed,
			attrs: map[string]any{"rpc.system": "grpc", "rpc.service": "payment.PaymentService", "rpc.method": "Charge"}},
		{id: payGateway, svc: g.payment(), name: "POST", kind: ptrace.SpanKindClient, parent: payServer,
			start: gwStart, end: gwEnd, failed: gatewayFails,
			attrs: map[string]any{"peer.service": "payments-gateway", "http.request.method": "POST",
				"server.address": "api.payments-gateway.example", "url.full": "https://api.payments-gateway.example/v1/charges"}},
	}
	if !failed {
		specs = append(specs,
			spanSpec{id: coProduce, svc: checkout, name: "publish shipments", kind: ptrace.SpanKindProducer, parent: coServer,
				start: produceStart, end: produceEnd,
				attrs: map[string]any{"messaging.system": "kafka", "messaging.destination.name": "shipments", "messaging.operation.type": "send"}},
			spanSpec{id: shipConsume, svc: shipping, name: "process shipments", kind: ptrace.SpanKindConsumer, parent: coProduce,
				start: consumeStart, end: consumeEnd,
				attrs: map[string]any{"messaging.system": "kafka", "messaging.destination.name": "shipments", "messaging.operation.type": "process"}},
		)
	}
	for _, s := range specs {
		appendSpan(batches, trace, s)
	}
	return failed
}

// appendSpan adds a span under its service's resource in batches.
func appendSpan(batches map[string]ptrace.Traces, trace pcommon.TraceID, s spanSpec) {
	td, ok := batches[s.svc.name]
	if !ok {
		td = ptrace.NewTraces()
		rs := td.ResourceSpans().AppendEmpty()
		res := rs.Resource().Attributes()
		res.PutStr("service.name", s.svc.name)
		res.PutStr("service.version", s.svc.version)
		res.PutStr("service.namespace", "shop")
		res.PutStr("deployment.environment.name", "demo")
		res.PutStr("deployment.environment", "demo")
		res.PutStr("telemetry.sdk.language", s.svc.language)
		scope := rs.ScopeSpans().AppendEmpty().Scope()
		scope.SetName("demotraffic")
		batches[s.svc.name] = td
	}
	span := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().AppendEmpty()
	span.SetTraceID(trace)
	span.SetSpanID(s.id)
	if !s.parent.IsEmpty() {
		span.SetParentSpanID(s.parent)
	}
	span.SetName(s.name)
	span.SetKind(s.kind)
	span.SetStartTimestamp(pcommon.NewTimestampFromTime(s.start))
	span.SetEndTimestamp(pcommon.NewTimestampFromTime(s.end))
	for k, v := range s.attrs {
		switch x := v.(type) {
		case int:
			span.Attributes().PutInt(k, int64(x))
		case string:
			span.Attributes().PutStr(k, x)
		default:
			span.Attributes().PutStr(k, fmt.Sprint(x))
		}
	}
	if s.failed {
		span.Status().SetCode(ptrace.StatusCodeError)
	}
}
