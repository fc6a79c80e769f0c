// Package workload makes realistic trace traffic for the side-by-side
// benchmarks: services calling each other over HTTP, some database calls
// and some calls to uninstrumented peers, with spans carrying about ten
// attributes (about 400 bytes each once encoded), in batches the way a
// collector receives them from many SDKs.
package workload

import (
	"encoding/binary"
	"fmt"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/servicemap/servicemap/go-shim/internal/traffic"
)

// Options shape the traffic.
type Options struct {
	Services   int     // distinct services (default 20)
	BatchSpans int     // spans per batch (about; a call's two spans may straddle batches)
	Batches    int     // how many batches
	Seed       uint64  // the same seed gives the same traffic
	CrossBatch float64 // share of calls whose server span arrives one batch after the client span (default 0.3)
	Lone       float64 // share of calls to an uninstrumented peer: a client span only (default 0.03)
	Database   float64 // share of database calls: a client span only (default 0.05)
}

func (o *Options) defaults() {
	if o.Services == 0 {
		o.Services = 20
	}
	if o.CrossBatch == 0 {
		o.CrossBatch = 0.3
	}
	if o.Lone == 0 {
		o.Lone = 0.03
	}
	if o.Database == 0 {
		o.Database = 0.05
	}
}

// Dimensions are the two extra labels both peers are configured with: one
// found on resources, one on spans.
var Dimensions = []string{"deployment.environment", "http.request.method"}

var (
	methods = []string{"GET", "GET", "GET", "POST", "PUT", "DELETE"}
	routes  = []string{"/api/v2/orders/{id}", "/api/v2/carts/{id}/items", "/api/v1/users/{id}", "/healthz", "/api/v2/search"}
	codes   = []int64{200, 200, 200, 200, 201, 204, 404, 500, 503}
	envs    = []string{"prod", "prod", "canary"}
)

type gen struct {
	o   Options
	r   *traffic.Rand
	now uint64
}

// ServiceName is the name of service i.
func ServiceName(i int) string { return fmt.Sprintf("svc-%02d", i) }

type span struct {
	svc    int
	client bool
	build  func(s ptrace.Span)
}

// Batches returns o.Batches batches of traffic.
func Batches(o Options) []ptrace.Traces {
	o.defaults()
	g := &gen{o: o, r: traffic.New(o.Seed, 0xb47c4), now: 1_790_000_000_000_000_000}
	perBatch := make([][]span, o.Batches+1)
	fill := make([]int, o.Batches+1)
	b := 0
	for b < o.Batches {
		for _, c := range g.call() {
			at := b
			if !c.client && c.svc >= 0 && g.r.Chance(o.CrossBatch) {
				at = b + 1
			}
			perBatch[at] = append(perBatch[at], c)
			fill[at]++
		}
		if fill[b] >= o.BatchSpans {
			b++
		}
	}
	out := make([]ptrace.Traces, o.Batches)
	for i := range out {
		out[i] = g.layout(perBatch[i])
	}
	return out
}

// call makes the spans of one call: a client span and usually the server
// span answering it, in one trace.
func (g *gen) call() []span {
	r := g.r
	n := g.o.Services
	from := r.IntN(n)
	to := (from + 1 + r.IntN(n-1)) % n
	trace := r.TraceID()
	clientID, serverID, parentID := r.SpanID(), r.SpanID(), r.SpanID()
	g.now += uint64(r.IntN(200_000))
	start := g.now
	clientDur := uint64(200_000 + r.IntN(300_000_000))
	serverDur := clientDur - clientDur/10
	method := methods[r.IntN(len(methods))]
	route := routes[r.IntN(len(routes))]
	code := codes[r.IntN(len(codes))]
	host := ServiceName(to) + ".shop.svc"
	errored := code >= 500

	kind := r.Float64()
	client := span{svc: from, client: true, build: func(s ptrace.Span) {
		s.SetTraceID(trace)
		s.SetSpanID(clientID)
		s.SetParentSpanID(parentID)
		s.SetKind(ptrace.SpanKindClient)
		s.SetStartTimestamp(pcommon.Timestamp(start))
		s.SetEndTimestamp(pcommon.Timestamp(start + clientDur))
		a := s.Attributes()
		switch {
		case kind < g.o.Database:
			s.SetName("SELECT orders")
			a.PutStr("db.system.name", "postgresql")
			a.PutStr("db.namespace", "orders")
			a.PutStr("db.operation.name", "SELECT")
			a.PutStr("db.query.text", "SELECT id, status, total FROM orders WHERE customer_id = $1 LIMIT 50")
			a.PutStr("server.address", "orders-db.shop.svc.cluster.local")
			a.PutInt("server.port", 5432)
			a.PutStr("network.peer.address", "10.12.7.41")
			a.PutInt("network.peer.port", 5432)
			a.PutStr("db.collection.name", "orders")
			a.PutStr("thread.name", "pool-2-thread-7")
			return
		case kind < g.o.Database+g.o.Lone:
			a.PutStr("peer.service", "payments-gateway")
			host = "api.payments.example.com"
		}
		s.SetName(method)
		a.PutStr("http.request.method", method)
		a.PutStr("url.full", "https://"+host+":8443"+route+"?expand=items")
		a.PutStr("server.address", host)
		a.PutInt("server.port", 8443)
		a.PutStr("network.protocol.name", "http")
		a.PutStr("network.protocol.version", "1.1")
		a.PutInt("http.response.status_code", code)
		a.PutStr("user_agent.original", "shop-client/3.2.1")
		a.PutInt("http.request.body.size", int64(r.IntN(4096)))
		a.PutStr("thread.name", "exec-12")
		if errored {
			s.Status().SetCode(ptrace.StatusCodeError)
		}
	}}
	if kind < g.o.Database+g.o.Lone {
		return []span{client}
	}
	server := span{svc: to, build: func(s ptrace.Span) {
		s.SetTraceID(trace)
		s.SetSpanID(serverID)
		s.SetParentSpanID(clientID)
		s.SetKind(ptrace.SpanKindServer)
		s.SetName(method + " " + route)
		s.SetStartTimestamp(pcommon.Timestamp(start + clientDur/20))
		s.SetEndTimestamp(pcommon.Timestamp(start + clientDur/20 + serverDur))
		a := s.Attributes()
		a.PutStr("http.request.method", method)
		a.PutStr("http.route", route)
		a.PutStr("url.path", route)
		a.PutStr("url.scheme", "https")
		a.PutStr("server.address", host)
		a.PutInt("server.port", 8443)
		a.PutStr("client.address", "10.12.3.17")
		a.PutStr("network.peer.address", "10.12.3.17")
		a.PutInt("http.response.status_code", code)
		a.PutStr("user_agent.original", "shop-client/3.2.1")
		if errored {
			s.Status().SetCode(ptrace.StatusCodeError)
		}
	}}
	return []span{client, server}
}

// layout groups a batch's spans by service, one resource per service, as an
// SDK exports them.
func (g *gen) layout(spans []span) ptrace.Traces {
	td := ptrace.NewTraces()
	by := map[int]ptrace.SpanSlice{}
	for _, s := range spans {
		ss, ok := by[s.svc]
		if !ok {
			rs := td.ResourceSpans().AppendEmpty()
			Resource(s.svc, rs.Resource().Attributes())
			sc := rs.ScopeSpans().AppendEmpty()
			sc.Scope().SetName("io.opentelemetry.http")
			sc.Scope().SetVersion("2.9.0")
			ss = sc.Spans()
			by[s.svc] = ss
		}
		s.build(ss.AppendEmpty())
	}
	return td
}

// Resource writes the resource attributes of service i.
func Resource(i int, m pcommon.Map) {
	m.PutStr("service.name", ServiceName(i))
	m.PutStr("service.version", "1.27.3")
	m.PutStr("service.namespace", "shop")
	m.PutStr("deployment.environment", envs[i%len(envs)])
	m.PutStr("host.name", fmt.Sprintf("node-%d.cluster.local", i%5))
	m.PutStr("k8s.pod.name", fmt.Sprintf("%s-7d9f8b6c4-x%02d", ServiceName(i), i))
	m.PutStr("k8s.namespace.name", "shop")
	m.PutStr("telemetry.sdk.language", "java")
	m.PutStr("telemetry.sdk.name", "opentelemetry")
	m.PutStr("telemetry.sdk.version", "1.44.1")
}

// Renumber rewrites the trace IDs of every span so that replaying batches
// is new traffic rather than repeats of spans already seen. The two spans of
// a call keep sharing their trace.
func Renumber(batches []ptrace.Traces, pass uint64) {
	for _, td := range batches {
		rss := td.ResourceSpans()
		for i := 0; i < rss.Len(); i++ {
			sss := rss.At(i).ScopeSpans()
			for j := 0; j < sss.Len(); j++ {
				spans := sss.At(j).Spans()
				for k := 0; k < spans.Len(); k++ {
					s := spans.At(k)
					id := s.TraceID()
					binary.LittleEndian.PutUint64(id[8:], pass)
					s.SetTraceID(id)
				}
			}
		}
	}
}

// LoneClients returns n client spans, in batches of batchSpans, none of
// which will ever find its server: what waits in a store.
func LoneClients(n, batchSpans int, seed uint64) []ptrace.Traces {
	o := Options{Services: 20, Seed: seed}
	o.defaults()
	// Only calls that wait for a server: no database calls (those complete
	// at once) and no peer attributes.
	o.Database, o.Lone = -1, 0
	g := &gen{o: o, r: traffic.New(seed, 0x10e), now: 1_790_000_000_000_000_000}
	var out []ptrace.Traces
	for n > 0 {
		k := min(n, batchSpans)
		spans := make([]span, 0, k)
		for len(spans) < k {
			c := g.call()[0]
			if c.client {
				spans = append(spans, c)
			}
		}
		out = append(out, g.layout(spans))
		n -= k
	}
	return out
}
