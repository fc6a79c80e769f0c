package conformance

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/servicemap/servicemap/go-shim/internal/traffic"
)

// step is one thing that happens to both peers: a batch of spans arrives, or
// every half-edge still waiting expires.
type step struct {
	traces ptrace.Traces
	expire bool
}

func (s step) String() string {
	if s.expire {
		return "expire"
	}
	return fmt.Sprintf("batch of %d spans", s.traces.SpanCount())
}

// The two dimensions of the differential runs: one set on the resource for
// some services and on spans for others, one set on spans with values of
// several types.
const (
	dimEnv    = "deployment.environment"
	dimStatus = "http.response.status_code"
)

var (
	serviceNames  = []string{"frontend", "checkout", "cart", "payment", "inventory", "shipping", "auth", "search"}
	externalPeers = []string{"payments-api", "geo-lookup", "mail-relay"}
	environments  = []string{"prod", "canary", "staging"}
)

// genSpan is a span before it is laid out into a batch.
type genSpan struct {
	service int // index into serviceNames; -1: a resource without service.name
	trace   pcommon.TraceID
	id      pcommon.SpanID
	parent  pcommon.SpanID
	kind    ptrace.SpanKind
	startNs uint64
	durNs   uint64
	status  ptrace.StatusCode
	attrs   map[string]any
	linkTo  [][2][]byte // span links: trace and span ID
	slot    int         // the batch it arrives in
}

// generator builds one random scenario from a seed. The same seed always
// gives the same batches.
type generator struct {
	r        *traffic.Rand
	phases   [][]int // batch slots of each phase; every phase ends in an expiry
	slots    int
	spans    []*genSpan
	bounds   []time.Duration
	baseNs   uint64
	envOnRes []bool // the service's environment is a resource attribute
	dbOnRes  int    // this service's resource names a database, so all its client spans are database calls
}

func newGenerator(seed uint64, bounds []time.Duration) *generator {
	g := &generator{r: traffic.New(seed, 0x5e41ce3a9), bounds: bounds, baseNs: 1_790_000_000_000_000_000}
	nPhases := 2 + g.r.IntN(3)
	for p := 0; p < nPhases; p++ {
		var slots []int
		for b := 1 + g.r.IntN(4); b > 0; b-- {
			slots = append(slots, g.slots)
			g.slots++
		}
		g.phases = append(g.phases, slots)
	}
	for i := range serviceNames {
		g.envOnRes = append(g.envOnRes, i%2 == 0)
	}
	g.dbOnRes = -1
	if g.r.IntN(4) == 0 {
		g.dbOnRes = g.r.IntN(len(serviceNames))
	}
	return g
}

func (g *generator) pick(n int) int { return g.r.IntN(n) }

// duration draws span durations that hit bucket bounds exactly, zero, tiny,
// ordinary and beyond the last bound. A span never ends before it starts:
// contrib computes End-Start on unsigned integers, so such a span gets a huge
// latency there (contrib bug "uint64 underflow on negative durations" in the
// reference's list of bugs not to copy); the engine clamps it to 0.
func (g *generator) duration() uint64 {
	switch x := g.r.Float64(); {
	case x < 0.15:
		return uint64(g.bounds[g.pick(len(g.bounds))])
	case x < 0.22:
		return 0
	case x < 0.30:
		return uint64(1 + g.pick(999))
	case x < 0.38:
		return uint64(time.Second)
	case x < 0.45:
		return uint64(20*time.Second) + uint64(g.r.Int64N(int64(40*time.Second)))
	default:
		// Log-uniform from 100µs to about 3s.
		return uint64(1e5 * pow10(g.r.Float64()*4.5))
	}
}

func pow10(x float64) float64 {
	v := 1.0
	for x >= 1 {
		v *= 10
		x--
	}
	// 10^x for x in [0,1): a few terms are plenty for test durations.
	return v * (1 + x*(2.302585+x*(2.650949+x*(2.034678+x*1.171255))))
}

func (g *generator) status() ptrace.StatusCode {
	switch x := g.r.Float64(); {
	case x < 0.2:
		return ptrace.StatusCodeError
	case x < 0.6:
		return ptrace.StatusCodeOk
	}
	return ptrace.StatusCodeUnset
}

// phaseSlots picks the batches the two sides of one call arrive in: usually
// two batches of one phase (in either order, possibly the same batch), so the
// sides pair; sometimes the second side only after the next expiry, so
// neither finds the other.
func (g *generator) phaseSlots() (int, int) {
	p := g.pick(len(g.phases))
	a := g.phases[p][g.pick(len(g.phases[p]))]
	if p+1 < len(g.phases) && g.r.Chance(0.15) {
		next := g.phases[p+1]
		return a, next[g.pick(len(next))]
	}
	b := g.phases[p][g.pick(len(g.phases[p]))]
	if g.r.Chance(0.5) {
		return a, b
	}
	return b, a
}

func (g *generator) anySlot() int { return g.pick(g.slots) }

// span adds a span of service svc with the dimension attributes a real SDK
// would plausibly set.
func (g *generator) span(svc int, trace pcommon.TraceID, parent pcommon.SpanID, kind ptrace.SpanKind, slot int) *genSpan {
	s := &genSpan{
		service: svc, trace: trace, id: g.r.SpanID(), parent: parent, kind: kind,
		startNs: g.baseNs + uint64(g.r.Int64N(int64(time.Minute))), durNs: g.duration(),
		status: g.status(), attrs: map[string]any{}, slot: slot,
	}
	if svc >= 0 && (!g.envOnRes[svc] || g.r.Chance(0.2)) && g.r.Chance(0.6) {
		// On services whose resource has the environment, a span value must lose to it.
		s.attrs[dimEnv] = environments[g.pick(len(environments))] + "-span"
	}
	switch x := g.r.Float64(); {
	case x < 0.35:
		s.attrs[dimStatus] = int64([]int{200, 201, 404, 500, 503}[g.pick(5)])
	case x < 0.45:
		s.attrs[dimStatus] = "200"
	case x < 0.50:
		s.attrs[dimStatus] = true
	case x < 0.55:
		// Doubles below 1e-6 and from 1e21 are written in exponent form.
		s.attrs[dimStatus] = []float64{1.5, 0.25, 404, -3.75, 1e-7, 2.5e21, math.Inf(1)}[g.pick(7)]
	}
	g.spans = append(g.spans, s)
	return s
}

func (g *generator) service() int { return g.pick(len(serviceNames)) }

func (g *generator) otherService(not int) int {
	s := g.pick(len(serviceNames) - 1)
	if s >= not {
		s++
	}
	return s
}

// peerAttr gives a client span what names an uninstrumented server, or nothing.
func (g *generator) peerAttr(s *genSpan) {
	switch x := g.r.Float64(); {
	case x < 0.25:
		s.attrs["peer.service"] = externalPeers[g.pick(len(externalPeers))]
	case x < 0.35:
		// A peer named like an instrumented service.
		s.attrs["peer.service"] = serviceNames[g.pick(len(serviceNames))]
	case x < 0.45:
		s.attrs["db.system"] = "redis"
	case x < 0.50:
		s.attrs["db.system.name"] = "valkey"
	case x < 0.55:
		s.attrs["db.system"] = "memcached"
		s.attrs["peer.service"] = "sessions"
	}
}

// A chain of calls in one trace: an optional root server span, then hops
// client(svc i) → server(svc i+1), each span a child of the one before.
// Any span may be lost.
func (g *generator) chain() {
	trace := g.r.TraceID()
	svc := g.service()
	var parent pcommon.SpanID
	if g.r.Chance(0.6) {
		root := g.span(svc, trace, pcommon.SpanID{}, ptrace.SpanKindServer, g.anySlot())
		parent = root.id
		if g.r.Chance(0.1) {
			g.lose(root)
		}
	}
	for hops := 1 + g.pick(3); hops > 0; hops-- {
		next := g.otherService(svc)
		a, b := g.phaseSlots()
		c := g.span(svc, trace, parent, ptrace.SpanKindClient, a)
		g.peerAttr(c)
		s := g.span(next, trace, c.id, ptrace.SpanKindServer, b)
		switch x := g.r.Float64(); {
		case x < 0.08:
			g.lose(c)
		case x < 0.18:
			g.lose(s)
		}
		svc, parent = next, s.id
	}
}

// lose removes a span from the scenario (its parent link stays in children).
func (g *generator) lose(s *genSpan) {
	for i, x := range g.spans {
		if x == s {
			g.spans = append(g.spans[:i], g.spans[i+1:]...)
			return
		}
	}
}

// A producer and its consumers, each consumer a child of the producer.
func (g *generator) messagingByParent() {
	trace := g.r.TraceID()
	a := g.service()
	p := g.span(a, trace, pcommon.SpanID{}, ptrace.SpanKindProducer, 0)
	p.attrs["messaging.system"] = "kafka"
	g.peerAttr(p)
	n := 1
	if g.r.Chance(0.3) {
		n = 2 + g.pick(2)
	}
	// Consumers sharing a parent all write the server side of one edge; if
	// they find different dimensions, the edge keeps every value found.
	for i := 0; i < n; i++ {
		ps, cs := g.phaseSlots()
		if i == 0 {
			p.slot = ps
		}
		c := g.span(g.otherService(a), trace, p.id, ptrace.SpanKindConsumer, cs)
		c.attrs["messaging.system"] = "kafka"
	}
	if g.r.Chance(0.1) {
		g.lose(p)
	}
}

// A producer, and a consumer in another trace that points at it with a span
// link (as batch consumers do). The consumer is a root span, or a child of a
// span that is not sent.
func (g *generator) messagingByLink() {
	a := g.service()
	ps, cs := g.phaseSlots()
	p := g.span(a, g.r.TraceID(), pcommon.SpanID{}, ptrace.SpanKindProducer, ps)
	p.attrs["messaging.system"] = "rabbitmq"
	g.peerAttr(p)
	var parent pcommon.SpanID
	if g.r.Chance(0.5) {
		parent = g.r.SpanID()
	}
	c := g.span(g.otherService(a), g.r.TraceID(), parent, ptrace.SpanKindConsumer, cs)
	c.linkTo = append(c.linkTo, [2][]byte{p.trace[:], p.id[:]})
	if g.r.Chance(0.3) {
		other := g.r.TraceID()
		id := g.r.SpanID()
		c.linkTo = append(c.linkTo, [2][]byte{other[:], id[:]})
	}
	if g.r.Chance(0.2) {
		g.lose(p)
	}
}

// A database call: a client (or, rarely, producer) span carrying a database
// name, with db.name winning over db.namespace. A server span may still
// answer it (a proxy in front of the database), before or after.
func (g *generator) database() {
	trace := g.r.TraceID()
	kind := ptrace.SpanKindClient
	if g.r.Chance(0.15) {
		kind = ptrace.SpanKindProducer
	}
	a, b := g.phaseSlots()
	c := g.span(g.service(), trace, pcommon.SpanID{}, kind, a)
	switch x := g.r.Float64(); {
	case x < 0.45:
		c.attrs["db.name"] = []string{"orders", "users"}[g.pick(2)]
	case x < 0.75:
		c.attrs["db.namespace"] = []string{"catalog", "sessions"}[g.pick(2)]
	default:
		c.attrs["db.name"] = "legacy-name"
		c.attrs["db.namespace"] = "current-name"
	}
	c.attrs["db.system"] = "postgresql"
	if g.r.Chance(0.15) {
		g.span(g.otherService(c.service), trace, c.id, ptrace.SpanKindServer, b)
	}
}

// A root server span alone: its caller is uninstrumented ("user").
func (g *generator) loneRoot() {
	kind := ptrace.SpanKindServer
	if g.r.Chance(0.25) {
		kind = ptrace.SpanKindConsumer
	}
	s := g.span(g.service(), g.r.TraceID(), pcommon.SpanID{}, kind, g.anySlot())
	if g.r.Chance(0.3) {
		// Peer attributes on a server span are not read by contrib.
		s.attrs["peer.service"] = "edge-proxy"
	}
	if g.r.Chance(0.05) {
		// Two root servers in one trace share their key.
		g.span(g.service(), s.trace, pcommon.SpanID{}, ptrace.SpanKindServer, g.anySlot())
	}
}

// A client span alone: its server is uninstrumented, named by a peer
// attribute or "unknown".
func (g *generator) loneClient() {
	kind := ptrace.SpanKindClient
	if g.r.Chance(0.2) {
		kind = ptrace.SpanKindProducer
	}
	var parent pcommon.SpanID
	if g.r.Chance(0.5) {
		parent = g.r.SpanID()
	}
	c := g.span(g.service(), g.r.TraceID(), parent, kind, g.anySlot())
	g.peerAttr(c)
}

// A server span whose client was never sent: no edge in contrib.
func (g *generator) orphanServer() {
	g.span(g.service(), g.r.TraceID(), g.r.SpanID(), ptrace.SpanKindServer, g.anySlot())
}

// Mixed kinds on one edge: client → consumer, producer → server. The
// connection type is the last writer's.
func (g *generator) mixed() {
	trace := g.r.TraceID()
	a := g.service()
	ck, sk := ptrace.SpanKindClient, ptrace.SpanKindConsumer
	if g.r.Chance(0.5) {
		ck, sk = ptrace.SpanKindProducer, ptrace.SpanKindServer
	}
	x, y := g.phaseSlots()
	c := g.span(a, trace, pcommon.SpanID{}, ck, x)
	g.span(g.otherService(a), trace, c.id, sk, y)
}

// Spans that are no part of any edge: internal and unspecified kinds, and
// spans of a resource without service.name.
func (g *generator) noise() {
	trace := g.r.TraceID()
	g.span(g.service(), trace, g.r.SpanID(), ptrace.SpanKindInternal, g.anySlot())
	g.span(g.service(), trace, g.r.SpanID(), ptrace.SpanKindUnspecified, g.anySlot())
	c := g.span(-1, trace, pcommon.SpanID{}, ptrace.SpanKindClient, g.anySlot())
	g.span(g.service(), trace, c.id, ptrace.SpanKindServer, c.slot)
}

// scenario draws interactions, then lays the spans out into batches, each
// phase followed by an expiry.
func (g *generator) scenario(interactions int) []step {
	for i := 0; i < interactions; i++ {
		switch x := g.r.Float64(); {
		case x < 0.32:
			g.chain()
		case x < 0.44:
			g.messagingByParent()
		case x < 0.52:
			g.messagingByLink()
		case x < 0.64:
			g.database()
		case x < 0.74:
			g.loneRoot()
		case x < 0.84:
			g.loneClient()
		case x < 0.89:
			g.orphanServer()
		case x < 0.95:
			g.mixed()
		default:
			g.noise()
		}
		if len(g.spans) > 0 && g.r.Chance(0.03) {
			// At-least-once delivery: a span arrives a second time.
			dup := *g.spans[g.pick(len(g.spans))]
			dup.slot = g.anySlot()
			g.spans = append(g.spans, &dup)
		}
	}
	bySlot := make([][]*genSpan, g.slots)
	for _, s := range g.spans {
		bySlot[s.slot] = append(bySlot[s.slot], s)
	}
	var steps []step
	for _, phase := range g.phases {
		for _, slot := range phase {
			spans := bySlot[slot]
			g.r.Shuffle(len(spans), func(i, j int) { spans[i], spans[j] = spans[j], spans[i] })
			steps = append(steps, step{traces: g.layout(spans)})
		}
		steps = append(steps, step{expire: true})
	}
	return steps
}

// layout writes spans into one ptrace.Traces: one resource per span, or the
// spans of each service grouped under one resource (spread over two scopes).
func (g *generator) layout(spans []*genSpan) ptrace.Traces {
	td := ptrace.NewTraces()
	grouped := g.r.Chance(0.5)
	res := map[int]ptrace.ResourceSpans{}
	for _, s := range spans {
		rs, ok := res[s.service]
		if !ok || !grouped {
			rs = td.ResourceSpans().AppendEmpty()
			g.resource(s.service, rs.Resource().Attributes())
			rs.ScopeSpans().AppendEmpty().Scope().SetName("conformance")
			if grouped {
				rs.ScopeSpans().AppendEmpty().Scope().SetName("conformance/other")
				res[s.service] = rs
			}
		}
		scope := rs.ScopeSpans().At(g.pick(rs.ScopeSpans().Len()))
		s.write(scope.Spans().AppendEmpty())
	}
	return td
}

func (g *generator) resource(svc int, m pcommon.Map) {
	if svc < 0 {
		m.PutStr("host.name", "no-service-name")
		return
	}
	m.PutStr("service.name", serviceNames[svc])
	m.PutStr("service.version", "1.4.2")
	if g.envOnRes[svc] {
		m.PutStr(dimEnv, environments[svc%len(environments)])
	}
	if svc == g.dbOnRes {
		m.PutStr("db.namespace", "resource-db")
	}
}

func (s *genSpan) write(sp ptrace.Span) {
	sp.SetTraceID(s.trace)
	sp.SetSpanID(s.id)
	sp.SetParentSpanID(s.parent)
	sp.SetKind(s.kind)
	sp.SetName(strings.ToLower(s.kind.String()) + " op")
	sp.SetStartTimestamp(pcommon.Timestamp(s.startNs))
	sp.SetEndTimestamp(pcommon.Timestamp(s.startNs + s.durNs))
	sp.Status().SetCode(s.status)
	putAttrs(sp.Attributes(), s.attrs)
	for _, l := range s.linkTo {
		link := sp.Links().AppendEmpty()
		link.SetTraceID(pcommon.TraceID(l[0]))
		link.SetSpanID(pcommon.SpanID(l[1]))
	}
}

func putAttrs(m pcommon.Map, attrs map[string]any) {
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, k)
	}
	// Map iteration order is random; attribute order must not be.
	slices.Sort(keys)
	for _, k := range keys {
		switch v := attrs[k].(type) {
		case string:
			m.PutStr(k, v)
		case int64:
			m.PutInt(k, v)
		case float64:
			m.PutDouble(k, v)
		case bool:
			m.PutBool(k, v)
		default:
			panic(fmt.Sprintf("attribute %s has unsupported type %T", k, v))
		}
	}
}
