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
// and maps; some length prefixes are padded, which decodes the same), so
// the engine's metrics, service map and self-report are the same as from
// the full encoding: the tests beside this file and
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
	"math/bits"
	"runtime"

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

// KeySet answers "is this key kept". Most of a span's keys are not (about
// 20 look-ups a span on the benchmark workload, fewer than 3 kept), so a
// miss must be cheap: by length first (most keys differ in length from every
// kept key), then by last byte (a bit per byte, modulo 64, for the kept keys
// of that length), and only then by comparing with the few kept keys of that
// length. It stays small enough for the compiler to inline; a hash table
// like the engine's, which is not, cost more here.
type KeySet struct {
	byLen [][]string
	last  []uint64
}

// NewKeySet returns the set of keys.
func NewKeySet(keys []string) KeySet {
	var s KeySet
	for _, k := range keys {
		if s.Has(k) {
			continue
		}
		for len(s.byLen) <= len(k) {
			s.byLen = append(s.byLen, nil)
			s.last = append(s.last, 0)
		}
		s.byLen[len(k)] = append(s.byLen[len(k)], k)
		if k != "" {
			s.last[len(k)] |= 1 << (k[len(k)-1] & 63)
		}
	}
	return s
}

// Has reports whether k is in the set.
func (s *KeySet) Has(k string) bool {
	if len(k) >= len(s.byLen) || len(k) > 0 && s.last[len(k)]>>(k[len(k)-1]&63)&1 == 0 {
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
	resource, span KeySet
	// names keeps span names.
	names bool
}

// New returns an encoder keeping the resource attributes with keys in
// resource and the span attributes with keys in span.
func New(resource, span []string) *Encoder {
	return &Encoder{resource: NewKeySet(resource), span: NewKeySet(span)}
}

// Append writes the projection of td after dst and returns the result. It
// never fails; the error is there to match Encode.
func (e *Encoder) Append(dst []byte, td ptrace.Traces) ([]byte, error) {
	w := writer{buf: dst}
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		r := w.begin(1, wide) // ExportTraceServiceRequest.resource_spans
		res := w.begin(1, narrow)
		named := w.resource(rs.Resource().Attributes(), &e.resource)
		w.end(res, narrow)
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			n := spans.Len()
			if n == 0 {
				continue
			}
			ss := w.begin(2, wide) // ResourceSpans.scope_spans
			// Spans are read a group ahead of the one being written.
			runtime.KeepAlive(touch(spans, 0, min(n, group)))
			for k := 0; k < n; k++ {
				if k%group == 0 {
					runtime.KeepAlive(touch(spans, k+group, min(n, k+2*group)))
				}
				w.span(spans.At(k), named, &e.span, e.names)
			}
			w.end(ss, wide)
		}
		w.end(r, wide)
	}
	return w.buf, nil
}

// group is how many spans touch reads at a time.
const group = 8

// touch reads spans from to to (the lines of each span that the
// projection reads first, and its attribute keys) and returns a sum of what
// it read, which the caller keeps alive so that the reads are not left out.
// A batch is read from memory that is mostly not in the CPU's caches, and
// the spans of a scope are seldom next to each other: written one span at a
// time, each span's reads wait for memory one after another. Reads of a
// group of spans in a short loop are independent of each other, so they
// wait for memory together, and the spans are in the caches when written.
// This cuts the projection's CPU time by a third on the benchmark workload.
func touch(spans ptrace.SpanSlice, from, to int) (sum uint64) {
	for k := from; k < to; k++ {
		s := spans.At(k)
		sum += uint64(s.Kind()) + uint64(s.Status().Code()) + uint64(s.TraceID()[0])
		for k := range s.Attributes().All() {
			sum += uint64(len(k))
		}
	}
	return sum
}

// The projection is written in one pass: a nested message whose length is
// not known before its contents are written gets a length prefix of a fixed
// number of bytes, a varint padded with continuation bits (valid protobuf:
// decoders read a varint up to its last byte, however many there are), so
// that nothing written has to move once the length is known. wide is for
// the messages that hold a batch's spans, narrow for a span, a resource and
// nested attribute values; a message too long for its prefix is moved to
// make room (lengths over 16 KiB for narrow, 256 MiB for wide). Messages
// whose length is known up front (a span that is only counted, an
// attribute with a scalar or string value, a link, a status) are written
// with the shortest prefix, as the full encoding writes them.
const (
	narrow = 2
	wide   = 4
)

// span writes a span's narrow length prefix as two bytes itself: this stops
// the build if narrow changes.
var _ [1]struct{} = [narrow - 1]struct{}{}

type writer struct {
	buf []byte
}

// resource writes the kept resource attributes of m (Resource.attributes)
// and reports whether m has a service.name.
func (w *writer) resource(m pcommon.Map, keys *KeySet) (named bool) {
	m.Range(func(k string, v pcommon.Value) bool {
		if len(k) == len("service.name") && k == "service.name" {
			named = true
		}
		if keys.Has(k) {
			w.buf = appendKeyValue(w.buf, 1, k, v)
		}
		return true
	})
	return named
}

// pairs reports whether the engine pairs spans of this kind; it only counts
// the others (INTERNAL, UNSPECIFIED and unknown kinds).
func pairs(k ptrace.SpanKind) bool {
	return k >= ptrace.SpanKindServer && k <= ptrace.SpanKindConsumer
}

// idSize is the size of an ID field (tag, length and bytes; the bytes are
// left out when the ID is empty).
func idSize(n int, empty bool) int {
	if empty {
		return 2
	}
	return 2 + n
}

// span writes a span. Of a span the engine only counts (one that does not
// pair, or under a resource without service.name) it needs the IDs, which
// it checks, and the kind; the rest is left out. It writes to a local
// slice, which the compiler keeps in registers, and stores it back once.
func (w *writer) span(s ptrace.Span, named bool, keys *KeySet, names bool) {
	b := w.buf
	// IDs are written even when empty, as the full encoding does: an empty
	// trace or span ID makes the engine reject the batch either way.
	tid, sid := s.TraceID(), s.SpanID()
	tidEmpty, sidEmpty := tid.IsEmpty(), sid.IsEmpty()
	kind := s.Kind()
	if !named || !pairs(kind) {
		n := idSize(16, tidEmpty) + idSize(8, sidEmpty)
		if kind != 0 {
			n += 1 + uvarintLen(uint64(kind))
		}
		b = append(b, 2<<3|2) // ScopeSpans.spans
		b = appendVarint(b, uint64(n))
		b = appendID(b, 1, tid[:], tidEmpty)
		b = appendID(b, 2, sid[:], sidEmpty)
		if kind != 0 {
			b = append(b, 6<<3) // kind, a varint (wire type 0)
			b = appendVarint(b, uint64(kind))
		}
		w.buf = b
		return
	}
	b = append(b, 2<<3|2, 0, 0) // ScopeSpans.spans, its length padded to narrow
	at := len(b)
	b = appendID(b, 1, tid[:], tidEmpty)
	b = appendID(b, 2, sid[:], sidEmpty)
	b = append(b, 6<<3, byte(kind)) // kind: a varint, one byte for a pairing kind
	if p := s.ParentSpanID(); !p.IsEmpty() {
		b = append(b, 4<<3|2, 8)
		b = append(b, p[:]...)
	}
	if n := s.Name(); names && n != "" {
		b = append(b, 5<<3|2)
		b = appendVarint(b, uint64(len(n)))
		b = append(b, n...)
	}
	if t := s.StartTimestamp(); t != 0 {
		b = append(b, 7<<3|1)
		b = binary.LittleEndian.AppendUint64(b, uint64(t))
	}
	if t := s.EndTimestamp(); t != 0 {
		b = append(b, 8<<3|1)
		b = binary.LittleEndian.AppendUint64(b, uint64(t))
	}
	for k, v := range s.Attributes().All() {
		if keys.Has(k) {
			b = appendKeyValue(b, 9, k, v)
		}
	}
	// Only a CONSUMER span's links name its producer; the engine skips
	// the links of other spans unread.
	if kind == ptrace.SpanKindConsumer {
		links := s.Links()
		for i := 0; i < links.Len(); i++ {
			l := links.At(i)
			lt, ls := l.TraceID(), l.SpanID()
			ltEmpty, lsEmpty := lt.IsEmpty(), ls.IsEmpty()
			b = append(b, 13<<3|2, byte(idSize(16, ltEmpty)+idSize(8, lsEmpty)))
			b = appendID(b, 1, lt[:], ltEmpty)
			b = appendID(b, 2, ls[:], lsEmpty)
		}
	}
	if c := s.Status().Code(); c != 0 {
		b = append(b, 15<<3|2, byte(1+uvarintLen(uint64(c))), 3<<3) // Status.code, a varint
		b = appendVarint(b, uint64(c))
	}
	// The span's length in its two padded bytes, written here rather than
	// by end: a span is almost always shorter than 16 KiB.
	if n := len(b) - at; n < 1<<14 {
		b[at-2], b[at-1] = byte(n)|0x80, byte(n>>7)
		w.buf = b
		return
	}
	w.buf = b
	w.end(at, narrow)
}

// appendID writes an ID field, without its bytes when it is empty.
func appendID(b []byte, field byte, id []byte, empty bool) []byte {
	if empty {
		return append(b, field<<3|2, 0)
	}
	b = append(b, field<<3|2, byte(len(id)))
	return append(b, id...)
}

// appendKeyValue writes the attribute k: v (at nesting level 1) as field f.
// A string value, the common case, is written here; others by keyValue.
func appendKeyValue(b []byte, f byte, k string, v pcommon.Value) []byte {
	if v.Type() != pcommon.ValueTypeStr {
		w := writer{buf: b}
		w.keyValue(int(f), k, v, 1)
		return w.buf
	}
	s := v.Str()
	// Most attributes are short: every length then fits one byte, and the
	// field is written in four appends.
	if n := 6 + len(k) + len(s); n < 0x80 && k != "" {
		b = append(b, f<<3|2, byte(n), 1<<3|2, byte(len(k)))
		b = append(b, k...)
		b = append(b, 2<<3|2, byte(2+len(s)), 1<<3|2, byte(len(s)))
		return append(b, s...)
	}
	size := 1 + uvarintLen(uint64(len(s))) + len(s) // of the AnyValue
	n := 1 + uvarintLen(uint64(size)) + size
	if k != "" {
		n += 1 + uvarintLen(uint64(len(k))) + len(k)
	}
	b = append(b, f<<3|2)
	b = appendVarint(b, uint64(n))
	if k != "" {
		b = append(b, 1<<3|2)
		b = appendVarint(b, uint64(len(k)))
		b = append(b, k...)
	}
	b = append(b, 2<<3|2)
	b = appendVarint(b, uint64(size))
	b = append(b, 1<<3|2)
	b = appendVarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendVarint(b []byte, v uint64) []byte {
	if v < 0x80 {
		return append(b, byte(v))
	}
	return binary.AppendUvarint(b, v)
}

// keyValue writes a KeyValue as field f, its value at nesting level depth.
// A scalar or string value's size is known before it is written, so the
// KeyValue and its AnyValue get the shortest length prefixes; arrays and
// maps get padded ones.
func (w *writer) keyValue(f int, k string, v pcommon.Value, depth int) {
	size := 0 // of the AnyValue
	var str string
	var raw []byte
	typ := v.Type()
	if depth > keptDepth {
		typ = pcommon.ValueTypeEmpty
	}
	switch typ {
	case pcommon.ValueTypeStr:
		str = v.Str()
		size = 1 + uvarintLen(uint64(len(str))) + len(str)
	case pcommon.ValueTypeBool:
		size = 2
	case pcommon.ValueTypeInt:
		size = 1 + uvarintLen(uint64(v.Int()))
	case pcommon.ValueTypeDouble:
		size = 9
	case pcommon.ValueTypeBytes:
		raw = v.Bytes().AsRaw()
		size = 1 + uvarintLen(uint64(len(raw))) + len(raw)
	case pcommon.ValueTypeSlice, pcommon.ValueTypeMap:
		kv := w.begin(f, narrow)
		if k != "" {
			w.str(1, k)
		}
		val := w.begin(2, narrow)
		w.value(v, depth)
		w.end(val, narrow)
		w.end(kv, narrow)
		return
	}
	n := 1 + uvarintLen(uint64(size)) + size
	if k != "" {
		n += 1 + uvarintLen(uint64(len(k))) + len(k)
	}
	w.tag(f, 2)
	w.varint(uint64(n))
	if k != "" {
		w.str(1, k)
	}
	w.tag(2, 2)
	w.varint(uint64(size))
	switch typ {
	case pcommon.ValueTypeStr:
		w.str(1, str)
	case pcommon.ValueTypeBool:
		w.tag(2, 0)
		if v.Bool() {
			w.buf = append(w.buf, 1)
		} else {
			w.buf = append(w.buf, 0)
		}
	case pcommon.ValueTypeInt:
		w.tag(3, 0)
		w.varint(uint64(v.Int()))
	case pcommon.ValueTypeDouble:
		w.fixed64(4, math.Float64bits(v.Double()))
	case pcommon.ValueTypeBytes:
		w.bytes(7, raw)
	}
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
		arr := w.begin(5, narrow)
		s := v.Slice()
		for i := 0; i < s.Len(); i++ {
			at := w.begin(1, narrow) // ArrayValue.values
			w.value(s.At(i), depth+1)
			w.end(at, narrow)
		}
		w.end(arr, narrow)
	case pcommon.ValueTypeMap:
		list := w.begin(6, narrow)
		v.Map().Range(func(k string, v pcommon.Value) bool {
			w.keyValue(1, k, v, depth+1) // KeyValueList.values
			return true
		})
		w.end(list, narrow)
	case pcommon.ValueTypeBytes:
		w.bytes(7, v.Bytes().AsRaw())
	}
}

// uvarintLen is the length of v's shortest varint encoding.
func uvarintLen(v uint64) int {
	return (bits.Len64(v|1) + 6) / 7
}

func (w *writer) tag(field, wire int) { w.varint(uint64(field)<<3 | uint64(wire)) }

func (w *writer) varint(v uint64) { w.buf = appendVarint(w.buf, v) }

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

// begin starts a length-delimited field, leaving pad bytes for its length;
// end fills them in.
func (w *writer) begin(field, pad int) int {
	w.tag(field, 2)
	w.buf = append(w.buf, zeros[:pad]...)
	return len(w.buf)
}

var zeros [binary.MaxVarintLen64]byte

// end writes the length of the field begun at start as a varint of pad
// bytes, or, if it needs more, makes room for it.
func (w *writer) end(start, pad int) {
	n := len(w.buf) - start
	if n >= 1<<(7*pad) {
		w.widen(start, pad, n)
		return
	}
	p := w.buf[start-pad : start]
	for i := 0; i < pad-1; i++ {
		p[i] = byte(n) | 0x80
		n >>= 7
	}
	p[pad-1] = byte(n)
}

// widen moves the n bytes of a field begun at start to make room for the
// shortest varint of n, which needs more than the pad bytes left for it.
func (w *writer) widen(start, pad, n int) {
	var tmp [binary.MaxVarintLen64]byte
	k := binary.PutUvarint(tmp[:], uint64(n))
	w.buf = append(w.buf, zeros[:k-pad]...)
	copy(w.buf[start+k-pad:], w.buf[start:start+n])
	copy(w.buf[start-pad:], tmp[:k])
}
