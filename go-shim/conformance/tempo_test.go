package conformance

import (
	"math"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// A few of Tempo's service-graph test scenarios, replayed through the engine
// with compat "tempo", checking the values Tempo's tests expect. (The Rust
// tests cover the Tempo rules in depth; this checks the same through the C
// ABI and the Go wrapper.)

// seriesKey is the attribute set of a series with only string labels.
func seriesKey(kv ...string) string {
	m := pcommon.NewMap()
	for i := 0; i+1 < len(kv); i += 2 {
		m.PutStr(kv[i], kv[i+1])
	}
	return attrKey(m)
}

// tempoSpan adds one span under its own resource.
func tempoSpan(td ptrace.Traces, svc string, trace pcommon.TraceID, id, parent pcommon.SpanID, kind ptrace.SpanKind,
	startNs, durNs uint64, status ptrace.StatusCode, attrs map[string]any,
) {
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", svc)
	s := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	s.SetTraceID(trace)
	s.SetSpanID(id)
	s.SetParentSpanID(parent)
	s.SetKind(kind)
	s.SetStartTimestamp(pcommon.Timestamp(startNs))
	s.SetEndTimestamp(pcommon.Timestamp(startNs + durNs))
	s.Status().SetCode(status)
	putAttrs(s.Attributes(), attrs)
}

func hexSpan(s string) pcommon.SpanID {
	var id pcommon.SpanID
	for i := range id {
		id[i] = unhex(s[2*i])<<4 | unhex(s[2*i+1])
	}
	return id
}

func unhex(c byte) byte {
	if c >= 'a' {
		return c - 'a' + 10
	}
	return c - '0'
}

// runTempo feeds one batch, then expires every half-edge still waiting (as
// Tempo's tests do with a 1ns wait), and returns the engine's metrics.
func runTempo(t *testing.T, config string, td ptrace.Traces) canonical {
	t.Helper()
	o := newOurPeer(t, []byte(config), time.Second)
	o.consume(t, td)
	// Well within the 15 minutes after which an idle series is removed.
	o.now = o.now.Add(time.Second)
	if err := o.eng.Flush(o.now); err != nil {
		t.Fatal(err)
	}
	o.render(t)
	return canonicalize(o.last)
}

func wantCount(t *testing.T, c canonical, metric, series string, want float64) {
	t.Helper()
	m := c.metrics[metric]
	if m == nil {
		t.Errorf("%s: no such metric", metric)
		return
	}
	p, ok := m.points[series]
	if !ok {
		t.Errorf("%s %s: no such series; have %v", metric, series, keys(m.points))
		return
	}
	var got float64
	switch {
	case p.intValue != nil:
		got = float64(*p.intValue)
	case p.doubleValue != nil:
		got = *p.doubleValue
	default:
		got = float64(p.count)
	}
	if got != want {
		t.Errorf("%s %s = %v, want %v", metric, series, got, want)
	}
}

func wantHistogram(t *testing.T, c canonical, metric, series string, buckets []uint64, sum float64) {
	t.Helper()
	m := c.metrics[metric]
	if m == nil {
		t.Errorf("%s: no such metric", metric)
		return
	}
	p, ok := m.points[series]
	if !ok {
		t.Errorf("%s %s: no such series; have %v", metric, series, keys(m.points))
		return
	}
	if len(p.buckets) != len(buckets) {
		t.Errorf("%s %s: buckets %v, want %v", metric, series, p.buckets, buckets)
		return
	}
	for i := range buckets {
		if p.buckets[i] != buckets[i] {
			t.Errorf("%s %s: buckets %v, want %v", metric, series, p.buckets, buckets)
			return
		}
	}
	if math.Abs(p.sum-sum) > 1e-12 {
		t.Errorf("%s %s: sum %.12g, want %.12g", metric, series, p.sum, sum)
	}
}

func keys(m map[string]point) []string {
	set := map[string]bool{}
	for k := range m {
		set[k] = true
	}
	return sortedKeys(set)
}

const (
	reqTotal  = "traces_service_graph_request_total"
	reqFailed = "traces_service_graph_request_failed_total"
	reqServer = "traces_service_graph_request_server"
	reqClient = "traces_service_graph_request_client"
	reqMsg    = "traces_service_graph_request_messaging_system"
)

// Tempo §5.4, trace-with-virtual-nodes: a root server, a client whose server
// is uninstrumented (named by peer.service), and a root consumer with
// peer.service, which Tempo (unlike contrib) uses to name the virtual client.
func TestTempoVirtualNodes(t *testing.T) {
	const t0 = 1_658_320_854_900_000_000
	trace := pcommon.TraceID{0x42, 0x90, 0xb5, 0x87}
	td := ptrace.NewTraces()
	root := hexSpan("d606579e57787587")
	tempoSpan(td, "mythical-server", trace, root, pcommon.SpanID{}, ptrace.SpanKindServer,
		t0, 45_834_496, ptrace.StatusCodeUnset, map[string]any{"beast": "manticore"})
	tempoSpan(td, "mythical-requester", trace, hexSpan("53f35b2c1e8ad1b6"), root, ptrace.SpanKindClient,
		t0, 705_792, ptrace.StatusCodeUnset, map[string]any{"peer.service": "external-payments-platform"})
	tempoSpan(td, "internal-consumer", pcommon.TraceID{0xab, 0x4a, 0x39, 0x0a}, hexSpan("4d9b3f7c2a1e0d55"),
		pcommon.SpanID{}, ptrace.SpanKindConsumer, t0, 1_000_000, ptrace.StatusCodeUnset,
		map[string]any{"peer.service": "external-producer"})

	for _, label := range []bool{false, true} {
		config := `{"compat":"tempo","histogram_buckets":[0.04]}`
		if label {
			config = `{"compat":"tempo","histogram_buckets":[0.04],"enable_virtual_node_label":true}`
		}
		c := runTempo(t, config, td)
		vn := func(side string) []string {
			if label {
				return []string{"virtual_node", side}
			}
			return nil
		}
		user := seriesKey(append([]string{"client", "user", "server", "mythical-server", "connection_type", "virtual_node"}, vn("client")...)...)
		ext := seriesKey(append([]string{"client", "mythical-requester", "server", "external-payments-platform", "connection_type", "virtual_node"}, vn("server")...)...)
		prod := seriesKey(append([]string{"client", "external-producer", "server", "internal-consumer", "connection_type", "virtual_node"}, vn("client")...)...)
		for _, s := range []string{user, ext, prod} {
			wantCount(t, c, reqTotal, s, 1)
		}
		if m := c.metrics[reqFailed]; m != nil {
			t.Errorf("no request failed, yet %s has %v", reqFailed, keys(m.points))
		}
		// The inferred side's latency is 0.
		wantHistogram(t, c, reqServer, user, []uint64{0, 1}, 0.045834496)
		wantHistogram(t, c, reqClient, user, []uint64{1, 0}, 0)
		wantHistogram(t, c, reqClient, ext, []uint64{1, 0}, 0.000705792)
		wantHistogram(t, c, reqServer, ext, []uint64{1, 0}, 0)
	}
}

// Tempo §5.3, trace-with-failed-requests: failures on both sides of a call
// and on a database call.
func TestTempoFailedRequests(t *testing.T) {
	const t0 = 1_658_320_854_900_000_000
	trace := pcommon.TraceID{0xe8, 0xb6, 0xdf, 0xf9}
	td := ptrace.NewTraces()
	client := hexSpan("1b2c3d4e5f607182")
	server := hexSpan("2b2c3d4e5f607182")
	tempoSpan(td, "mythical-requester", trace, client, pcommon.SpanID{}, ptrace.SpanKindClient,
		t0, 15_317_504, ptrace.StatusCodeError, nil)
	tempoSpan(td, "mythical-server", trace, server, client, ptrace.SpanKindServer,
		t0+1_000_000, 7_309_568, ptrace.StatusCodeError, nil)
	tempoSpan(td, "mythical-server", trace, hexSpan("3b2c3d4e5f607182"), server, ptrace.SpanKindClient,
		t0+2_000_000, 3_000_000, ptrace.StatusCodeError, map[string]any{"db.name": "postgres", "db.system": "postgresql"})

	c := runTempo(t, `{"compat":"tempo","histogram_buckets":[0.04]}`, td)
	call := seriesKey("client", "mythical-requester", "server", "mythical-server")
	db := seriesKey("client", "mythical-server", "server", "postgres", "connection_type", "database")
	for _, s := range []string{call, db} {
		wantCount(t, c, reqTotal, s, 1)
		wantCount(t, c, reqFailed, s, 1)
	}
	wantHistogram(t, c, reqClient, call, []uint64{1, 0}, 0.015317504)
	wantHistogram(t, c, reqServer, call, []uint64{1, 0}, 0.007309568)
}

// Tempo §5.1: the messaging-system latency histogram measures from the
// producer's end to the consumer's start (exactly 0.0098816 s in the fixture).
func TestTempoMessagingLatency(t *testing.T) {
	trace := pcommon.TraceID{0x42, 0x90, 0xb5, 0x87, 0x7a}
	td := ptrace.NewTraces()
	producer := hexSpan("09bc8187c967f4b4")
	tempoSpan(td, "mythical-requester", trace, producer, hexSpan("a0c8aa5b3c9e1f00"), ptrace.SpanKindProducer,
		1658320854915628800-68864, 68864, ptrace.StatusCodeUnset, map[string]any{"messaging.system": "rabbitmq"})
	tempoSpan(td, "mythical-recorder", trace, hexSpan("a8c3fb56334620af"), producer, ptrace.SpanKindConsumer,
		1658320854925510400, 699392, ptrace.StatusCodeUnset, map[string]any{"messaging.system": "rabbitmq"})

	c := runTempo(t, `{"compat":"tempo","histogram_buckets":[0.04],"enable_messaging_system_latency_histogram":true}`, td)
	s := seriesKey("client", "mythical-requester", "server", "mythical-recorder", "connection_type", "messaging_system")
	wantCount(t, c, reqTotal, s, 1)
	wantHistogram(t, c, reqMsg, s, []uint64{1, 0}, 0.0098816)
	wantHistogram(t, c, reqClient, s, []uint64{1, 0}, 0.000068864)
	wantHistogram(t, c, reqServer, s, []uint64{1, 0}, 0.000699392)
}

// Tempo's metrics-generator integration test: lb → app, client 2 s, server 1 s.
func TestTempoIntegrationPair(t *testing.T) {
	const t0 = 1_790_000_000_000_000_000
	trace := pcommon.TraceID{0x1b}
	td := ptrace.NewTraces()
	client := hexSpan("0000000000000001")
	tempoSpan(td, "lb", trace, client, pcommon.SpanID{}, ptrace.SpanKindClient, t0, 2e9, ptrace.StatusCodeUnset, nil)
	tempoSpan(td, "app", trace, hexSpan("0000000000000002"), client, ptrace.SpanKindServer, t0+5e8, 1e9, ptrace.StatusCodeUnset, nil)

	c := runTempo(t, `{"compat":"tempo","histogram_buckets":[1,2]}`, td)
	s := seriesKey("client", "lb", "server", "app")
	wantCount(t, c, reqTotal, s, 1)
	if m := c.metrics[reqFailed]; m != nil {
		t.Errorf("no request failed, yet %s has %v", reqFailed, keys(m.points))
	}
	// Buckets are upper-inclusive: 2 s is in le=2, 1 s in le=1.
	wantHistogram(t, c, reqClient, s, []uint64{0, 1, 0}, 2)
	wantHistogram(t, c, reqServer, s, []uint64{1, 0, 0}, 1)
}

// Tempo's TestServiceGraphs_applyFilterPolicy: requester→server,
// server→postgres and requester→recorder with no policy, including one
// service or excluding one. A side left out drops its other side, so no
// half-edge is left to expire.
func TestTempoFilterPolicies(t *testing.T) {
	const t0 = 1_658_320_854_900_000_000
	trace := pcommon.TraceID{0x51, 0x7e}
	td := ptrace.NewTraces()
	client, server, producer := hexSpan("a100000000000001"), hexSpan("b200000000000002"), hexSpan("f600000000000006")
	tempoSpan(td, "mythical-requester", trace, client, pcommon.SpanID{}, ptrace.SpanKindClient, t0, 45_834_496, ptrace.StatusCodeUnset, nil)
	tempoSpan(td, "mythical-server", trace, server, client, ptrace.SpanKindServer, t0+1_000_000, 29_986_048, ptrace.StatusCodeUnset, nil)
	tempoSpan(td, "mythical-server", trace, hexSpan("c300000000000003"), server, ptrace.SpanKindClient,
		t0+2_000_000, 23_781_376, ptrace.StatusCodeUnset, map[string]any{"db.name": "postgres", "db.system": "postgresql"})
	tempoSpan(td, "mythical-requester", trace, producer, client, ptrace.SpanKindProducer, t0+3_000_000, 68_864, ptrace.StatusCodeUnset,
		map[string]any{"messaging.system": "rabbitmq"})
	tempoSpan(td, "mythical-recorder", trace, hexSpan("a900000000000009"), producer, ptrace.SpanKindConsumer,
		t0+13_000_000, 699_392, ptrace.StatusCodeUnset, map[string]any{"messaging.system": "rabbitmq"})

	edges := []string{
		seriesKey("client", "mythical-requester", "server", "mythical-server"),
		seriesKey("client", "mythical-server", "server", "postgres", "connection_type", "database"),
		seriesKey("client", "mythical-requester", "server", "mythical-recorder", "connection_type", "messaging_system"),
	}
	policy := func(kind, service string) string {
		return `,"filter_policies":[{"` + kind + `":{"match_type":"strict","attributes":[{"key":"resource.service.name","value":"` + service + `"}]}}]`
	}
	for _, tc := range []struct {
		policy  string
		want    [3]float64
		dropped int64
	}{
		{"", [3]float64{1, 1, 1}, 0},
		{policy("include", "mythical-requester"), [3]float64{0, 0, 0}, 2},
		{policy("include", "mythical-server"), [3]float64{0, 1, 0}, 1},
		{policy("exclude", "mythical-requester"), [3]float64{0, 1, 0}, 2},
	} {
		o := newOurPeer(t, []byte(`{"compat":"tempo"`+tc.policy+`}`), time.Second)
		o.consume(t, td)
		o.expireAll(t)
		c := canonicalize(o.last)
		for i, s := range edges {
			var got float64
			var points map[string]point
			if m := c.metrics[reqTotal]; m != nil {
				points = m.points
			}
			if p, ok := points[s]; ok && p.doubleValue != nil {
				got = *p.doubleValue
			} else if ok && p.intValue != nil {
				got = float64(*p.intValue)
			}
			if got != tc.want[i] {
				t.Errorf("%q: %s = %v, want %v", tc.policy, s, got, tc.want[i])
			}
		}
		st := o.stats(t)
		if st.EdgesFiltered != tc.dropped || st.EdgesExpire != 0 {
			t.Errorf("%q: dropped %d expired %d, want dropped %d expired 0", tc.policy, st.EdgesFiltered, st.EdgesExpire, tc.dropped)
		}
	}
}

// Tempo's droppedEdgesMetric cases: svc-a excluded, a client of svc-a and a
// server of svc-b pair, in either order, to one dropped edge and nothing
// else; a filtered root server leaves nothing behind.
func TestTempoDroppedEdges(t *testing.T) {
	const config = `{"compat":"tempo","filter_policies":[{"exclude":{"match_type":"strict","attributes":[{"key":"resource.service.name","value":"svc-a"}]}}]}`
	trace := pcommon.TraceID{0xd7}
	client := hexSpan("0000000000000001")
	side := func(svc string, kind ptrace.SpanKind, id, parent pcommon.SpanID) ptrace.Traces {
		td := ptrace.NewTraces()
		tempoSpan(td, svc, trace, id, parent, kind, 1_800_000_000_000_000_000, 1e6, ptrace.StatusCodeUnset, nil)
		return td
	}
	a := side("svc-a", ptrace.SpanKindClient, client, pcommon.SpanID{})
	b := side("svc-b", ptrace.SpanKindServer, hexSpan("0000000000000002"), client)
	for _, order := range [][2]ptrace.Traces{{a, b}, {b, a}} {
		o := newOurPeer(t, []byte(config), time.Second)
		o.consume(t, order[0])
		o.consume(t, order[1])
		o.expireAll(t)
		if st := o.stats(t); st.EdgesFiltered != 1 || st.EdgesExpire != 0 {
			t.Errorf("dropped %d expired %d, want 1 and 0", st.EdgesFiltered, st.EdgesExpire)
		}
		if m := o.last.MetricCount(); m != 0 {
			t.Errorf("%d metrics written for a filtered request", m)
		}
	}
	o := newOurPeer(t, []byte(config), time.Second)
	o.consume(t, side("svc-a", ptrace.SpanKindServer, hexSpan("0000000000000003"), pcommon.SpanID{}))
	o.expireAll(t)
	if st := o.stats(t); st.EdgesFiltered != 0 || st.EdgesExpire != 0 {
		t.Errorf("a filtered root server: dropped %d expired %d", st.EdgesFiltered, st.EdgesExpire)
	}
}
