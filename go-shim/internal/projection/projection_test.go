package projection

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/servicemap/servicemap/go-shim/internal/engine"
	"github.com/servicemap/servicemap/go-shim/internal/testutil"
)

// config makes the engine read a dimension, a span multiplier, an owner key
// and (with the service map on) its resource facts and protocol keys.
const config = `{"dimensions":["dim.a","dim.b"],"span_multiplier_key":"sample.ratio","owner_attribute":"team","graph":true,
	"peer_attributes":["peer.service","db.name","custom.peer"]}`

var t0 = time.Unix(1_800_000_000, 0)

func id16(n byte) pcommon.TraceID { return pcommon.TraceID{15: n, 0: 1} }
func id8(n byte) pcommon.SpanID   { return pcommon.SpanID{7: n, 0: 1} }

// addSpan adds a span under a new resource of service svc ("" for none).
func addSpan(td ptrace.Traces, svc string, kind ptrace.SpanKind, trace, span, parent byte) ptrace.Span {
	rs := td.ResourceSpans().AppendEmpty()
	if svc != "" {
		rs.Resource().Attributes().PutStr("service.name", svc)
	}
	rs.Resource().Attributes().PutStr("host.name", "h1")
	rs.Resource().Attributes().PutStr("team", "payments")
	rs.Resource().Attributes().PutStr("service.version", "1.2.3")
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("scope")
	s := ss.Spans().AppendEmpty()
	s.SetName("op")
	s.SetKind(kind)
	s.SetTraceID(id16(trace))
	s.SetSpanID(id8(span))
	if parent != 0 {
		s.SetParentSpanID(id8(parent))
	}
	s.SetStartTimestamp(pcommon.NewTimestampFromTime(t0))
	s.SetEndTimestamp(pcommon.NewTimestampFromTime(t0.Add(time.Duration(span) * time.Millisecond)))
	s.Attributes().PutStr("http.url", "https://example.com/"+strings.Repeat("x", 200))
	s.Events().AppendEmpty().SetName("event")
	return s
}

// batches are edge cases for the projection: every attribute value type,
// nested values, long values (multi-byte lengths), spans that do not pair,
// resources without a service, links, odd kinds and status codes.
func batches() []ptrace.Traces {
	var out []ptrace.Traces

	td := ptrace.NewTraces()
	c := addSpan(td, "client", ptrace.SpanKindClient, 1, 1, 0)
	c.Attributes().PutStr("dim.a", strings.Repeat("long value ", 40))
	c.Attributes().PutInt("dim.b", -7)
	c.Attributes().PutDouble("sample.ratio", 0.25)
	c.Attributes().PutStr("rpc.system", "grpc")
	c.Status().SetCode(ptrace.StatusCodeError)
	c.Status().SetMessage("failed")
	sv := addSpan(td, "server", ptrace.SpanKindServer, 1, 2, 1)
	arr := sv.Attributes().PutEmptySlice("dim.a")
	arr.AppendEmpty().SetStr("x")
	arr.AppendEmpty().SetInt(2)
	arr.AppendEmpty().SetEmptyMap().PutBool("deep", true)
	m := sv.Attributes().PutEmptyMap("dim.b")
	m.PutDouble("d", 1e-7)
	m.PutEmptyBytes("b").FromRaw([]byte{1, 2, 3})
	m.PutEmpty("")
	out = append(out, td)

	td = ptrace.NewTraces()
	c = addSpan(td, "client", ptrace.SpanKindClient, 2, 1, 0)
	c.Attributes().PutBool("dim.a", true)
	c.Attributes().PutEmptyBytes("dim.b").FromRaw(bytes.Repeat([]byte{0xfe}, 300))
	c.Attributes().PutStr("custom.peer", "cache")
	addSpan(td, "", ptrace.SpanKindServer, 2, 2, 1) // no service: skipped
	in := addSpan(td, "client", ptrace.SpanKindInternal, 2, 3, 1)
	in.Attributes().PutStr("dim.a", "internal")
	in.Links().AppendEmpty().SetTraceID(id16(9))
	in.Status().SetCode(ptrace.StatusCodeError)
	cl := addSpan(td, "client", ptrace.SpanKindClient, 2, 4, 0)
	cl.Links().AppendEmpty().SetTraceID(id16(9))
	cl.Links().At(0).SetSpanID(id8(9))
	p := addSpan(td, "producer", ptrace.SpanKindProducer, 3, 1, 0)
	p.Attributes().PutStr("messaging.system", "kafka")
	cons := addSpan(td, "consumer", ptrace.SpanKindConsumer, 4, 1, 0)
	l := cons.Links().AppendEmpty()
	l.SetTraceID(id16(3))
	l.SetSpanID(id8(1))
	cons.Links().AppendEmpty() // empty IDs: ignored
	half := cons.Links().AppendEmpty()
	half.SetTraceID(id16(3))
	odd := addSpan(td, "odd", ptrace.SpanKind(9), 5, 1, 0)
	odd.Status().SetCode(ptrace.StatusCode(7))
	db := addSpan(td, "client", ptrace.SpanKindClient, 6, 1, 0)
	db.Attributes().PutStr("db.system", "postgresql")
	db.Attributes().PutStr("db.name", "orders")
	db.Attributes().PutEmpty("dim.a")
	// A key and string value of 121 bytes together, the longest written
	// with one-byte lengths throughout, and one of 122.
	edge := addSpan(td, "client", ptrace.SpanKindClient, 6, 2, 0)
	edge.Attributes().PutStr("dim.a", strings.Repeat("e", 121-len("dim.a")))
	edge.Attributes().PutStr("dim.b", strings.Repeat("f", 122-len("dim.b")))
	out = append(out, td)

	// Many spans in one scope: lengths beyond two bytes.
	td = ptrace.NewTraces()
	for i := 0; i < 300; i++ {
		testutil.AppendClientServer(td, fmt.Sprintf("c%d", i%7), fmt.Sprintf("s%d", i%5), t0, i%3 == 0)
	}
	out = append(out, td)

	// An empty span ID: the engine rejects the batch either way.
	td = ptrace.NewTraces()
	addSpan(td, "client", ptrace.SpanKindClient, 7, 1, 0).SetSpanID(pcommon.SpanID{})
	out = append(out, td)

	// Values nested past the engine's limit: cut by the projection one level
	// past it, so the engine writes and counts them as from the full encoding.
	td = ptrace.NewTraces()
	c = addSpan(td, "client", ptrace.SpanKindClient, 9, 1, 0)
	nest := c.Attributes().PutEmptySlice("dim.a")
	for range 100_000 {
		nest = nest.AppendEmpty().SetEmptySlice()
	}
	nest.AppendEmpty().SetStr("bottom")
	sv = addSpan(td, "server", ptrace.SpanKindServer, 9, 2, 1)
	deep := sv.Attributes().PutEmptyMap("dim.b")
	for range engine.MaxValueDepth {
		deep = deep.PutEmptyMap("k")
	}
	deep.PutStr("k", "bottom")
	out = append(out, td)

	// Spans and nested values longer than their padded length prefixes hold.
	td = ptrace.NewTraces()
	c = addSpan(td, "client", ptrace.SpanKindClient, 10, 1, 0)
	c.Attributes().PutStr("dim.a", strings.Repeat("v", 20_000))
	sv = addSpan(td, "server", ptrace.SpanKindServer, 10, 2, 1)
	big := sv.Attributes().PutEmptySlice("dim.b")
	big.AppendEmpty().SetStr(strings.Repeat("w", 20_000))
	big.AppendEmpty().SetEmptyMap().PutStr("k", strings.Repeat("x", 17_000))
	out = append(out, td)
	return out
}

func newEngine(t *testing.T) *engine.Engine {
	t.Helper()
	e, err := engine.New([]byte(config))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// state is everything the engine shows: metrics, service map and
// self-report (without store_bytes, which counts allocated capacity).
func state(t *testing.T, e *engine.Engine, now time.Time) string {
	t.Helper()
	var out []string
	for _, f := range []engine.Format{engine.FormatPrometheus, engine.FormatGraphJSON, engine.FormatStatsJSON} {
		b, err := e.Render(f, now)
		if err != nil {
			t.Fatal(err)
		}
		if f == engine.FormatStatsJSON {
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			delete(m, "store_bytes")
			b, _ = json.Marshal(m)
		}
		out = append(out, string(b))
	}
	return strings.Join(out, "\n")
}

func TestEdgeCasesMatchFullEncoding(t *testing.T) {
	full, proj := newEngine(t), newEngine(t)
	encode, err := ForEngine(proj)
	if err != nil {
		t.Fatal(err)
	}
	var buf []byte
	now := t0
	for i, td := range batches() {
		raw, err := Full(nil, td)
		if err != nil {
			t.Fatal(err)
		}
		small, err := encode(buf[:0], td)
		if err != nil {
			t.Fatal(err)
		}
		buf = small
		if len(small) >= len(raw) {
			t.Errorf("batch %d: projected %d bytes, full %d", i, len(small), len(raw))
		}
		now = now.Add(time.Second)
		errFull, errProj := full.Consume(raw, now), proj.Consume(small, now)
		if (errFull == nil) != (errProj == nil) {
			t.Fatalf("batch %d: full encoding gives %v, projection %v", i, errFull, errProj)
		}
		if a, b := state(t, full, now), state(t, proj, now); a != b {
			t.Fatalf("batch %d: the engine's state differs (full, then projected):\n%s\n\n%s", i, a, b)
		}
	}
	now = now.Add(time.Hour)
	for _, e := range []*engine.Engine{full, proj} {
		if err := e.Flush(now); err != nil {
			t.Fatal(err)
		}
	}
	if a, b := state(t, full, now), state(t, proj, now); a != b {
		t.Fatalf("after flush the engine's state differs (full, then projected):\n%s\n\n%s", a, b)
	}
}

// TestProjectionDecodes checks that the projection is valid OTLP holding the
// span fields the engine reads and only the wanted attributes.
func TestProjectionDecodes(t *testing.T) {
	enc := New([]string{"service.name", "dim.a"}, []string{"dim.a", "dim.b"})
	td := batches()[0]
	raw, err := enc.Append(nil, td)
	if err != nil {
		t.Fatal(err)
	}
	got, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got.SpanCount() != td.SpanCount() {
		t.Fatalf("%d spans, want %d", got.SpanCount(), td.SpanCount())
	}
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		want, have := td.ResourceSpans().At(i), got.ResourceSpans().At(i)
		if k := keys(have.Resource().Attributes()); k != "service.name" {
			t.Errorf("resource %d keeps %s", i, k)
		}
		ws, hs := want.ScopeSpans().At(0).Spans().At(0), have.ScopeSpans().At(0).Spans().At(0)
		if ws.TraceID() != hs.TraceID() || ws.SpanID() != hs.SpanID() || ws.ParentSpanID() != hs.ParentSpanID() ||
			ws.Kind() != hs.Kind() || ws.StartTimestamp() != hs.StartTimestamp() || ws.EndTimestamp() != hs.EndTimestamp() ||
			ws.Status().Code() != hs.Status().Code() {
			t.Errorf("span %d differs", i)
		}
		if hs.Name() != "" || hs.Events().Len() != 0 || hs.Status().Message() != "" {
			t.Errorf("span %d keeps what the engine does not read", i)
		}
		if k := keys(hs.Attributes()); k != "dim.a,dim.b" {
			t.Errorf("span %d keeps %s", i, k)
		}
		for _, k := range []string{"dim.a", "dim.b"} {
			a, _ := ws.Attributes().Get(k)
			b, _ := hs.Attributes().Get(k)
			if !a.Equal(b) {
				t.Errorf("span %d: %s is %v, want %v", i, k, b.AsRaw(), a.AsRaw())
			}
		}
	}
}

func keys(m pcommon.Map) string {
	var k []string
	m.Range(func(key string, _ pcommon.Value) bool {
		k = append(k, key)
		return true
	})
	return strings.Join(k, ",")
}

func TestAppendDoesNotAllocate(t *testing.T) {
	enc := New([]string{"service.name"}, []string{"dim.a", "dim.b", "rpc.system"})
	td := batches()[2]
	buf, _ := enc.Append(nil, td)
	allocs := testing.AllocsPerRun(20, func() {
		buf, _ = enc.Append(buf[:0], td)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per batch with a reused buffer", allocs)
	}
}

func TestConcurrentAppend(t *testing.T) {
	e := newEngine(t)
	encode, err := ForEngine(e)
	if err != nil {
		t.Fatal(err)
	}
	all := batches()[:3]
	want := make([][]byte, len(all))
	for i, td := range all {
		want[i], _ = encode(nil, td)
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for n := 0; n < 50; n++ {
				i := n % len(all)
				buf, _ = encode(buf[:0], all[i])
				if !bytes.Equal(buf, want[i]) {
					t.Errorf("batch %d encodes differently under concurrency", i)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestKeySet(t *testing.T) {
	long := strings.Repeat("k", 100)
	s := NewKeySet([]string{"a.b", "c.d", "a.b", long, ""})
	// "x.b" has a kept length and last byte, "a.\"" a last byte sharing
	// its bit with "a.b"'s (0x22 and 0x62 modulo 64): both are rejected by
	// comparing strings.
	for k, want := range map[string]bool{"a.b": true, "c.d": true, long: true, "": true, "a.c": false, "a.bc": false, long + "k": false, "x.b": false, "a.\"": false} {
		if s.Has(k) != want {
			t.Errorf("Has(%q) = %v, want %v", k, !want, want)
		}
	}
	if len(s.byLen[3]) != 2 {
		t.Errorf("keys of length 3: %q", s.byLen[3])
	}
	var none KeySet
	if none.Has("") || none.Has("x") {
		t.Error("an empty set has keys")
	}
}

// submessages names, for each message the projection writes, the fields
// that hold messages, and the message each holds.
var submessages = map[string]map[protowire.Number]string{
	"request":       {1: "resourceSpans"},
	"resourceSpans": {1: "resource", 2: "scopeSpans"},
	"resource":      {1: "keyValue"},
	"scopeSpans":    {2: "span"},
	"span":          {9: "keyValue", 13: "link", 15: "status"},
	"keyValue":      {2: "anyValue"},
	"anyValue":      {5: "arrayValue", 6: "keyValueList"},
	"arrayValue":    {1: "anyValue"},
	"keyValueList":  {1: "keyValue"},
	"link":          {},
	"status":        {},
}

// shortest writes msg, a message of the given name, again with every length
// prefix at its shortest, and counts the prefixes that were longer.
func shortest(t *testing.T, name string, msg []byte) (out []byte, padded int) {
	t.Helper()
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			t.Fatalf("%s: bad tag: %v", name, protowire.ParseError(n))
		}
		out = protowire.AppendTag(out, num, typ)
		msg = msg[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, msg)
			if n < 0 {
				t.Fatalf("%s: bad field %d: %v", name, num, protowire.ParseError(n))
			}
			out = append(out, msg[:n]...)
			msg = msg[n:]
			continue
		}
		length, n := protowire.ConsumeVarint(msg)
		if n < 0 || length > uint64(len(msg)-n) {
			t.Fatalf("%s: bad length of field %d", name, num)
		}
		if n > protowire.SizeVarint(length) {
			padded++
		}
		body := msg[n : n+int(length)]
		msg = msg[n+int(length):]
		if sub, ok := submessages[name][num]; ok {
			var p int
			body, p = shortest(t, sub, body)
			padded += p
		}
		out = protowire.AppendBytes(out, body)
	}
	return out, padded
}

// TestLengthPrefixes checks the padded length prefixes: the projection
// decodes to the same batch as the same bytes with every prefix at its
// shortest, and the engine's state is the same from either.
func TestLengthPrefixes(t *testing.T) {
	// Lengths around every prefix size, padded narrow and wide.
	for _, pad := range []int{narrow, wide} {
		for _, n := range []int{0, 1, 127, 128, 16383, 16384, 16385, 1 << 21, 1<<28 - 1} {
			if pad == narrow && n > 1<<21 {
				continue
			}
			w := writer{buf: []byte{0xff}}
			at := w.begin(3, pad)
			w.buf = append(w.buf, bytes.Repeat([]byte{7}, n)...)
			w.end(at, pad)
			num, typ, k := protowire.ConsumeTag(w.buf[1:])
			body, m := protowire.ConsumeBytes(w.buf[1+k:])
			if num != 3 || typ != protowire.BytesType || m < 0 || 1+k+m != len(w.buf) || len(body) != n || (n > 0 && body[n-1] != 7) {
				t.Errorf("pad %d, length %d: decodes as field %d type %d, %d bytes of %d", pad, n, num, typ, len(body), len(w.buf))
			}
			if want := max(pad, protowire.SizeVarint(uint64(n))); m-n != want {
				t.Errorf("pad %d, length %d: a prefix of %d bytes, want %d", pad, n, m-n, want)
			}
		}
	}

	padEng, shortEng := newEngine(t), newEngine(t)
	encode, err := ForEngine(padEng)
	if err != nil {
		t.Fatal(err)
	}
	var u ptrace.ProtoUnmarshaler
	var m ptrace.ProtoMarshaler
	now := t0
	total := 0
	for i, td := range batches() {
		raw, err := encode(nil, td)
		if err != nil {
			t.Fatal(err)
		}
		short, padded := shortest(t, "request", raw)
		total += padded
		if padded == 0 && !bytes.Equal(raw, short) || padded > 0 && len(short) >= len(raw) {
			t.Errorf("batch %d: %d padded prefixes, %d bytes, %d at their shortest", i, padded, len(raw), len(short))
		}
		a, errA := u.UnmarshalTraces(raw)
		b, errB := u.UnmarshalTraces(short)
		if errA != nil || errB != nil {
			t.Fatalf("batch %d: decoding: %v, %v", i, errA, errB)
		}
		ra, _ := m.MarshalTraces(a)
		rb, _ := m.MarshalTraces(b)
		if !bytes.Equal(ra, rb) {
			t.Errorf("batch %d: the padded projection decodes differently", i)
		}
		now = now.Add(time.Second)
		errPad, errShort := padEng.Consume(raw, now), shortEng.Consume(short, now)
		if (errPad == nil) != (errShort == nil) {
			t.Fatalf("batch %d: padded gives %v, shortest %v", i, errPad, errShort)
		}
		if sa, sb := state(t, padEng, now), state(t, shortEng, now); sa != sb {
			t.Fatalf("batch %d: the engine's state differs (padded, then shortest):\n%s\n\n%s", i, sa, sb)
		}
	}
	if total == 0 {
		t.Error("no padded prefix written")
	}
}
