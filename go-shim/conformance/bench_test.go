package conformance

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/connector/servicegraphconnector"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/connector/connectortest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/servicemap/servicemap/go-shim/conformance/internal/workload"
	"github.com/servicemap/servicemap/go-shim/internal/engine"
	"github.com/servicemap/servicemap/go-shim/internal/projection"
)

// benchSettings is the configuration both sides run with in the
// benchmarks: contrib's defaults (2s wait, default buckets), the two
// workload dimensions, the same peer and database attributes, and a store
// large enough that neither side refuses spans (contrib's default of 1000
// would make it drop most of the traffic, which is cheaper than pairing it).
func benchSettings() settings {
	return settings{
		dimensions:     workload.Dimensions,
		peerAttributes: peerAttributes,
		databaseNames:  databaseNameAttributes,
		ttl:            2 * time.Second,
		maxItems:       2_000_000,
	}
}

// newBenchContrib starts contrib's connector as a collector would run it:
// its own expiry loop every 2s, metrics flushed every 60s (its default).
func newBenchContrib(b *testing.B, s settings, ttl, loop time.Duration) connector.Traces {
	b.Helper()
	f := servicegraphconnector.NewFactory()
	cfg := f.CreateDefaultConfig().(*servicegraphconnector.Config)
	cfg.Dimensions = s.dimensions
	cfg.VirtualNodePeerAttributes = s.peerAttributes
	cfg.DatabaseNameAttributes = s.databaseNames
	cfg.Store.TTL = ttl
	cfg.Store.MaxItems = s.storeCap()
	cfg.StoreExpirationLoop = loop
	conn, err := f.CreateTracesToMetrics(context.Background(), connectortest.NewNopSettings(f.Type()), cfg, consumertest.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	if err := conn.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Shutdown(context.Background()) })
	return conn
}

func newBenchEngine(b *testing.B, s settings, extra map[string]any) *engine.Engine {
	b.Helper()
	eng, err := engine.New(engineConfig(s, extra))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(eng.Close)
	return eng
}

// cpuTime is the CPU time (user and system) this process has used: every
// thread, so the collector's own goroutines (contrib's expiry loop) and
// garbage collection count as well as the calling thread.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// meter follows the benchmark timer, adding up the CPU time spent while it
// runs. Wall time per span depends on what else the machine is running; CPU
// time much less so.
type meter struct {
	b       *testing.B
	cpu     time.Duration
	started time.Duration
}

func (m *meter) start() {
	m.b.StartTimer()
	m.started = cpuTime()
}

func (m *meter) stop() {
	m.cpu += cpuTime() - m.started
	m.b.StopTimer()
}

// replay hands out the batches in turn; each time round it gives the
// traces new IDs (outside the timed part) so that nothing is a repeat.
type replay struct {
	batches []ptrace.Traces
	next    int
	pass    uint64
}

func (r *replay) batch(m *meter) ptrace.Traces {
	if r.next == len(r.batches) {
		m.stop()
		r.pass++
		workload.Renumber(r.batches, r.pass)
		r.next = 0
		m.start()
	}
	td := r.batches[r.next]
	r.next++
	return td
}

// perSpan is a benchmark's average number of spans per batch; report gives
// its wall and CPU time per span.
type perSpan float64

func (p perSpan) report(b *testing.B, m *meter) {
	total := float64(b.N) * float64(p)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/total, "ns/span")
	b.ReportMetric(float64(m.cpu.Nanoseconds())/total, "cpu-ns/span")
}

// timed runs step b.N times with the timer and the CPU meter running (step
// may pause both for work that is not to count), then reports per span.
func timed(b *testing.B, p perSpan, step func(m *meter)) {
	b.ReportAllocs()
	b.ResetTimer()
	m := &meter{b: b}
	m.start()
	for i := 0; i < b.N; i++ {
		step(m)
	}
	m.stop()
	p.report(b, m)
}

// expiring hands batches to the engine as the connector does, running its
// expiry every ttl.
type expiring struct {
	eng  *engine.Engine
	ttl  time.Duration
	last time.Time
}

func (e *expiring) consume(b *testing.B, raw []byte) {
	now := time.Now()
	if e.last.IsZero() {
		e.last = now
	}
	if err := e.eng.Consume(raw, now); err != nil {
		b.Fatal(err)
	}
	if now.Sub(e.last) >= e.ttl {
		if err := e.eng.Expire(now); err != nil {
			b.Fatal(err)
		}
		e.last = now
	}
}

// projectAndConsume does what the servicemap connector does with each
// batch: encode it into a reused buffer and hand it to the engine.
func projectAndConsume(b *testing.B, p perSpan, eng *engine.Engine, encode projection.Encode, r *replay, ttl time.Duration) {
	var buf []byte
	e := &expiring{eng: eng, ttl: ttl, last: time.Now()}
	timed(b, p, func(m *meter) {
		raw, err := encode(buf[:0], r.batch(m))
		if err != nil {
			b.Fatal(err)
		}
		buf = raw
		e.consume(b, raw)
	})
}

// engineOnly times the engine alone: the batches are projected once per
// pass round the ring, outside the timed part, into buffers of their own.
func engineOnly(b *testing.B, p perSpan, eng *engine.Engine, batches []ptrace.Traces, pass uint64, ttl time.Duration) {
	project, err := projection.ForEngine(eng)
	if err != nil {
		b.Fatal(err)
	}
	encoded := make([][]byte, len(batches))
	encode := func(pass uint64) {
		workload.Renumber(batches, pass)
		for i, td := range batches {
			raw, err := project(encoded[i][:0], td)
			if err != nil {
				b.Fatal(err)
			}
			encoded[i] = raw
		}
	}
	encode(pass)
	next := 0
	e := &expiring{eng: eng, ttl: ttl, last: time.Now()}
	timed(b, p, func(m *meter) {
		if next == len(encoded) {
			m.stop()
			pass++
			encode(pass)
			next = 0
			m.start()
		}
		e.consume(b, encoded[next])
		next++
	})
}

// benchRing is the benchmarks' ring of batches of size spans, about 10,000
// spans in all: enough variety, and a small live heap, so that garbage
// collection (which scans it) costs what it would in a collector rather
// than what a huge test fixture costs.
func benchRing(size int) ([]ptrace.Traces, perSpan) {
	batches := workload.Batches(workload.Options{BatchSpans: size, Batches: 10_000 / size, Seed: 7})
	spans := 0
	for _, td := range batches {
		spans += td.SpanCount()
	}
	return batches, perSpan(float64(spans) / float64(len(batches)))
}

// BenchmarkVsContrib feeds the same batches to contrib's connector and to
// the engine. The engine's side includes encoding the batch to OTLP bytes
// as the servicemap connector and processor do (projection.ForEngine: only
// what the engine reads, into a reused buffer) and the cgo call; it also
// runs the engine's expiry every 2s inside the timed loop, where contrib's
// runs on its own goroutine.
func BenchmarkVsContrib(b *testing.B) {
	for _, size := range []int{100, 1000} {
		batches, p := benchRing(size)
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			b.Run("contrib", func(b *testing.B) {
				s := benchSettings()
				conn := newBenchContrib(b, s, s.ttl, s.ttl)
				r := &replay{batches: batches}
				ctx := context.Background()
				timed(b, p, func(m *meter) {
					if err := conn.ConsumeTraces(ctx, r.batch(m)); err != nil {
						b.Fatal(err)
					}
				})
			})
			// servicemap runs the engine as the connector does by default,
			// keeping the live service map as well; servicemap-graph-off does
			// only what contrib does (the metrics). servicemap-full-encoding
			// encodes each batch whole (ptrace.ProtoMarshaler) instead of
			// projecting it, as the shim did before projection.
			for _, v := range []struct {
				name  string
				extra map[string]any
				full  bool
			}{
				{"servicemap", nil, false},
				{"servicemap-graph-off", map[string]any{"graph": false}, false},
				{"servicemap-full-encoding", nil, true},
			} {
				b.Run(v.name, func(b *testing.B) {
					s := benchSettings()
					eng := newBenchEngine(b, s, v.extra)
					r := &replay{batches: batches}
					encode := projection.Encode(projection.Full)
					if !v.full {
						var err error
						if encode, err = projection.ForEngine(eng); err != nil {
							b.Fatal(err)
						}
					}
					projectAndConsume(b, p, eng, encode, r, s.ttl)
					o := &ourPeer{eng: eng, now: time.Now()}
					if st := o.stats(b); st.SpansDrop != 0 {
						b.Fatalf("the engine dropped %d spans; the comparison needs a store that refuses none", st.SpansDrop)
					}
				})
			}
			// servicemap-engine-only leaves the encoding out: the batches are
			// projected once per pass round the ring, outside the timed part,
			// into buffers of their own. Not a fair comparison (a collector
			// hands the connector pdata, not bytes); it shows what the engine
			// itself costs, and servicemap minus it what the encoding costs.
			b.Run("servicemap-engine-only", func(b *testing.B) {
				s := benchSettings()
				eng := newBenchEngine(b, s, nil)
				engineOnly(b, p, eng, batches, 1<<40, s.ttl)
			})
		})
	}
}

// waitingSpans is how many unpaired client spans the memory benchmark holds.
func waitingSpans() int {
	if v, err := strconv.Atoi(os.Getenv("CONFORMANCE_WAITING_SPANS")); err == nil && v > 0 {
		return v
	}
	return 200_000
}

// settle collects garbage and hands freed memory back to the OS, so that
// heap and RSS readings show what is still held.
func settle() {
	runtime.GC()
	runtime.GC()
	debug.FreeOSMemory()
}

func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// rssBytes is this process's resident set size.
func rssBytes(b *testing.B) int64 {
	raw, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		b.Skipf("no /proc/self/statm: %v", err)
	}
	f := strings.Fields(string(raw))
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return pages * int64(os.Getpagesize())
}

// BenchmarkWaitingSpanMemory measures what each side holds per half-edge
// waiting for its other side: N client spans whose servers never come, with
// a wait long enough that none expires. contrib: Go heap growth after
// garbage collection. servicemap: the engine's own account (store_bytes /
// waiting) and the process's RSS growth. Run it with -benchtime=1x.
func BenchmarkWaitingSpanMemory(b *testing.B) {
	n := waitingSpans()
	s := benchSettings()
	s.maxItems = 4 * n
	// Spans arrive as a receiver hands them over: decoded from the wire, so
	// every string a side keeps is its own allocation.
	var m ptrace.ProtoMarshaler
	var u ptrace.ProtoUnmarshaler
	wire := make([][]byte, 0, n/1000+1)
	for _, td := range workload.LoneClients(n, 1000, 11) {
		raw, err := m.MarshalTraces(td)
		if err != nil {
			b.Fatal(err)
		}
		wire = append(wire, raw)
	}

	b.Run("contrib", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			conn := newBenchContrib(b, s, time.Hour, time.Hour)
			settle()
			heap0, rss0 := heapInUse(), rssBytes(b)
			for _, raw := range wire {
				td, err := u.UnmarshalTraces(raw)
				if err != nil {
					b.Fatal(err)
				}
				if err := conn.ConsumeTraces(context.Background(), td); err != nil {
					b.Fatal(err)
				}
			}
			settle()
			heap1, rss1 := heapInUse(), rssBytes(b)
			b.ReportMetric(float64(int64(heap1)-int64(heap0))/float64(n), "heap-B/waiting-span")
			b.ReportMetric(float64(rss1-rss0)/float64(n), "rss-B/waiting-span")
			runtime.KeepAlive(conn)
		}
	})
	b.Run("servicemap", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			s.ttl = time.Hour
			eng := newBenchEngine(b, s, nil)
			o := &ourPeer{eng: eng, now: time.Now()}
			settle()
			rss0 := rssBytes(b)
			for _, raw := range wire {
				if err := eng.Consume(raw, o.now); err != nil {
					b.Fatal(err)
				}
			}
			settle()
			rss1 := rssBytes(b)
			st := o.stats(b)
			if st.Waiting != int64(n) {
				b.Fatalf("%d spans waiting, want %d", st.Waiting, n)
			}
			b.ReportMetric(float64(st.StoreBytes)/float64(st.Waiting), "store-B/waiting-span")
			b.ReportMetric(float64(rss1-rss0)/float64(n), "rss-B/waiting-span")
		}
	})
}

// BenchmarkEncode measures the shim's side alone: encoding the benchmark
// workload for the engine, whole (ptrace.ProtoMarshaler) or projected to
// what the engine reads (into a reused buffer). The ring of batches is as
// large as BenchmarkVsContrib's, so that as there most of the spans are not
// in the CPU's caches.
func BenchmarkEncode(b *testing.B) {
	batches := workload.Batches(workload.Options{BatchSpans: 1000, Batches: 10, Seed: 7})
	spans := 0
	for _, td := range batches {
		spans += td.SpanCount()
	}
	eng := newBenchEngine(b, benchSettings(), nil)
	projected, err := projection.ForEngine(eng)
	if err != nil {
		b.Fatal(err)
	}
	for _, v := range []struct {
		name   string
		encode projection.Encode
	}{{"full", projection.Full}, {"projected", projected}} {
		b.Run(v.name, func(b *testing.B) {
			var buf []byte
			b.ReportAllocs()
			cpu := cpuTime()
			for i := 0; i < b.N; i++ {
				raw, err := v.encode(buf[:0], batches[i%len(batches)])
				if err != nil {
					b.Fatal(err)
				}
				buf = raw
			}
			perSpan := float64(len(batches)) / float64(b.N) / float64(spans)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())*perSpan, "ns/span")
			b.ReportMetric(float64((cpuTime()-cpu).Nanoseconds())*perSpan, "cpu-ns/span")
			b.ReportMetric(float64(len(buf))*float64(len(batches))/float64(spans), "B/span")
		})
	}
}
