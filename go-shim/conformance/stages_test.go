package conformance

import (
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/servicemap/servicemap/go-shim/internal/projection"
)

// walkSink keeps the stage-walk benchmark's reads from being optimised away.
var walkSink uint64

// walk reads from td what the projection reads (IDs, kind, times, status,
// a CONSUMER span's links, every attribute key and, for the kept keys, the
// value), writing nothing: the price of visiting the pdata alone.
func walk(td ptrace.Traces, resource, span *projection.KeySet) uint64 {
	var sum uint64
	visit := func(m pcommon.Map, keep *projection.KeySet) {
		for k, v := range m.All() {
			sum += uint64(len(k))
			if keep.Has(k) && v.Type() == pcommon.ValueTypeStr {
				sum += uint64(len(v.Str()))
			}
		}
	}
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		visit(rs.Resource().Attributes(), resource)
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				s := spans.At(k)
				tid, sid, pid := s.TraceID(), s.SpanID(), s.ParentSpanID()
				sum += uint64(tid[15]) + uint64(sid[7]) + uint64(pid[7])
				sum += uint64(s.Kind()) + uint64(s.StartTimestamp()) + uint64(s.EndTimestamp())
				sum += uint64(s.Status().Code())
				visit(s.Attributes(), span)
				if s.Kind() == ptrace.SpanKindConsumer {
					links := s.Links()
					for l := 0; l < links.Len(); l++ {
						lt := links.At(l).TraceID()
						sum += uint64(lt[15])
					}
				}
			}
		}
	}
	return sum
}

// BenchmarkStages prices each part of what BenchmarkVsContrib's servicemap
// case does with a batch, per span, on the same workload and ring of
// batches: stage-walk visits the pdata as the projection does without
// writing anything; stage-project projects into a reused buffer;
// stage-cgo-call hands the engine an empty batch (the crossing into the
// library and back, once per batch); stage-engine is the engine's own work
// on projected batches (as servicemap-engine-only), and stage-all is
// projection and engine together (as the servicemap case). The walk is in
// the projection's price; the projection's own writing is stage-project
// minus stage-walk.
func BenchmarkStages(b *testing.B) {
	for _, size := range []int{100, 1000} {
		batches, p := benchRing(size)
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			s := benchSettings()
			b.Run("stage-walk", func(b *testing.B) {
				eng := newBenchEngine(b, s, nil)
				keys, err := eng.WantedKeys()
				if err != nil {
					b.Fatal(err)
				}
				resource, span := projection.NewKeySet(keys.Resource), projection.NewKeySet(keys.Span)
				r := &replay{batches: batches}
				timed(b, p, func(m *meter) {
					walkSink += walk(r.batch(m), &resource, &span)
				})
			})
			b.Run("stage-project", func(b *testing.B) {
				eng := newBenchEngine(b, s, nil)
				encode, err := projection.ForEngine(eng)
				if err != nil {
					b.Fatal(err)
				}
				r := &replay{batches: batches}
				var buf []byte
				timed(b, p, func(m *meter) {
					raw, err := encode(buf[:0], r.batch(m))
					if err != nil {
						b.Fatal(err)
					}
					buf = raw
				})
				b.ReportMetric(float64(len(buf))/float64(size), "B/span")
			})
			// stage-project-hot projects one batch over and over: its pdata
			// stays in the CPU's caches, so this is the projection's work
			// without the memory stalls of reading a batch once.
			b.Run("stage-project-hot", func(b *testing.B) {
				eng := newBenchEngine(b, s, nil)
				encode, err := projection.ForEngine(eng)
				if err != nil {
					b.Fatal(err)
				}
				var buf []byte
				timed(b, p, func(m *meter) {
					raw, err := encode(buf[:0], batches[0])
					if err != nil {
						b.Fatal(err)
					}
					buf = raw
				})
			})
			b.Run("stage-walk-hot", func(b *testing.B) {
				eng := newBenchEngine(b, s, nil)
				keys, err := eng.WantedKeys()
				if err != nil {
					b.Fatal(err)
				}
				resource, span := projection.NewKeySet(keys.Resource), projection.NewKeySet(keys.Span)
				timed(b, p, func(m *meter) {
					walkSink += walk(batches[0], &resource, &span)
				})
			})
			b.Run("stage-cgo-call", func(b *testing.B) {
				eng := newBenchEngine(b, s, nil)
				now := time.Now()
				timed(b, p, func(m *meter) {
					if err := eng.Consume(nil, now); err != nil {
						b.Fatal(err)
					}
				})
			})
			b.Run("stage-engine", func(b *testing.B) {
				eng := newBenchEngine(b, s, nil)
				engineOnly(b, p, eng, batches, 1<<41, s.ttl)
			})
			b.Run("stage-all", func(b *testing.B) {
				eng := newBenchEngine(b, s, nil)
				encode, err := projection.ForEngine(eng)
				if err != nil {
					b.Fatal(err)
				}
				r := &replay{batches: batches, pass: 1 << 42}
				projectAndConsume(b, p, eng, encode, r, s.ttl)
			})
		})
	}
}
