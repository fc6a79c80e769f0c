// Package projection encodes trace batches for the engine. Instead of the
// whole batch (ptrace.ProtoMarshaler), it writes an OTLP
// ExportTraceServiceRequest holding only what the engine reads: trace, span
// and parent IDs, kind, start and end times, status code, a CONSUMER span's
// links, and the resource and span attributes whose keys the engine looks
// up (it reports them itself: engine.WantedKeys), and span names when a
// filter policy reads them. Of spans the engine only counts (INTERNAL or
// UNSPECIFIED, or under a resource without service.name) just the IDs and
// kind are written. Events, scopes, trace state, every other attribute and
// (without such a policy) names are left out, so there is less to
// encode, no garbage (the caller passes the buffer to append to) and less
// for the engine to skip.
//
// What is kept is written as the full encoding writes it (presence of empty
// IDs, attribute order and duplicates, every value type including arrays
// and maps), so the engine's metrics, service map and self-report are the
// same as from the full encoding: the tests beside this file and
// TestProjectionMatchesFullEncoding in the conformance module check that.
// Every attribute value type can be projected, so the processor and the
// connector never need the full encoding; Full remains for comparison (the
// tests and benchmarks) and for callers without an engine to ask.
//
// One visible difference: the engine's max_batch_bytes limit applies to the
// bytes it is handed, so in the collector it bounds the projection (about a
// third of the full encoding of a typical batch), not the full batch.
package projection

import (
	"encoding/binary"
	"fmt"
	"math"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/servicemap/servicemap/go-shim/internal/engine"
)

// Encode writes td as OTLP bytes for the engine, appending to dst, and
// returns the extended buffer (which the caller may reuse once the engine has
// read it).
type Encode func(dst []byte, td ptrace.Traces) ([]byte, error)

// Full encodes the whole batch with ptrace.ProtoMarshaler (into a new
// buffer; dst is not used). The engine's output from it is the same as from
// the projection, at about twice the cost.
func Full(_ []byte, td ptrace.Traces) ([]byte, error) {
	var m ptrace.ProtoMarshaler
	return m.MarshalTraces(td)
}

// ForEngine returns the projecting Encode for eng, keeping the attributes it
// reports wanting.
func ForEngine(eng *engine.Engine) (Encode, error) {
	keys, err := eng.WantedKeys()
	if err != nil {
		return nil, fmt.Errorf("asking the servicemap engine which attributes it reads: %w", err)
	}
	enc := New(keys.Resource, keys.Span)
	enc.names = keys.SpanName
	return enc.Append, nil
}

// keySet answers "is this key kept" the way the engine's KeySet does: by
// length first (most keys differ in length from every kept key), then by
// comparing with the few kept keys of that length.
type keySet struct {
	byLen [][]string
}

func newKeySet(keys []string) keySet {
	var s keySet
	for _, k := range keys {
		if s.has(k) {
			continue
		}
		for len(s.byLen) <= len(k) {
			s.byLen = append(s.byLen, nil)
		}
		s.byLen[len(k)] = append(s.byLen[len(k)], k)
	}
	return s
}

func (s *keySet) has(k string) bool {
	if len(k) >= len(s.byLen) {
		return false
	}
	for _, c := range s.byLen[len(k)] {
		if c == k {
			return true
		}
	}
	return false
}

// Encoder writes projected batches. It holds no buffer of its own and is
// safe for concurrent use.
type Encoder struct {
	resource, span keySet
	// names keeps span names.
	names bool
}

// New returns an encoder keeping the resource attributes with keys in
// resource and the span attributes with keys in span.
func New(resource, span []string) *Encoder {
	return &Encoder{resource: newKeySet(resource), span: newKeySet(span)}
}

// Append writes the projection of td after dst and returns the result. It
// never fails; the error is there to match Encode.
func (e *Encoder) Append(dst []byte, td ptrace.Traces) ([]byte, error) {
	w := writer{buf: dst}
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		r := w.begin(1) // ExportTraceServiceRequest.resource_spans
		res := w.begin(1)
		attrs := rs.Resource().Attributes()
		w.attributes(1, attrs, &e.resource)
		w.end(res)
		_, named := attrs.Get("service.name")
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			if spans.Len() == 0 {
				continue
			}
			ss := w.begin(2) // ResourceSpans.scope_spans
			for k := 0; k < spans.Len(); k++ {
				w.span(spans.At(k), named, &e.span, e.names)
			}
			w.end(ss)
		}
		w.end(r)
	}
	return w.buf, nil
}

type writer struct {
	buf []byte
}

// pairs reports whether the engine pairs spans of this kind; it only counts
// the others (INTERNAL, UNSPECIFIED and unknown kinds).
func pairs(k ptrace.SpanKind) bool {
	return k >= ptrace.SpanKindServer && k <= ptrace.SpanKindConsumer
}

// span writes a span. Of a span the engine only counts (one that does not
// pair, or under a resource without service.name) it needs the IDs, which
// it checks, and the kind; the rest is left out.
func (w *writer) span(s ptrace.Span, named bool, keys *keySet, names bool) {
	at := w.begin(2) // ScopeSpans.spans
	// IDs are written even when empty, as the full encoding does: an empty
	// trace or span ID makes the engine reject the batch either way.
	tid, sid := s.TraceID(), s.SpanID()
	w.id(1, tid[:], tid.IsEmpty())
	w.id(2, sid[:], sid.IsEmpty())
	kind := s.Kind()
	if kind != 0 {
		w.tag(6, 0)
		w.varint(uint64(kind))
	}
	if !named || !pairs(kind) {
		w.end(at)
		return
	}
	if p := s.ParentSpanID(); !p.IsEmpty() {
		w.bytes(4, p[:])
	}
	if n := s.Name(); names && n != "" {
		w.str(5, n)
	}
	if t := s.StartTimestamp(); t != 0 {
		w.fixed64(7, uint64(t))
	}
	if t := s.EndTimestamp(); t != 0 {
		w.fixed64(8, uint64(t))
	}
	w.attributes(9, s.Attributes(), keys)
	// Only a CONSUMER span's links name its producer; the engine skips
	// the links of other spans unread.
	links := s.Links()
	for i := 0; kind == ptrace.SpanKindConsumer && i < links.Len(); i++ {
		l := links.At(i)
		lt, ls := l.TraceID(), l.SpanID()
		at := w.begin(13)
		w.id(1, lt[:], lt.IsEmpty())
		w.id(2, ls[:], ls.IsEmpty())
		w.end(at)
	}
	if c := s.Status().Code(); c != 0 {
		st := w.begin(15)
		w.tag(3, 0)
		w.varint(uint64(c))
		w.end(st)
	}
	w.end(at)
}

func (w *writer) id(field int, b []byte, empty bool) {
	if empty {
		b = nil
	}
	w.bytes(field, b)
}

// attributes writes the kept attributes of m as repeated KeyValue field f.
func (w *writer) attributes(f int, m pcommon.Map, keys *keySet) {
	m.Range(func(k string, v pcommon.Value) bool {
		if keys.has(k) {
			w.keyValue(f, k, v, 1)
		}
		return true
	})
}

// keyValue writes a KeyValue as field f, its value at nesting level depth.
func (w *writer) keyValue(f int, k string, v pcommon.Value, depth int) {
	kv := w.begin(f)
	if k != "" {
		w.str(1, k)
	}
	val := w.begin(2)
	w.value(v, depth)
	w.end(val)
	w.end(kv)
}

// keptDepth is how deep nested values are copied: one level past the
// engine's limit, so that the engine still sees (and counts) a value it
// cuts, and writes it exactly as it writes the full encoding. Deeper levels
// are left empty: the input must not choose how deep this writer recurses.
const keptDepth = engine.MaxValueDepth + 1

// value writes the fields of an AnyValue at nesting level depth (an
// attribute's own value being level 1).
func (w *writer) value(v pcommon.Value, depth int) {
	if depth > keptDepth {
		return
	}
	switch v.Type() {
	case pcommon.ValueTypeStr:
		w.str(1, v.Str())
	case pcommon.ValueTypeBool:
		w.tag(2, 0)
		if v.Bool() {
			w.varint(1)
		} else {
			w.varint(0)
		}
	case pcommon.ValueTypeInt:
		w.tag(3, 0)
		w.varint(uint64(v.Int()))
	case pcommon.ValueTypeDouble:
		w.fixed64(4, math.Float64bits(v.Double()))
	case pcommon.ValueTypeSlice:
		arr := w.begin(5)
		s := v.Slice()
		for i := 0; i < s.Len(); i++ {
			at := w.begin(1) // ArrayValue.values
			w.value(s.At(i), depth+1)
			w.end(at)
		}
		w.end(arr)
	case pcommon.ValueTypeMap:
		list := w.begin(6)
		v.Map().Range(func(k string, v pcommon.Value) bool {
			w.keyValue(1, k, v, depth+1) // KeyValueList.values
			return true
		})
		w.end(list)
	case pcommon.ValueTypeBytes:
		w.bytes(7, v.Bytes().AsRaw())
	}
}

func (w *writer) tag(field, wire int) { w.varint(uint64(field)<<3 | uint64(wire)) }

func (w *writer) varint(v uint64) { w.buf = binary.AppendUvarint(w.buf, v) }

func (w *writer) fixed64(field int, v uint64) {
	w.tag(field, 1)
	w.buf = binary.LittleEndian.AppendUint64(w.buf, v)
}

func (w *writer) bytes(field int, b []byte) {
	w.tag(field, 2)
	w.varint(uint64(len(b)))
	w.buf = append(w.buf, b...)
}

func (w *writer) str(field int, s string) {
	w.tag(field, 2)
	w.varint(uint64(len(s)))
	w.buf = append(w.buf, s...)
}

// begin starts a length-delimited field, leaving one byte for its length;
// end fills it in, moving the contents if the length needs more bytes.
func (w *writer) begin(field int) int {
	w.tag(field, 2)
	w.buf = append(w.buf, 0)
	return len(w.buf)
}

var zeros [binary.MaxVarintLen64]byte

func (w *writer) end(start int) {
	n := len(w.buf) - start
	if n < 0x80 {
		w.buf[start-1] = byte(n)
		return
	}
	var tmp [binary.MaxVarintLen64]byte
	k := binary.PutUvarint(tmp[:], uint64(n))
	w.buf = append(w.buf, zeros[:k-1]...)
	copy(w.buf[start+k-1:], w.buf[start:start+n])
	copy(w.buf[start-1:], tmp[:k])
}
