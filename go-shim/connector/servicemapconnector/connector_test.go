package servicemapconnector

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/connector/connectortest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/servicemap/servicemap/go-shim/connector/servicemapconnector/internal/metadata"
	"github.com/servicemap/servicemap/go-shim/connector/servicemapconnector/internal/metadatatest"
	"github.com/servicemap/servicemap/go-shim/internal/engine"
	"github.com/servicemap/servicemap/go-shim/internal/projection"
	"github.com/servicemap/servicemap/go-shim/internal/selftelemetry"
	"github.com/servicemap/servicemap/go-shim/internal/testutil"
)

type fixture struct {
	c      *serviceMapConnector
	sink   *consumertest.MetricsSink
	tel    *componenttest.Telemetry
	clock  *testutil.Clock
	expiry *testutil.Ticker
	pushes *testutil.Ticker
	logs   *observer.ObservedLogs
}

const (
	testExpiryLoop = 3 * time.Second
	testFlushEvery = 17 * time.Second
)

func testConfig() *Config {
	cfg := createDefaultConfig()
	cfg.StoreExpirationLoop = testExpiryLoop
	every := testFlushEvery
	cfg.MetricsFlushInterval = &every
	return cfg
}

// newFixture builds a connector with a hand-driven clock and tickers.
func newFixture(t *testing.T, cfg *Config) *fixture {
	t.Helper()
	f := &fixture{
		sink:   &consumertest.MetricsSink{},
		tel:    componenttest.NewTelemetry(),
		clock:  testutil.NewClock(time.Unix(1_700_000_000, 0)),
		expiry: testutil.NewTicker(),
		pushes: testutil.NewTicker(),
	}
	t.Cleanup(func() { _ = f.tel.Shutdown(context.Background()) })
	telset := f.tel.NewTelemetrySettings()
	core, logs := observer.New(zapcore.InfoLevel)
	telset.Logger = zap.New(core)
	f.logs = logs
	c, err := newConnector(telset, cfg, f.sink)
	if err != nil {
		t.Fatal(err)
	}
	c.loop.Now = f.clock.Now
	c.loop.NewTicker = testutil.Tickers(t, map[time.Duration]*testutil.Ticker{testExpiryLoop: f.expiry, testFlushEvery: f.pushes})
	c.loop.AfterExpire = f.expiry.Handled
	c.loop.AfterPush = f.pushes.Handled
	f.c = c
	return f
}

func (f *fixture) start(t *testing.T) {
	t.Helper()
	if err := f.c.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.c.Shutdown(context.Background()) })
}

// push runs one pass of the push loop and waits for it.
func (f *fixture) push() {
	f.pushes.Tick(f.clock.Now())
}

// expire runs one pass of the expiry loop and waits for it.
func (f *fixture) expire() {
	f.expiry.Tick(f.clock.Now())
}

// TestOwnTelemetry: the connector records through the instruments its
// metadata.yaml declares.
func TestOwnTelemetry(t *testing.T) {
	f := newFixture(t, testConfig())
	f.start(t)
	if err := f.c.ConsumeTraces(context.Background(), testutil.ClientServer("a", "b", f.clock.Now(), false)); err != nil {
		t.Fatal(err)
	}
	points := func(v int64) []metricdata.DataPoint[int64] { return []metricdata.DataPoint[int64]{{Value: v}} }
	noTime := metricdatatest.IgnoreTimestamp()
	metadatatest.AssertEqualServicemapSpans(t, f.tel, points(2), noTime)
	metadatatest.AssertEqualServicemapBatches(t, f.tel, points(1), noTime)
	metadatatest.AssertEqualServicemapEngineSpansReceived(t, f.tel, points(2), noTime)
	metadatatest.AssertEqualServicemapEngineEdgesCompleted(t, f.tel, points(1), noTime)
	metadatatest.AssertEqualServicemapEngineWaiting(t, f.tel, points(0), noTime)
	metadatatest.AssertEqualServicemapConsumeDuration(t, f.tel, []metricdata.HistogramDataPoint[float64]{{}}, noTime, metricdatatest.IgnoreValue())
	if p, err := testutil.HistogramPoint(f.tel, "otelcol_servicemap_consume_duration"); err != nil || p.Count != 1 {
		t.Errorf("consume_duration %+v (%v), want 1 batch", p, err)
	}
}

func TestFactory(t *testing.T) {
	f := NewFactory()
	if f.Type().String() != "servicemap" {
		t.Errorf("type %s", f.Type())
	}
	if f.TracesToMetricsStability() != metadata.TracesToMetricsStability {
		t.Errorf("stability %s", f.TracesToMetricsStability())
	}
	cfg := f.CreateDefaultConfig()
	set := connectortest.NewNopSettings(metadata.Type)
	c, err := f.CreateTracesToMetrics(context.Background(), set, cfg, consumertest.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if c.Capabilities().MutatesData {
		t.Error("the connector claims to mutate data")
	}
	if err := c.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	if err := c.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	var _ connector.Traces = c
}

func TestCreateRejectsInvalidConfig(t *testing.T) {
	cfg := createDefaultConfig()
	ttl := -time.Second
	cfg.Store.TTL = &ttl
	_, err := NewFactory().CreateTracesToMetrics(context.Background(), connectortest.NewNopSettings(metadata.Type), cfg, consumertest.NewNop())
	if err == nil || !strings.Contains(err.Error(), "`store.ttl`") {
		t.Fatalf("create with a negative ttl: %v", err)
	}
}

func TestEmitsMetricsOnFlush(t *testing.T) {
	f := newFixture(t, testConfig())
	f.start(t)
	ctx := context.Background()
	if err := f.c.ConsumeTraces(ctx, testutil.ClientServer("a", "b", f.clock.Now(), false)); err != nil {
		t.Fatal(err)
	}
	if err := f.c.ConsumeTraces(ctx, testutil.ClientServer("a", "b", f.clock.Now(), true)); err != nil {
		t.Fatal(err)
	}
	if n := len(f.sink.AllMetrics()); n != 0 {
		t.Fatalf("%d pushes before the flush interval", n)
	}
	f.clock.Add(testFlushEvery)
	f.push()
	pushes := f.sink.AllMetrics()
	if len(pushes) != 1 {
		t.Fatalf("%d pushes, want 1", len(pushes))
	}
	md := pushes[0]
	// Contrib semantics: a failed label on every series.
	ok := map[string]string{"client": "a", "server": "b", "failed": "false"}
	failed := map[string]string{"client": "a", "server": "b", "failed": "true"}
	if v, found := testutil.MetricValue(md, "traces_service_graph_request_total", ok); !found || v != 1 {
		t.Errorf("request_total{failed=false} = %v (found %v), want 1", v, found)
	}
	if v, found := testutil.MetricValue(md, "traces_service_graph_request_total", failed); !found || v != 1 {
		t.Errorf("request_total{failed=true} = %v (found %v), want 1", v, found)
	}
	if v, found := testutil.MetricValue(md, "traces_service_graph_request_failed_total", failed); !found || v != 1 {
		t.Errorf("request_failed_total = %v (found %v), want 1", v, found)
	}
	if v, found := testutil.MetricValue(md, "traces_service_graph_request_server", ok); !found || v != 1 {
		t.Errorf("request_server histogram count = %v (found %v), want 1", v, found)
	}

	// Cumulative: the next push still carries the totals.
	if err := f.c.ConsumeTraces(ctx, testutil.ClientServer("a", "b", f.clock.Now(), false)); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(testFlushEvery)
	f.push()
	pushes = f.sink.AllMetrics()
	if len(pushes) != 2 {
		t.Fatalf("%d pushes, want 2", len(pushes))
	}
	if v, _ := testutil.MetricValue(pushes[1], "traces_service_graph_request_total", ok); v != 2 {
		t.Errorf("second push request_total{failed=false} = %v, want 2", v)
	}
}

func TestNothingIsSentWithoutSeries(t *testing.T) {
	f := newFixture(t, testConfig())
	f.start(t)
	f.push()
	if n := len(f.sink.AllMetrics()); n != 0 {
		t.Fatalf("%d pushes with no series", n)
	}
}

func TestFlushAfterEveryBatch(t *testing.T) {
	cfg := testConfig()
	zero := time.Duration(0)
	cfg.MetricsFlushInterval = &zero
	f := newFixture(t, cfg)
	f.start(t)
	for i := 1; i <= 3; i++ {
		if err := f.c.ConsumeTraces(context.Background(), testutil.ClientServer("a", "b", f.clock.Now(), false)); err != nil {
			t.Fatal(err)
		}
		pushes := f.sink.AllMetrics()
		if len(pushes) != i {
			t.Fatalf("after batch %d: %d pushes", i, len(pushes))
		}
		if v, _ := testutil.MetricValue(pushes[i-1], "traces_service_graph_request_total", map[string]string{"client": "a"}); v != float64(i) {
			t.Errorf("after batch %d: request_total = %v", i, v)
		}
	}
}

func TestExpiryMakesVirtualNodes(t *testing.T) {
	f := newFixture(t, testConfig())
	f.start(t)
	if err := f.c.ConsumeTraces(context.Background(), testutil.LoneClient("shop", "payments-gateway", f.clock.Now())); err != nil {
		t.Fatal(err)
	}
	f.expire() // not due yet
	f.push()
	if n := len(f.sink.AllMetrics()); n != 0 {
		t.Fatalf("%d pushes before the edge expired", n)
	}
	f.clock.Add(time.Minute)
	f.expire()
	f.push()
	pushes := f.sink.AllMetrics()
	if len(pushes) != 1 {
		t.Fatalf("%d pushes, want 1", len(pushes))
	}
	labels := map[string]string{"client": "shop", "server": "payments-gateway", "connection_type": "virtual_node"}
	if v, ok := testutil.MetricValue(pushes[0], "traces_service_graph_request_total", labels); !ok || v != 1 {
		t.Errorf("virtual edge request_total = %v (found %v), want 1", v, ok)
	}
}

// TestExpiryWarnsOfOverflowedCaps: the shared expiry loop checks the
// engine's caps after each pass; with max_series at 1 a second edge's
// series are refused, and the warning counts them.
func TestExpiryWarnsOfOverflowedCaps(t *testing.T) {
	cfg := testConfig()
	one := 1
	cfg.MaxSeries = &one
	f := newFixture(t, cfg)
	f.start(t)
	for _, edge := range [][2]string{{"a", "b"}, {"c", "d"}} {
		if err := f.c.ConsumeTraces(context.Background(), testutil.ClientServer(edge[0], edge[1], f.clock.Now(), false)); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := f.c.eng.Render(engine.FormatStatsJSON, f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	stats, err := selftelemetry.ParseStats(raw)
	if err != nil {
		t.Fatal(err)
	}
	refused := int64(stats["series_refused"])
	if refused == 0 {
		t.Fatal("the engine refused no series past max_series 1")
	}
	f.expire()
	w := f.logs.FilterMessageSnippet("servicemap engine caps overflowed").All()
	if len(w) != 1 || w[0].Level != zapcore.WarnLevel || w[0].ContextMap()["series_refused"] != refused {
		t.Fatalf("%+v, want one warning with series_refused %d", w, refused)
	}
}

func TestShutdownFlushesAndPushesOnce(t *testing.T) {
	f := newFixture(t, testConfig())
	if err := f.c.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	if err := f.c.ConsumeTraces(context.Background(), testutil.LoneClient("shop", "payments-gateway", f.clock.Now())); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	pushes := f.sink.AllMetrics()
	if len(pushes) != 1 {
		t.Fatalf("%d pushes at shutdown, want 1", len(pushes))
	}
	if v, ok := testutil.MetricValue(pushes[0], "traces_service_graph_request_total", map[string]string{"client": "shop", "server": "payments-gateway"}); !ok || v != 1 {
		t.Errorf("flushed edge request_total = %v (found %v), want 1", v, ok)
	}
	if err := f.c.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(f.sink.AllMetrics()); n != 1 {
		t.Errorf("a second Shutdown pushed again (%d pushes)", n)
	}
}

func TestShutdownWithoutStart(t *testing.T) {
	f := newFixture(t, testConfig())
	if err := f.c.ConsumeTraces(context.Background(), testutil.ClientServer("a", "b", f.clock.Now(), false)); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(f.sink.AllMetrics()); n != 0 {
		t.Errorf("%d pushes from a connector that was never started", n)
	}
}

func TestRejectedBatchIsCounted(t *testing.T) {
	f := newFixture(t, testConfig())
	f.c.encode = func(dst []byte, _ ptrace.Traces) ([]byte, error) { return append(dst, testutil.Garbage...), nil }
	f.start(t)
	for i := 0; i < 2; i++ {
		if err := f.c.ConsumeTraces(context.Background(), testutil.ClientServer("a", "b", f.clock.Now(), false)); err != nil {
			t.Fatalf("a rejected batch is reported upstream: %v", err)
		}
	}
	metadatatest.AssertEqualServicemapBatchesRejected(t, f.tel, []metricdata.DataPoint[int64]{{Value: 2}}, metricdatatest.IgnoreTimestamp())
	f.c.encode = projection.Full
	if err := f.c.ConsumeTraces(context.Background(), testutil.ClientServer("a", "b", f.clock.Now(), false)); err != nil {
		t.Fatal(err)
	}
	f.push()
	if n := len(f.sink.AllMetrics()); n != 1 {
		t.Errorf("%d pushes after a good batch, want 1", n)
	}
}

func TestConcurrentConsumeAndFlush(t *testing.T) {
	cfg := testConfig()
	zero := time.Duration(0)
	cfg.MetricsFlushInterval = &zero
	f := newFixture(t, cfg)
	f.start(t)
	const workers, batches = 8, 30
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := 0; i < batches; i++ {
				if err := f.c.ConsumeTraces(context.Background(), testutil.ClientServer("a", "b", f.clock.Now(), false)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-start
		for i := 0; i < 5; i++ {
			f.expire()
		}
	}()
	close(start)
	wg.Wait()
	if err := f.c.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	pushes := f.sink.AllMetrics()
	if len(pushes) != workers*batches+1 {
		t.Fatalf("%d pushes, want one per batch plus the final one (%d)", len(pushes), workers*batches+1)
	}
	last := pushes[len(pushes)-1]
	if v, _ := testutil.MetricValue(last, "traces_service_graph_request_total", map[string]string{"client": "a"}); v != workers*batches {
		t.Errorf("final request_total = %v, want %d", v, workers*batches)
	}
}

// With histograms: native, the latency histograms are OTLP exponential
// histograms at the schema the bucket factor picks, and carry an exemplar.
func TestExponentialHistograms(t *testing.T) {
	cfg := testConfig()
	native := "native"
	cfg.Histograms = &native
	f := newFixture(t, cfg)
	f.start(t)
	if err := f.c.ConsumeTraces(context.Background(), testutil.ClientServer("a", "b", f.clock.Now(), false)); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(testFlushEvery)
	f.push()
	md := f.sink.AllMetrics()[0]
	found := map[string]bool{}
	ms := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics()
	for i := 0; i < ms.Len(); i++ {
		m := ms.At(i)
		if m.Type() == pmetric.MetricTypeHistogram {
			t.Errorf("%s: explicit buckets with histograms: native", m.Name())
		}
		if m.Type() != pmetric.MetricTypeExponentialHistogram {
			continue
		}
		found[m.Name()] = true
		p := m.ExponentialHistogram().DataPoints().At(0)
		// The client span lasts 100 ms: 0.1 s is in bucket ceil(8·log2 0.1) = -26
		// of schema 3, OTLP's index -27.
		if p.Scale() != 3 || p.Count() != 1 || p.ZeroCount() != 0 {
			t.Errorf("%s: scale %d, count %d, zero %d", m.Name(), p.Scale(), p.Count(), p.ZeroCount())
		}
		if m.Name() == "traces_service_graph_request_client" &&
			(p.Positive().Offset() != -27 || p.Positive().BucketCounts().Len() != 1 || p.Positive().BucketCounts().At(0) != 1) {
			t.Errorf("client buckets: offset %d, counts %v", p.Positive().Offset(), p.Positive().BucketCounts().AsRaw())
		}
		if p.Exemplars().Len() != 1 || p.Exemplars().At(0).TraceID().IsEmpty() {
			t.Errorf("%s: %d exemplars", m.Name(), p.Exemplars().Len())
		}
	}
	if !found["traces_service_graph_request_server"] || !found["traces_service_graph_request_client"] {
		t.Errorf("exponential histograms: %v", found)
	}
}
