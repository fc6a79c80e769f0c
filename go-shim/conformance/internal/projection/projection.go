// Package projection is an experiment for the shim: instead of encoding a
// whole pdata batch to OTLP bytes for the engine (ptrace.ProtoMarshaler),
// it writes an OTLP ExportTraceServiceRequest holding only what the engine
// reads: span IDs, parent, kind, times, status, links, and the attributes
// whose keys the engine looks up. Everything else (names, events, other
// attributes, scopes) is left out, so there is less to encode, less garbage
// and less for the engine to read. The conformance tests check that the
// engine's output is the same either way.
package projection

import (
	"encoding/binary"
	"math"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// EngineKeys lists the attribute keys the engine reads for a configuration
// with these dimensions, peer attributes and database attributes (and the
// live service map on or off). It follows the engine's own key set (in the
// Rust crate, KeySet::new in src/attributes.rs); a key missing here would
// change the engine's output, which the conformance tests would catch.
func EngineKeys(dimensions, peer, database []string, graph bool) []string {
	keys := []string{"service.name"}
	keys = append(keys, dimensions...)
	keys = append(keys, peer...)
	keys = append(keys, database...)
	keys = append(keys, "peer.service", "server.address", "network.peer.address", "network.peer.port")
	if graph {
		keys = append(keys, "service.version", "deployment.environment.name", "deployment.environment",
			"service.namespace", "k8s.namespace.name", "service.owner",
			"rpc.system", "messaging.system", "db.system.name", "db.system", "http.request.method", "http.method")
	}
	return keys
}

// Encoder writes projected batches. It reuses its buffer: the bytes Encode
// returns are valid until the next call. Not safe for concurrent use.
type Encoder struct {
	keys  map[string]struct{}
	byLen [64]bool // some key has this length (longer keys: always looked up)
	buf   []byte
}

// New returns an encoder keeping the attributes with these keys.
func New(keys []string) *Encoder {
	e := &Encoder{keys: make(map[string]struct{}, len(keys))}
	for _, k := range keys {
		e.keys[k] = struct{}{}
		if len(k) < len(e.byLen) {
			e.byLen[len(k)] = true
		}
	}
	return e
}

func (e *Encoder) wanted(k string) bool {
	if len(k) < len(e.byLen) && !e.byLen[len(k)] {
		return false
	}
	_, ok := e.keys[k]
	return ok
}

// Encode writes td. ok is false when a kept attribute holds an array or a
// map (which this encoder does not write); the caller then encodes the
// batch in full.
func (e *Encoder) Encode(td ptrace.Traces) (out []byte, ok bool) {
	e.buf = e.buf[:0]
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		r := e.begin(1) // ExportTraceServiceRequest.resource_spans
		res := e.begin(1)
		if !e.attributes(1, rs.Resource().Attributes()) {
			return nil, false
		}
		e.end(res)
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			if spans.Len() == 0 {
				continue
			}
			ss := e.begin(2) // ResourceSpans.scope_spans
			for k := 0; k < spans.Len(); k++ {
				if !e.span(spans.At(k)) {
					return nil, false
				}
			}
			e.end(ss)
		}
		e.end(r)
	}
	return e.buf, true
}

func (e *Encoder) span(s ptrace.Span) bool {
	at := e.begin(2) // ScopeSpans.spans
	tid, sid := s.TraceID(), s.SpanID()
	e.bytes(1, tid[:])
	e.bytes(2, sid[:])
	if p := s.ParentSpanID(); !p.IsEmpty() {
		e.bytes(4, p[:])
	}
	if k := s.Kind(); k != 0 {
		e.tag(6, 0)
		e.varint(uint64(k))
	}
	e.fixed64(7, uint64(s.StartTimestamp()))
	e.fixed64(8, uint64(s.EndTimestamp()))
	if !e.attributes(9, s.Attributes()) {
		return false
	}
	links := s.Links()
	for i := 0; i < links.Len(); i++ {
		l := links.At(i)
		lt, ls := l.TraceID(), l.SpanID()
		at := e.begin(13)
		if !lt.IsEmpty() {
			e.bytes(1, lt[:])
		}
		if !ls.IsEmpty() {
			e.bytes(2, ls[:])
		}
		e.end(at)
	}
	if c := s.Status().Code(); c != 0 {
		st := e.begin(15)
		e.tag(3, 0)
		e.varint(uint64(c))
		e.end(st)
	}
	e.end(at)
	return true
}

// attributes writes the kept attributes of m as repeated KeyValue field f.
func (e *Encoder) attributes(f int, m pcommon.Map) bool {
	ok := true
	m.Range(func(k string, v pcommon.Value) bool {
		if !e.wanted(k) {
			return true
		}
		kv := e.begin(f)
		e.str(1, k)
		val := e.begin(2)
		switch v.Type() {
		case pcommon.ValueTypeStr:
			e.str(1, v.Str())
		case pcommon.ValueTypeBool:
			e.tag(2, 0)
			if v.Bool() {
				e.varint(1)
			} else {
				e.varint(0)
			}
		case pcommon.ValueTypeInt:
			e.tag(3, 0)
			e.varint(uint64(v.Int()))
		case pcommon.ValueTypeDouble:
			e.fixed64(4, math.Float64bits(v.Double()))
		case pcommon.ValueTypeBytes:
			e.bytes(7, v.Bytes().AsRaw())
		case pcommon.ValueTypeEmpty:
		default:
			ok = false
			return false
		}
		e.end(val)
		e.end(kv)
		return true
	})
	return ok
}

func (e *Encoder) tag(field, wire int) { e.varint(uint64(field)<<3 | uint64(wire)) }

func (e *Encoder) varint(v uint64) { e.buf = binary.AppendUvarint(e.buf, v) }

func (e *Encoder) fixed64(field int, v uint64) {
	e.tag(field, 1)
	e.buf = binary.LittleEndian.AppendUint64(e.buf, v)
}

func (e *Encoder) bytes(field int, b []byte) {
	e.tag(field, 2)
	e.varint(uint64(len(b)))
	e.buf = append(e.buf, b...)
}

func (e *Encoder) str(field int, s string) {
	e.tag(field, 2)
	e.varint(uint64(len(s)))
	e.buf = append(e.buf, s...)
}

// begin starts a length-delimited field, leaving one byte for its length;
// end fills it in, moving the contents if the length needs more bytes.
func (e *Encoder) begin(field int) int {
	e.tag(field, 2)
	e.buf = append(e.buf, 0)
	return len(e.buf)
}

var zeros [binary.MaxVarintLen64]byte

func (e *Encoder) end(start int) {
	n := len(e.buf) - start
	if n < 0x80 {
		e.buf[start-1] = byte(n)
		return
	}
	var tmp [binary.MaxVarintLen64]byte
	k := binary.PutUvarint(tmp[:], uint64(n))
	e.buf = append(e.buf, zeros[:k-1]...)
	copy(e.buf[start+k-1:], e.buf[start:start+n])
	copy(e.buf[start-1:], tmp[:k])
}
