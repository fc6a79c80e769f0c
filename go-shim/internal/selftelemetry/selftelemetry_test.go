package selftelemetry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/zap"

	"github.com/servicemap/servicemap/go-shim/internal/engine"
	"github.com/servicemap/servicemap/go-shim/internal/logthrottle"
	"github.com/servicemap/servicemap/go-shim/internal/projection"
	"github.com/servicemap/servicemap/go-shim/internal/testutil"
)

func TestParseStats(t *testing.T) {
	got, err := ParseStats([]byte(`{"waiting": 3, "batches_rejected": 1, "by_kind": {"SPAN_KIND_CLIENT": 2, "server": 0},
		"healthy": true, "name": "x", "list": [1], "nothing": null, "odd key": 1.5}`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"waiting": 3, "batches_rejected": 1, "by_kind_span_kind_client": 2, "by_kind_server": 0, "healthy": 1, "odd_key": 1.5}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if m, err := ParseStats(nil); err != nil || len(m) != 0 {
		t.Errorf("empty input: %v, %v", m, err)
	}
	if _, err := ParseStats([]byte("[1]")); err == nil {
		t.Error("a JSON array was accepted")
	}
}

// sumOf adds up the points of a sum or gauge.
func sumOf(t *testing.T, tt *componenttest.Telemetry, name string) float64 {
	t.Helper()
	m, err := tt.GetMetric(name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var total float64
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		for _, p := range d.DataPoints {
			total += float64(p.Value)
		}
	case metricdata.Gauge[int64]:
		for _, p := range d.DataPoints {
			total += float64(p.Value)
		}
	default:
		t.Fatalf("%s has unexpected data %T", name, m.Data)
	}
	return total
}

// prefix starts the name of each metric the components' metadata.yaml
// declare, as mdatagen names the instruments.
const prefix = "otelcol_servicemap_"

// testBuilder has the shape of a generated metadata.TelemetryBuilder: an
// unexported meter, one exported field per metric of metadata.yaml, and
// Shutdown.
type testBuilder struct {
	meter                        metric.Meter
	ServicemapBatches            metric.Int64Counter
	ServicemapBatchesRejected    metric.Int64Counter
	ServicemapConsumeDuration    metric.Float64Histogram
	ServicemapEngineEdgesExpired metric.Int64ObservableCounter
	ServicemapEngineWaiting      metric.Int64ObservableGauge
	ServicemapSpans              metric.Int64Counter

	shutdowns int
}

func (b *testBuilder) Shutdown() { b.shutdowns++ }

// newTestBuilder creates the builder's instruments as mdatagen's code does,
// with the names the components' metadata.yaml give them.
func newTestBuilder(t *testing.T, tt *componenttest.Telemetry) *testBuilder {
	t.Helper()
	m := tt.NewTelemetrySettings().MeterProvider.Meter("test")
	b := &testBuilder{meter: m}
	var err error
	var errs []error
	b.ServicemapBatches, err = m.Int64Counter(prefix+"batches", metric.WithUnit("{batch}"))
	errs = append(errs, err)
	b.ServicemapBatchesRejected, err = m.Int64Counter(prefix+"batches_rejected", metric.WithUnit("{batch}"))
	errs = append(errs, err)
	b.ServicemapConsumeDuration, err = m.Float64Histogram(prefix+"consume_duration", metric.WithUnit("s"))
	errs = append(errs, err)
	b.ServicemapEngineEdgesExpired, err = m.Int64ObservableCounter(prefix+"engine_edges_expired", metric.WithUnit("{edge}"))
	errs = append(errs, err)
	b.ServicemapEngineWaiting, err = m.Int64ObservableGauge(prefix+"engine_waiting", metric.WithUnit("{edge}"))
	errs = append(errs, err)
	b.ServicemapSpans, err = m.Int64Counter(prefix+"spans", metric.WithUnit("{span}"))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestStatisticKey(t *testing.T) {
	for camel, key := range map[string]string{
		"Waiting":                     "waiting",
		"EdgesExpired":                "edges_expired",
		"ExpiredByKindSpanKindServer": "expired_by_kind_span_kind_server",
		"OverflowHistorySnapshots":    "overflow_history_snapshots",
	} {
		if got := statisticKey(camel); got != key {
			t.Errorf("statisticKey(%q) = %q, want %q", camel, got, key)
		}
	}
}

func TestInstrumentsOf(t *testing.T) {
	tt := componenttest.NewTelemetry()
	defer func() { _ = tt.Shutdown(context.Background()) }()
	b := newTestBuilder(t, tt)
	inst, err := InstrumentsOf(b, b.meter)
	if err != nil {
		t.Fatal(err)
	}
	if inst.Meter != b.meter || inst.Spans != b.ServicemapSpans || inst.Batches != b.ServicemapBatches ||
		inst.BatchesRejected != b.ServicemapBatchesRejected || inst.ConsumeDuration != b.ServicemapConsumeDuration {
		t.Errorf("instruments %+v do not match the builder's %+v", inst, b)
	}
	if len(inst.Engine) != 2 || inst.Engine["edges_expired"] != b.ServicemapEngineEdgesExpired || inst.Engine["waiting"] != b.ServicemapEngineWaiting {
		t.Errorf("engine instruments %v", inst.Engine)
	}
	tel, err := New(inst, func(time.Time) ([]byte, error) { return []byte(`{"waiting": 1, "edges_expired": 2}`), nil })
	if err != nil {
		t.Fatal(err)
	}
	tel.Shutdown()
	tel.Shutdown()
	if b.shutdowns != 1 {
		t.Errorf("the builder was shut down %d times, want 1", b.shutdowns)
	}
}

// TestInstrumentsOfWithoutSpans: the receiver declares no span counter.
func TestInstrumentsOfWithoutSpans(t *testing.T) {
	tt := componenttest.NewTelemetry()
	defer func() { _ = tt.Shutdown(context.Background()) }()
	b := newTestBuilder(t, tt)
	inst, err := InstrumentsOf(&struct {
		ServicemapBatches         metric.Int64Counter
		ServicemapBatchesRejected metric.Int64Counter
		ServicemapConsumeDuration metric.Float64Histogram
	}{b.ServicemapBatches, b.ServicemapBatchesRejected, b.ServicemapConsumeDuration}, b.meter)
	if err != nil {
		t.Fatal(err)
	}
	tel, err := New(inst, func(time.Time) ([]byte, error) { return []byte(`{}`), nil })
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown()
	tel.Batch(context.Background(), 7)
	if got := sumOf(t, tt, prefix+"batches"); got != 1 {
		t.Errorf("batches = %v, want 1", got)
	}
	if _, err := tt.GetMetric(prefix + "spans"); err == nil {
		t.Error("spans were counted without a span counter")
	}
}

func TestInstrumentsOfRefusesWhatItCannotUse(t *testing.T) {
	tt := componenttest.NewTelemetry()
	defer func() { _ = tt.Shutdown(context.Background()) }()
	b := newTestBuilder(t, tt)
	for _, c := range []struct {
		name    string
		builder any
		want    string
	}{
		{"not a pointer", *b, "is not a pointer to a telemetry builder"},
		{"nil", (*testBuilder)(nil), "is not a pointer to a telemetry builder"},
		{"unknown instrument", &struct {
			ServicemapBatches         metric.Int64Counter
			ServicemapBatchesRejected metric.Int64Counter
			ServicemapConsumeDuration metric.Float64Histogram
			ServicemapQueueSize       metric.Int64Gauge
		}{b.ServicemapBatches, b.ServicemapBatchesRejected, b.ServicemapConsumeDuration, nil},
			"instrument ServicemapQueueSize has no use in the servicemap components"},
		{"wrong type", &struct {
			ServicemapBatches         metric.Int64Counter
			ServicemapBatchesRejected metric.Int64Counter
			ServicemapConsumeDuration metric.Int64Counter
		}{b.ServicemapBatches, b.ServicemapBatchesRejected, b.ServicemapBatches},
			"instrument ServicemapConsumeDuration is a metric.Int64Counter, not what the servicemap components record into it"},
		{"missing", &struct {
			ServicemapBatches       metric.Int64Counter
			ServicemapEngineWaiting metric.Int64ObservableGauge
		}{b.ServicemapBatches, b.ServicemapEngineWaiting},
			"no instrument ServicemapBatchesRejected\nno instrument ServicemapConsumeDuration"},
	} {
		_, err := InstrumentsOf(c.builder, b.meter)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
	}
}

// TestEveryStatisticHasItsInstrument: a statistic the engine reports with
// no instrument, or an instrument for one it does not report, is an error
// naming them.
func TestEveryStatisticHasItsInstrument(t *testing.T) {
	tt := componenttest.NewTelemetry()
	defer func() { _ = tt.Shutdown(context.Background()) }()
	b := newTestBuilder(t, tt)
	inst, err := InstrumentsOf(b, b.meter)
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(inst, func(time.Time) ([]byte, error) {
		return []byte(`{"waiting": 1, "overflow": {"graph_nodes": 0}, "active_series": 3}`), nil
	})
	want := "servicemap telemetry: engine statistics without an instrument: [active_series overflow_graph_nodes]; " +
		"instruments without an engine statistic: [edges_expired]"
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %q", err, want)
	}
	_, err = New(inst, func(time.Time) ([]byte, error) { return nil, errors.New("engine closed") })
	if want := "servicemap telemetry: reading the engine statistics: engine closed"; err == nil || err.Error() != want {
		t.Errorf("error %v, want %q", err, want)
	}
}

func TestInstruments(t *testing.T) {
	tt := componenttest.NewTelemetry()
	defer func() { _ = tt.Shutdown(context.Background()) }()
	waiting := 4
	stats := func(time.Time) ([]byte, error) {
		if waiting == 4 {
			return []byte(`{"waiting": 4, "edges_expired": 7}`), nil
		}
		return []byte(`{"waiting": 1, "edges_expired": 9}`), nil
	}
	b := newTestBuilder(t, tt)
	inst, err := InstrumentsOf(b, b.meter)
	if err != nil {
		t.Fatal(err)
	}
	tel, err := New(inst, stats)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(tel.StatKeys()); got != "[edges_expired waiting]" {
		t.Errorf("observed statistics %s", got)
	}
	ctx := context.Background()
	tel.Batch(ctx, 10)
	tel.Batch(ctx, 5)
	tel.Rejected(ctx)
	if got := sumOf(t, tt, prefix+"spans"); got != 15 {
		t.Errorf("spans = %v", got)
	}
	if got := sumOf(t, tt, prefix+"batches"); got != 2 {
		t.Errorf("batches = %v", got)
	}
	if got := sumOf(t, tt, prefix+"batches_rejected"); got != 1 {
		t.Errorf("batches_rejected = %v", got)
	}
	if got := sumOf(t, tt, prefix+"engine_waiting"); got != 4 {
		t.Errorf("engine_waiting = %v", got)
	}
	if got := sumOf(t, tt, prefix+"engine_edges_expired"); got != 7 {
		t.Errorf("engine_edges_expired = %v", got)
	}
	waiting = 1
	if got := sumOf(t, tt, prefix+"engine_waiting"); got != 1 {
		t.Errorf("engine_waiting after change = %v", got)
	}
	if got := sumOf(t, tt, prefix+"engine_edges_expired"); got != 9 {
		t.Errorf("engine_edges_expired after change = %v", got)
	}
	tel.Shutdown()
	tel.Shutdown()
	if _, err := tt.GetMetric(prefix + "engine_waiting"); err == nil {
		t.Error("the engine is still observed after Shutdown")
	}
}

// engineInstruments makes the instruments a component declares, with one
// engine instrument for each statistic eng reports.
func engineInstruments(t *testing.T, tt *componenttest.Telemetry, eng *engine.Engine) Instruments {
	t.Helper()
	b := newTestBuilder(t, tt)
	inst, err := InstrumentsOf(b, b.meter)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := eng.Render(engine.FormatStatsJSON, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	stats, err := ParseStats(raw)
	if err != nil {
		t.Fatal(err)
	}
	inst.Engine = map[string]metric.Int64Observable{}
	for k := range stats {
		if inst.Engine[k], err = b.meter.Int64ObservableGauge(prefix + "engine_" + k); err != nil {
			t.Fatal(err)
		}
	}
	return inst
}

func TestInstrumentsFromEngine(t *testing.T) {
	tel, tt, eng, encode := newIngestFixture(t)
	if len(tel.StatKeys()) == 0 {
		t.Fatal("no engine statistic observed")
	}
	now := time.Unix(1_800_000_000, 0)
	if !tel.Ingest(context.Background(), eng, encode, now, logthrottle.NewRejectLog(zap.NewNop(), time.Minute, time.Now, ""), testutil.ClientServer("a", "b", now, false)) {
		t.Fatal("batch rejected")
	}
	for _, k := range tel.StatKeys() {
		if _, err := tt.GetMetric(prefix + "engine_" + k); err != nil {
			t.Errorf("engine statistic %s: %v", k, err)
		}
	}
	for k, want := range map[string]float64{"batches_accepted": 1, "spans_received": 2, "edges_new": 1, "edges_completed": 1, "waiting": 0} {
		if got := sumOf(t, tt, prefix+"engine_"+k); got != want {
			t.Errorf("engine_%s = %v, want %v", k, got, want)
		}
	}
}

// TestConsumeDuration: every batch handed over, taken or not, is timed.
func TestConsumeDuration(t *testing.T) {
	tel, tt, eng, encode := newIngestFixture(t)
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0)
	rejects := logthrottle.NewRejectLog(zap.NewNop(), time.Minute, time.Now, "")
	if !tel.Ingest(ctx, eng, encode, now, rejects, testutil.ClientServer("a", "b", now, false)) {
		t.Fatal("batch rejected")
	}
	if tel.Ingest(ctx, eng, func(b []byte, _ ptrace.Traces) ([]byte, error) { return append(b, 0xff), nil }, now, rejects,
		testutil.ClientServer("a", "b", now, false)) {
		t.Fatal("a malformed batch was taken")
	}
	if _, err := tel.IngestBytes(ctx, eng, now, rejects, []byte{0xff}); err == nil {
		t.Fatal("malformed bytes were taken")
	}
	if tel.Ingest(ctx, eng, encode, now, rejects, ptrace.NewTraces()) {
		t.Fatal("an empty batch was fed")
	}
	p, err := testutil.HistogramPoint(tt, prefix+"consume_duration")
	if err != nil {
		t.Fatal(err)
	}
	if p.Count != 3 || p.Sum <= 0 {
		t.Errorf("consume_duration counted %d batches taking %vs, want 3 taking more than 0s", p.Count, p.Sum)
	}
	if got := sumOf(t, tt, prefix+"batches"); got != 3 {
		t.Errorf("batches = %v, want 3", got)
	}
	if got := sumOf(t, tt, prefix+"batches_rejected"); got != 2 {
		t.Errorf("batches_rejected = %v, want 2", got)
	}
}

func newIngestFixture(t *testing.T) (*Telemetry, *componenttest.Telemetry, *engine.Engine, projection.Encode) {
	t.Helper()
	eng, err := engine.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	encode, err := projection.ForEngine(eng)
	if err != nil {
		t.Fatal(err)
	}
	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { _ = tt.Shutdown(context.Background()) })
	tel, err := ForEngine(engineInstruments(t, tt, eng), eng)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tel.Shutdown)
	return tel, tt, eng, encode
}

// TestIngestAllocatesNothing: once the pooled buffers have grown, handing a
// batch to the engine allocates no Go memory.
func TestIngestAllocatesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts")
	}
	tel, _, eng, encode := newIngestFixture(t)
	rejects := logthrottle.NewRejectLog(zap.NewNop(), time.Minute, time.Now, "")
	now := time.Unix(1_800_000_000, 0)
	td := testutil.ClientServer("a", "b", now, false)
	ctx := context.Background()
	tel.Ingest(ctx, eng, encode, now, rejects, td)
	allocs := testing.AllocsPerRun(100, func() {
		if !tel.Ingest(ctx, eng, encode, now, rejects, td) {
			t.Fatal("batch rejected")
		}
	})
	// The race detector's sync.Pool drops items at random; allow for it.
	if allocs > 0 && !raceEnabled {
		t.Errorf("%v allocations per batch", allocs)
	}
}

// TestConcurrentIngest: batches ingested at once each get their own buffer.
func TestConcurrentIngest(t *testing.T) {
	tel, tt, eng, encode := newIngestFixture(t)
	rejects := logthrottle.NewRejectLog(zap.NewNop(), time.Minute, time.Now, "")
	now := time.Unix(1_800_000_000, 0)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				td := testutil.ClientServer("a", "b", now, i%2 == 0)
				if !tel.Ingest(context.Background(), eng, encode, now, rejects, td) {
					t.Error("batch rejected")
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := sumOf(t, tt, prefix+"batches"); n != 200 {
		t.Errorf("%v batches counted, want 200", n)
	}
	if err := eng.Flush(now); err != nil {
		t.Fatal(err)
	}
	// A new series reads as zero for initial_zero_hold (a minute).
	prom, err := eng.Render(engine.FormatPrometheus, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	total, _ := testutil.Sample(prom, "traces_service_graph_request_total", map[string]string{"client": "a", "server": "b"})
	failed, _ := testutil.Sample(prom, "traces_service_graph_request_failed_total", map[string]string{"client": "a", "server": "b"})
	if total != 200 || failed != 100 {
		t.Errorf("requests %v, failed %v; want 200 and 100", total, failed)
	}
}
