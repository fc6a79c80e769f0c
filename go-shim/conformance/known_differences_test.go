package conformance

import (
	"math"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Minimal scenarios on which the engine's contrib preset and contrib's
// connector disagree, or disagreed, each the smallest input that shows it.
// The random scenarios of TestDifferential stay clear of the inputs that
// still differ; the cases here keep them in view. A case whose difference
// persists is skipped with the difference as its message; once the engine
// agrees, the case moves to formerDifferences, where it must keep agreeing.

// tinyTrace builds spans for the cases below.
type tinyTrace struct {
	td    ptrace.Traces
	trace pcommon.TraceID
}

func newTinyTrace() *tinyTrace {
	return &tinyTrace{td: ptrace.NewTraces(), trace: pcommon.TraceID{0x7a, 1}}
}

// span adds a span of service svc (own resource) and returns it.
func (b *tinyTrace) span(svc string, kind ptrace.SpanKind, id, parent byte) ptrace.Span {
	rs := b.td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", svc)
	s := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	s.SetTraceID(b.trace)
	s.SetSpanID(pcommon.SpanID{id})
	if parent != 0 {
		s.SetParentSpanID(pcommon.SpanID{parent})
	}
	s.SetKind(kind)
	s.SetStartTimestamp(1_790_000_000_000_000_000)
	s.SetEndTimestamp(1_790_000_000_020_000_000)
	return s
}

func (b *tinyTrace) steps() []step { return []step{{traces: b.td}, {expire: true}} }

type knownDifference struct {
	name     string
	note     string // what differs, and whose behaviour is wanted
	dims     []string
	maxItems int
	// fix, when the cause is an engine option: setting it as contrib
	// behaves must make the difference go away.
	fix   map[string]any
	build func(b *tinyTrace)
}

func (k knownDifference) settings() settings {
	return settings{
		dimensions: k.dims, peerAttributes: peerAttributes, databaseNames: databaseNameAttributes,
		ttl: time.Millisecond, maxItems: k.maxItems,
	}
}

// formerDifferences were differences once and are fixed in the engine; the
// random scenarios now produce these inputs too.
var formerDifferences = []knownDifference{
	{
		name: "repeated side keeps earlier dimensions",
		note: "two consumers of one producer (same parent) write the server side of one edge; the first has " +
			"dimension d, the second does not. contrib merges the dimensions of every write into the edge, so the " +
			"series keeps server_d; the engine keeps only the last write's values and drops server_d",
		dims: []string{"d"},
		build: func(b *tinyTrace) {
			b.span("orders", ptrace.SpanKindConsumer, 2, 1).Attributes().PutStr("d", "x")
			b.span("orders", ptrace.SpanKindConsumer, 3, 1)
			b.span("checkout", ptrace.SpanKindProducer, 1, 0)
		},
	},
	{
		name: "double dimension below 1e-6",
		note: "contrib formats a double attribute as pcommon.Value.AsString does (1e-7); the engine writes 0.0000001",
		dims: []string{"d"},
		build: func(b *tinyTrace) {
			b.span("checkout", ptrace.SpanKindClient, 1, 0).Attributes().PutDouble("d", 1e-7)
			b.span("orders", ptrace.SpanKindServer, 2, 1)
		},
	},
	{
		name: "double dimension from 1e21",
		note: "contrib writes 1e+21, the engine 1000000000000000000000",
		dims: []string{"d"},
		build: func(b *tinyTrace) {
			b.span("checkout", ptrace.SpanKindClient, 1, 0).Attributes().PutDouble("d", 1e21)
			b.span("orders", ptrace.SpanKindServer, 2, 1)
		},
	},
	{
		name: "infinite double dimension",
		note: "contrib writes Infinity, the engine +Inf",
		dims: []string{"d"},
		build: func(b *tinyTrace) {
			b.span("checkout", ptrace.SpanKindClient, 1, 0).Attributes().PutDouble("d", math.Inf(1))
			b.span("orders", ptrace.SpanKindServer, 2, 1)
		},
	},
}

var knownDifferences = []knownDifference{
	{
		name: "empty dimension value",
		note: "an attribute that is present with an empty value: contrib writes the label client_d=\"\" (a series " +
			"of its own), the engine leaves the label out, as if the attribute were absent",
		dims: []string{"d"},
		build: func(b *tinyTrace) {
			b.span("checkout", ptrace.SpanKindClient, 1, 0).Attributes().PutStr("d", "")
			b.span("orders", ptrace.SpanKindServer, 2, 1)
		},
	},
	{
		name: "store cap keeps a different subset",
		note: "store.max_items=4 with 8 lone client spans in one batch: contrib keeps the first 4 in arrival order " +
			"and refuses the rest; the engine also keeps 4 (the cap applies to all shards together) but pairs a " +
			"batch shard by shard, so it keeps the first 4 in shard order: a different set of virtual edges comes " +
			"out. With shards=1 they agree",
		maxItems: 4,
		fix:      map[string]any{"shards": 1},
		build: func(b *tinyTrace) {
			for i := byte(1); i <= 8; i++ {
				b.trace = pcommon.TraceID{0x7a, i, i * 37}
				b.span("checkout", ptrace.SpanKindClient, i, 0).Attributes().PutStr("peer.service", "peer-"+string('a'+rune(i)))
			}
		},
	},
	{
		name: "label values longer than 2048 bytes",
		note: "the contrib preset truncates label values to max_label_value_length (2048 bytes, Tempo's limit); " +
			"contrib never truncates. With a larger max_label_value_length they agree",
		dims: []string{"d"},
		fix:  map[string]any{"max_label_value_length": 1 << 20},
		build: func(b *tinyTrace) {
			b.span("checkout", ptrace.SpanKindClient, 1, 0).Attributes().PutStr("d", strings.Repeat("x", 3000))
			b.span("orders", ptrace.SpanKindServer, 2, 1)
		},
	},
}

func TestFormerDifferences(t *testing.T) {
	for _, k := range formerDifferences {
		t.Run(k.name, func(t *testing.T) {
			s := k.settings()
			b := newTinyTrace()
			k.build(b)
			if d, _ := runBoth(t, s, engineConfig(s, versionOverrides), b.steps()); len(d) > 0 {
				t.Errorf("fixed once, differs again: %s\n%s", k.note, strings.Join(shorten(d), "\n"))
			}
		})
	}
}

func TestKnownDifferences(t *testing.T) {
	for _, k := range knownDifferences {
		t.Run(k.name, func(t *testing.T) {
			s := k.settings()
			b := newTinyTrace()
			k.build(b)
			d, _ := runBoth(t, s, engineConfig(s, versionOverrides), b.steps())
			if len(d) > 0 {
				t.Skipf("known difference: %s\n%s", k.note, strings.Join(shorten(d), "\n"))
			}
		})
	}
}

// TestKnownDifferencesHaveTheirCause checks that each difference above that
// comes from an engine option goes away when that option is set as contrib
// behaves, so the cause named in the note is the real one.
func TestKnownDifferencesHaveTheirCause(t *testing.T) {
	for _, k := range knownDifferences {
		if k.fix == nil {
			continue
		}
		t.Run(k.name, func(t *testing.T) {
			s := k.settings()
			extra := map[string]any{}
			for key, v := range versionOverrides {
				extra[key] = v
			}
			for key, v := range k.fix {
				extra[key] = v
			}
			b := newTinyTrace()
			k.build(b)
			if d, _ := runBoth(t, s, engineConfig(s, extra), b.steps()); len(d) > 0 {
				t.Errorf("with %v the difference should be gone:\n%s", k.fix, strings.Join(d, "\n"))
			}
		})
	}
}

// shorten cuts long difference lines (a 3000-byte label value) for reading.
func shorten(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		if len(l) > 400 {
			l = l[:400] + "…"
		}
		out[i] = l
	}
	return out
}

// Differences kept on purpose: contrib's behaviour is a defect, the engine's
// is wanted, and the random scenarios never produce these inputs. Each case
// pins the series both sides write.
func TestDeliberateDifferences(t *testing.T) {
	for _, tc := range []struct {
		name, why     string
		build         func(b *tinyTrace)
		contrib, ours string // the request_total series of each side
	}{
		{
			name: "empty peer attribute",
			why: "a lone client whose peer.service is present but empty: contrib names the virtual server \"\" " +
				"(a node without a name); the engine treats the empty value as absent and falls back to unknown",
			build: func(b *tinyTrace) {
				b.span("checkout", ptrace.SpanKindClient, 1, 0).Attributes().PutStr("peer.service", "")
			},
			contrib: `{client=Str:"checkout", connection_type=Str:"virtual_node", failed=Bool:"false", server=Str:""}`,
			ours:    `{client=Str:"checkout", connection_type=Str:"virtual_node", failed=Bool:"false", server=Str:"unknown"}`,
		},
		{
			name: "invalid UTF-8 in a service name",
			why: "contrib copies the bytes into its label, which makes an OTLP string field that is not UTF-8 " +
				"(invalid protobuf); the engine replaces the bad byte with U+FFFD",
			build: func(b *tinyTrace) {
				b.span("check\xffout", ptrace.SpanKindClient, 1, 0)
				b.span("orders", ptrace.SpanKindServer, 2, 1)
			},
			contrib: `{client=Str:"check\xffout", connection_type=Str:"", failed=Bool:"false", server=Str:"orders"}`,
			ours:    `{client=Str:"check` + "\ufffd" + `out", connection_type=Str:"", failed=Bool:"false", server=Str:"orders"}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := settings{peerAttributes: peerAttributes, databaseNames: databaseNameAttributes, ttl: time.Millisecond}
			b := newTinyTrace()
			tc.build(b)
			c := newContribPeer(t, s)
			o := newOurPeer(t, engineConfig(s, versionOverrides), s.ttl)
			for _, st := range b.steps() {
				if st.expire {
					c.expireAll(t)
					o.expireAll(t)
				} else {
					c.consume(t, st.traces)
					o.consume(t, st.traces)
				}
			}
			for side, got := range map[string][]string{
				tc.contrib: requestSeries(c.last),
				tc.ours:    requestSeries(o.last),
			} {
				if len(got) != 1 || got[0] != side {
					t.Errorf("%s\nwant the single series %s, got %v", tc.why, side, got)
				}
			}
		})
	}
}

// requestSeries lists the attribute sets of traces_service_graph_request_total.
func requestSeries(md pmetric.Metrics) []string {
	var out []string
	if m := canonicalize(md).metrics["traces_service_graph_request_total"]; m != nil {
		for k := range m.points {
			out = append(out, k)
		}
	}
	return out
}
