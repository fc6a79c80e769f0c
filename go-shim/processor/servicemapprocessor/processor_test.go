package servicemapprocessor

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/servicemap/servicemap/go-shim/internal/engine"
	"github.com/servicemap/servicemap/go-shim/internal/projection"
	"github.com/servicemap/servicemap/go-shim/internal/selftelemetry"
	"github.com/servicemap/servicemap/go-shim/internal/testutil"
	"github.com/servicemap/servicemap/go-shim/processor/servicemapprocessor/internal/metadata"
	"github.com/servicemap/servicemap/go-shim/processor/servicemapprocessor/internal/metadatatest"
)

type fixture struct {
	tp    processor.Traces
	p     *serviceMapProcessor
	sink  *consumertest.TracesSink
	tel   *componenttest.Telemetry
	clock *testutil.Clock
	// expiry is the expiry loop's ticker.
	expiry *testutil.Ticker
	// logs holds what the processor logged.
	logs *observer.ObservedLogs
}

func testConfig() *Config {
	cfg := createDefaultConfig()
	cfg.HTTP.NetAddr.Endpoint = "127.0.0.1:0"
	return cfg
}

// newFixture builds a processor with a hand-driven clock and expiry ticker.
func newFixture(t *testing.T, cfg *Config) *fixture {
	t.Helper()
	f := &fixture{
		sink:   new(consumertest.TracesSink),
		tel:    componenttest.NewTelemetry(),
		clock:  testutil.NewClock(time.Unix(1_700_000_000, 0)),
		expiry: testutil.NewTicker(),
	}
	t.Cleanup(func() { _ = f.tel.Shutdown(context.Background()) })
	set := processortest.NewNopSettings(metadata.Type)
	set.TelemetrySettings = f.tel.NewTelemetrySettings()
	core, logs := observer.New(zapcore.InfoLevel)
	set.TelemetrySettings.Logger = zap.New(core)
	f.logs = logs
	tp, p, err := newTracesProcessor(context.Background(), set, cfg, f.sink)
	if err != nil {
		t.Fatal(err)
	}
	p.loop.Now = f.clock.Now
	p.loop.NewTicker = testutil.Tickers(t, map[time.Duration]*testutil.Ticker{cfg.ExpirationLoop(): f.expiry})
	p.loop.AfterExpire = f.expiry.Handled
	f.tp, f.p = tp, p
	return f
}

// client is the tests' HTTP client. Its idle connections are closed before
// each shutdown: http.Server.Shutdown waits up to 5s for a connection that
// was opened but never used.
var client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}

func (f *fixture) start(t *testing.T) {
	t.Helper()
	f.startWith(t, componenttest.NewNopHost())
}

// startWith starts the processor on host (which may offer extensions).
func (f *fixture) startWith(t *testing.T, host component.Host) {
	t.Helper()
	if err := f.tp.Start(context.Background(), host); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.tp.Shutdown(context.Background()) })
	t.Cleanup(client.CloseIdleConnections)
}

func (f *fixture) url() string {
	return fmt.Sprintf("http://%s%s", f.p.addr(), f.p.cfg.HTTP.MetricsPath)
}

// expire runs one pass of the expiry loop and waits for it.
func (f *fixture) expire() {
	f.expiry.Tick(f.clock.Now())
}

func scrape(t *testing.T, url, accept string) (string, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, body)
	}
	return resp.Header.Get("Content-Type"), body
}

func marshal(t *testing.T, td ptrace.Traces) []byte {
	t.Helper()
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFactory(t *testing.T) {
	f := NewFactory()
	if f.Type() != metadata.Type || f.Type().String() != "servicemap" {
		t.Errorf("type %s", f.Type())
	}
	if f.TracesStability() != metadata.TracesStability {
		t.Errorf("stability %s", f.TracesStability())
	}
	cfg, ok := f.CreateDefaultConfig().(*Config)
	if !ok || cfg.Compat != "tempo" {
		t.Fatalf("default config %#v", f.CreateDefaultConfig())
	}
	cfg.HTTP.NetAddr.Endpoint = "127.0.0.1:0"
	tp, err := f.CreateTraces(context.Background(), processortest.NewNopSettings(metadata.Type), cfg, consumertest.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if tp.Capabilities().MutatesData {
		t.Error("the processor claims to mutate data")
	}
	if err := tp.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestCreateRejectsInvalidConfig(t *testing.T) {
	cfg := testConfig()
	bad := 0
	cfg.Store.MaxItems = &bad
	_, err := NewFactory().CreateTraces(context.Background(), processortest.NewNopSettings(metadata.Type), cfg, consumertest.NewNop())
	if err == nil || !strings.Contains(err.Error(), "`store.max_items`") {
		t.Fatalf("create with max_items 0: %v", err)
	}
}

func TestTracesPassThroughUnchanged(t *testing.T) {
	f := newFixture(t, testConfig())
	f.start(t)
	td := testutil.ClientServer("a", "b", f.clock.Now(), true)
	want := marshal(t, td)
	if err := f.tp.ConsumeTraces(context.Background(), td); err != nil {
		t.Fatal(err)
	}
	got := f.sink.AllTraces()
	if len(got) != 1 {
		t.Fatalf("%d batches passed on, want 1", len(got))
	}
	if !bytes.Equal(marshal(t, got[0]), want) {
		t.Error("the batch passed on differs from the batch received")
	}
	metadatatest.AssertEqualServicemapSpans(t, f.tel, []metricdata.DataPoint[int64]{{Value: 2}}, metricdatatest.IgnoreTimestamp())
}

// TestOwnTelemetry: the processor records through the instruments its
// metadata.yaml declares, and observes every statistic the engine reports.
func TestOwnTelemetry(t *testing.T) {
	f := newFixture(t, testConfig())
	f.start(t)
	if err := f.tp.ConsumeTraces(context.Background(), testutil.ClientServer("a", "b", f.clock.Now(), false)); err != nil {
		t.Fatal(err)
	}
	if err := f.tp.ConsumeTraces(context.Background(), testutil.LoneClient("c", "d", f.clock.Now())); err != nil {
		t.Fatal(err)
	}
	points := func(v int64) []metricdata.DataPoint[int64] { return []metricdata.DataPoint[int64]{{Value: v}} }
	noTime := metricdatatest.IgnoreTimestamp()
	metadatatest.AssertEqualServicemapSpans(t, f.tel, points(3), noTime)
	metadatatest.AssertEqualServicemapBatches(t, f.tel, points(2), noTime)
	metadatatest.AssertEqualServicemapEngineBatchesAccepted(t, f.tel, points(2), noTime)
	metadatatest.AssertEqualServicemapEngineSpansReceived(t, f.tel, points(3), noTime)
	metadatatest.AssertEqualServicemapEngineEdgesNew(t, f.tel, points(2), noTime)
	metadatatest.AssertEqualServicemapEngineEdgesCompleted(t, f.tel, points(1), noTime)
	metadatatest.AssertEqualServicemapEngineWaiting(t, f.tel, points(1), noTime)
	metadatatest.AssertEqualServicemapEngineSpansDropped(t, f.tel, points(0), noTime)
	metadatatest.AssertEqualServicemapConsumeDuration(t, f.tel, []metricdata.HistogramDataPoint[float64]{{}}, noTime, metricdatatest.IgnoreValue())
	p, err := testutil.HistogramPoint(f.tel, "otelcol_servicemap_consume_duration")
	if err != nil {
		t.Fatal(err)
	}
	bounds := []float64{0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}
	if p.Count != 2 || !slices.Equal(p.Bounds, bounds) {
		t.Errorf("consume_duration: %d batches in buckets %v, want 2 in %v", p.Count, p.Bounds, bounds)
	}

	raw, err := f.p.eng.Render(engine.FormatStatsJSON, f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	stats, err := selftelemetry.ParseStats(raw)
	if err != nil {
		t.Fatal(err)
	}
	if keys := slices.Sorted(maps.Keys(stats)); !slices.Equal(f.p.tel.StatKeys(), keys) {
		t.Errorf("observed statistics %v, want the engine's %v", f.p.tel.StatKeys(), keys)
	}
}

func TestServesMetrics(t *testing.T) {
	f := newFixture(t, testConfig())
	f.start(t)
	if err := f.tp.ConsumeTraces(context.Background(), testutil.ClientServer("a", "b", f.clock.Now(), false)); err != nil {
		t.Fatal(err)
	}

	ct, body := scrape(t, f.url(), "")
	if ct != contentTypePrometheus {
		t.Errorf("Content-Type %q, want %q", ct, contentTypePrometheus)
	}
	ct, body2 := scrape(t, f.url(), "application/openmetrics-text;version=1.0.0;q=0.6,text/plain;version=0.0.4;q=0.3,*/*;q=0.2")
	if ct != contentTypeOpenMetrics {
		t.Errorf("Content-Type %q, want %q", ct, contentTypeOpenMetrics)
	}

	labels := map[string]string{"client": "a", "server": "b"}
	// A new series reads as zero for initial_zero_hold (a minute), for every
	// scraper alike (Tempo writes a zero sample first), then counted.
	if v, ok := testutil.Sample(body, "traces_service_graph_request_total", labels); !ok || v != 0 {
		t.Errorf("first scrape: request_total = %v (found %v), want 0\n%s", v, ok, body)
	}
	if v, ok := testutil.Sample(body2, "traces_service_graph_request_total", labels); !ok || v != 0 {
		t.Errorf("second scrape: request_total = %v (found %v), want 0\n%s", v, ok, body2)
	}
	f.clock.Add(time.Minute)
	_, body3 := scrape(t, f.url(), "")
	if v, ok := testutil.Sample(body3, "traces_service_graph_request_total", labels); !ok || v != 1 {
		t.Errorf("a minute later: request_total = %v (found %v), want 1\n%s", v, ok, body3)
	}
	if !bytes.HasSuffix(body2, []byte("# EOF\n")) {
		t.Error("OpenMetrics response does not end with # EOF")
	}
}

func TestHTTPRoutes(t *testing.T) {
	cfg := testConfig()
	cfg.HTTP.MetricsPath = "/sm/metrics"
	f := newFixture(t, cfg)
	f.start(t)
	base := "http://" + f.p.addr().String()
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/sm/metrics", http.StatusOK},
		{http.MethodHead, "/sm/metrics", http.StatusOK},
		{http.MethodPost, "/sm/metrics", http.StatusMethodNotAllowed},
		{http.MethodGet, "/metrics", http.StatusNotFound},
		{http.MethodGet, "/", http.StatusOK},
		{http.MethodGet, "/api/graph", http.StatusOK},
		{http.MethodGet, "/api/impact?service=a", http.StatusOK},
		{http.MethodGet, "/graph.dot", http.StatusOK},
		{http.MethodPost, "/api/edges", http.StatusNotFound}, // off unless http.accept_edges
	} {
		req, err := http.NewRequest(tc.method, base+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, resp.StatusCode, tc.status)
		}
	}
}

func TestNegotiate(t *testing.T) {
	const (
		text     = engine.FormatPrometheus
		om       = engine.FormatOpenMetrics
		protobuf = engine.FormatPrometheusProtobuf
	)
	for accept, want := range map[string]engine.Format{
		"":                             text,
		"*/*":                          text,
		"text/plain; version=0.0.4":    text,
		"application/openmetrics-text": om,
		"application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2": om,
		"text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5": text,
		"application/openmetrics-text;q=0":                                  text,
		"application/json":                                                  text,
		"garbage;;;,application/openmetrics-text; version=1.0.0":            om,
		// What a Prometheus with native histograms on sends.
		"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1": protobuf,
		"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5,application/openmetrics-text":                                                                                                          om,
		// Another message, or not delimited: not this format.
		"application/vnd.google.protobuf;proto=io.prometheus.client.Metric;encoding=delimited":  text,
		"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text": text,
	} {
		var headers []string
		if accept != "" {
			headers = []string{accept}
		}
		if got := negotiate(headers); got != want {
			t.Errorf("negotiate(%q) = %v, want %v", accept, got, want)
		}
	}
}

func TestShutdownWithoutStart(t *testing.T) {
	f := newFixture(t, testConfig())
	if err := f.tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := f.tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestShutdownTwice(t *testing.T) {
	f := newFixture(t, testConfig())
	if err := f.tp.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	addr := f.p.addr().String()
	if err := f.tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := f.tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The port is free again.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port still taken after shutdown: %v", err)
	}
	_ = ln.Close()
}

func TestStartFailsWhenPortIsTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := testConfig()
	cfg.HTTP.NetAddr.Endpoint = ln.Addr().String()
	f := newFixture(t, cfg)
	if err := f.tp.Start(context.Background(), componenttest.NewNopHost()); err == nil {
		t.Fatal("Start succeeded on a taken port")
	}
	if err := f.tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestRejectedBatchIsCountedAndPassedOn(t *testing.T) {
	f := newFixture(t, testConfig())
	f.p.encode = func(dst []byte, _ ptrace.Traces) ([]byte, error) { return append(dst, testutil.Garbage...), nil }
	f.start(t)
	for i := 0; i < 3; i++ {
		if err := f.tp.ConsumeTraces(context.Background(), testutil.ClientServer("a", "b", f.clock.Now(), false)); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
	if n := len(f.sink.AllTraces()); n != 3 {
		t.Errorf("%d batches passed on, want 3", n)
	}
	metadatatest.AssertEqualServicemapBatchesRejected(t, f.tel, []metricdata.DataPoint[int64]{{Value: 3}}, metricdatatest.IgnoreTimestamp())
	// The engine keeps working for good batches.
	f.p.encode = projection.Full
	if err := f.tp.ConsumeTraces(context.Background(), testutil.ClientServer("a", "b", f.clock.Now(), false)); err != nil {
		t.Fatal(err)
	}
	metadatatest.AssertEqualServicemapBatchesRejected(t, f.tel, []metricdata.DataPoint[int64]{{Value: 3}}, metricdatatest.IgnoreTimestamp())
}

func TestExpiryLoopMakesVirtualNodes(t *testing.T) {
	cfg := testConfig()
	noZero := false
	cfg.InitialZero = &noZero
	f := newFixture(t, cfg)
	f.start(t)
	if err := f.tp.ConsumeTraces(context.Background(), testutil.LoneClient("shop", "payments-gateway", f.clock.Now())); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"client": "shop", "server": "payments-gateway"}
	_, body := scrape(t, f.url(), "")
	if _, ok := testutil.Sample(body, "traces_service_graph_request_total", labels); ok {
		t.Fatalf("edge exists before expiry:\n%s", body)
	}
	f.expire() // not yet due
	_, body = scrape(t, f.url(), "")
	if _, ok := testutil.Sample(body, "traces_service_graph_request_total", labels); ok {
		t.Fatalf("edge exists before its wait has passed:\n%s", body)
	}
	f.clock.Add(time.Minute)
	f.expire()
	_, body = scrape(t, f.url(), "")
	if v, ok := testutil.Sample(body, "traces_service_graph_request_total", labels); !ok || v != 1 {
		t.Fatalf("virtual edge request_total = %v (found %v), want 1:\n%s", v, ok, body)
	}
}

func TestConcurrentConsumeAndScrape(t *testing.T) {
	cfg := testConfig()
	noZero := false
	cfg.InitialZero = &noZero
	f := newFixture(t, cfg)
	f.start(t)
	const workers, batches = 8, 40
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := 0; i < batches; i++ {
				td := testutil.ClientServer("a", "b", f.clock.Now(), i%4 == 0)
				if err := f.tp.ConsumeTraces(context.Background(), td); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	stopScrape := make(chan struct{})
	var scrapers sync.WaitGroup
	for s := 0; s < 2; s++ {
		scrapers.Add(1)
		go func(accept string) {
			defer scrapers.Done()
			req, err := http.NewRequest(http.MethodGet, f.url(), nil)
			if err != nil {
				t.Error(err)
				return
			}
			if accept != "" {
				req.Header.Set("Accept", accept)
			}
			for {
				select {
				case <-stopScrape:
					return
				default:
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
		}([]string{"", "application/openmetrics-text"}[s])
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
	close(stopScrape)
	scrapers.Wait()

	if n := len(f.sink.AllTraces()); n != workers*batches {
		t.Errorf("%d batches passed on, want %d", n, workers*batches)
	}
	_, body := scrape(t, f.url(), "")
	if v, ok := testutil.Sample(body, "traces_service_graph_request_total", map[string]string{"client": "a", "server": "b"}); !ok || v != workers*batches {
		t.Errorf("request_total = %v (found %v), want %d:\n%s", v, ok, workers*batches, body)
	}
	if v, ok := testutil.Sample(body, "traces_service_graph_request_failed_total", map[string]string{"client": "a", "server": "b"}); !ok || v != workers*batches/4 {
		t.Errorf("request_failed_total = %v (found %v), want %d", v, ok, workers*batches/4)
	}
}

// engineStat reads one statistic from the engine's own report.
func engineStat(t *testing.T, f *fixture, key string) int64 {
	t.Helper()
	raw, err := f.p.eng.Render(engine.FormatStatsJSON, f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	stats, err := selftelemetry.ParseStats(raw)
	if err != nil {
		t.Fatal(err)
	}
	return int64(stats[key])
}

// TestExpiryWarnsOfOverflowedCaps: with max_series at 1, a second edge's
// series are refused; the next expiry pass says so, once per interval.
func TestExpiryWarnsOfOverflowedCaps(t *testing.T) {
	cfg := testConfig()
	one := 1
	cfg.MaxSeries = &one
	f := newFixture(t, cfg)
	f.start(t)
	consume := func(client, server string) {
		t.Helper()
		if err := f.tp.ConsumeTraces(context.Background(), testutil.ClientServer(client, server, f.clock.Now(), false)); err != nil {
			t.Fatal(err)
		}
	}
	warnings := func() []observer.LoggedEntry {
		return f.logs.FilterMessageSnippet("servicemap engine caps overflowed").All()
	}
	consume("a", "b")
	f.expire()
	if n := len(warnings()); n != 0 {
		t.Fatalf("%d overflow warnings before any cap was full", n)
	}

	consume("c", "d")
	first := engineStat(t, f, "series_refused")
	if first == 0 {
		t.Fatal("the engine refused no series past max_series 1")
	}
	f.expire()
	w := warnings()
	if len(w) != 1 || w[0].Level != zapcore.WarnLevel || w[0].ContextMap()["series_refused"] != first {
		t.Fatalf("after the first refusal: %+v, want one warning with series_refused %d", w, first)
	}

	// More refusals within the interval wait for the next message.
	consume("e", "f")
	f.clock.Add(5 * time.Second)
	f.expire()
	if n := len(warnings()); n != 1 {
		t.Fatalf("%d warnings within the interval, want 1", n)
	}
	f.clock.Add(5 * time.Second)
	f.expire()
	w = warnings()
	if want := engineStat(t, f, "series_refused") - first; len(w) != 2 || want == 0 || w[1].ContextMap()["series_refused"] != want {
		t.Fatalf("after the interval: %+v, want a second warning with series_refused %d", w, want)
	}
}
