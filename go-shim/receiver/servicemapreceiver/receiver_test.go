package servicemapreceiver

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configgrpc"
	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcgzip "google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/status"

	"github.com/servicemap/servicemap/go-shim/internal/testutil"
	"github.com/servicemap/servicemap/go-shim/receiver/servicemapreceiver/internal/metadata"
	"github.com/servicemap/servicemap/go-shim/receiver/servicemapreceiver/internal/metadatatest"
)

const (
	testExpiryLoop = 3 * time.Second
	testFlushEvery = 17 * time.Second
)

type fixture struct {
	r      *serviceMapReceiver
	sink   *consumertest.MetricsSink
	tel    *componenttest.Telemetry
	clock  *testutil.Clock
	expiry *testutil.Ticker
	pushes *testutil.Ticker
}

// loopbackConfig is the default configuration with both protocols on free
// loopback ports.
func loopbackConfig() *Config {
	cfg := createDefaultConfig()
	g := configgrpc.NewDefaultServerConfig()
	g.NetAddr.Endpoint = "127.0.0.1:0"
	cfg.Protocols.GRPC = configoptional.Some(g)
	h := confighttp.NewDefaultServerConfig()
	h.NetAddr.Endpoint = "127.0.0.1:0"
	cfg.Protocols.HTTP = configoptional.Some(h)
	return cfg
}

// testConfig listens on free loopback ports with both protocols.
func testConfig() *Config {
	cfg := loopbackConfig()
	cfg.StoreExpirationLoop = testExpiryLoop
	every := testFlushEvery
	cfg.MetricsFlushInterval = &every
	return cfg
}

// startFixture builds and starts a receiver with a hand-driven clock and tickers.
func startFixture(t *testing.T, cfg *Config) *fixture {
	t.Helper()
	f := &fixture{
		sink:   &consumertest.MetricsSink{},
		tel:    componenttest.NewTelemetry(),
		clock:  testutil.NewClock(time.Now()),
		expiry: testutil.NewTicker(),
		pushes: testutil.NewTicker(),
	}
	t.Cleanup(func() { _ = f.tel.Shutdown(context.Background()) })
	r, err := newReceiver(f.tel.NewTelemetrySettings(), cfg, f.sink)
	if err != nil {
		t.Fatal(err)
	}
	r.loop.Now = f.clock.Now
	r.loop.NewTicker = testutil.Tickers(t, map[time.Duration]*testutil.Ticker{testExpiryLoop: f.expiry, testFlushEvery: f.pushes})
	r.loop.AfterExpire = f.expiry.Handled
	r.loop.AfterPush = f.pushes.Handled
	f.r = r
	if err := r.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Shutdown(context.Background()) })
	return f
}

func (f *fixture) push() {
	f.pushes.Tick(f.clock.Now())
}

func (f *fixture) expire() {
	f.expiry.Tick(f.clock.Now())
}

func (f *fixture) dial(t *testing.T) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(f.r.addrGRPC.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// onlyPush returns the one push the sink received.
func (f *fixture) onlyPush(t *testing.T) pmetric.Metrics {
	t.Helper()
	all := f.sink.AllMetrics()
	if len(all) != 1 {
		t.Fatalf("%d pushes, want 1", len(all))
	}
	return all[0]
}

// checkOneRequest asserts the push holds exactly one request from client to
// server.
func checkOneRequest(t *testing.T, md pmetric.Metrics, client, server string) {
	t.Helper()
	labels := map[string]string{"client": client, "server": server}
	if v, ok := testutil.MetricValue(md, "traces_service_graph_request_total", labels); !ok || v != 1 {
		t.Errorf("request_total{client=%s,server=%s} = %v (found %v), want 1", client, server, v, ok)
	}
	if v, ok := testutil.MetricValue(md, "traces_service_graph_request_server", labels); !ok || v != 1 {
		t.Errorf("request_server histogram count = %v (found %v), want 1", v, ok)
	}
	if v, ok := testutil.MetricValue(md, "traces_service_graph_request_failed_total", labels); ok && v != 0 {
		t.Errorf("request_failed_total = %v, want none", v)
	}
	points := 0
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		sms := rms.At(i).ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			ms := sms.At(j).Metrics()
			for k := 0; k < ms.Len(); k++ {
				if m := ms.At(k); m.Name() == "traces_service_graph_request_total" {
					points += m.Sum().DataPoints().Len()
				}
			}
		}
	}
	if points != 1 {
		t.Errorf("request_total has %d data points, want 1", points)
	}
}

func exportRequest(td ptrace.Traces) ptraceotlp.ExportRequest {
	return ptraceotlp.NewExportRequestFromTraces(td)
}

func TestGRPCExport(t *testing.T) {
	for _, compressed := range []bool{false, true} {
		name := "plain"
		if compressed {
			name = "gzip"
		}
		t.Run(name, func(t *testing.T) {
			f := startFixture(t, testConfig())
			client := ptraceotlp.NewGRPCClient(f.dial(t))
			var opts []grpc.CallOption
			if compressed {
				opts = append(opts, grpc.UseCompressor(grpcgzip.Name))
			}
			td := testutil.ClientServer("frontend", "backend", f.clock.Now(), false)
			if _, err := client.Export(context.Background(), exportRequest(td), opts...); err != nil {
				t.Fatal(err)
			}
			// An empty request is accepted and changes nothing.
			if _, err := client.Export(context.Background(), exportRequest(ptrace.NewTraces()), opts...); err != nil {
				t.Fatal(err)
			}
			f.clock.Add(5 * time.Second)
			f.expire()
			f.push()
			checkOneRequest(t, f.onlyPush(t), "frontend", "backend")
			// The empty request is not a batch; nothing was rejected.
			metadatatest.AssertEqualServicemapBatches(t, f.tel, []metricdata.DataPoint[int64]{{Value: 1}}, metricdatatest.IgnoreTimestamp(), metricdatatest.IgnoreExemplars())
			if _, err := f.tel.GetMetric("otelcol_servicemap_batches_rejected"); err == nil {
				t.Error("batches_rejected recorded")
			}
		})
	}
}

// TestOwnTelemetry: the receiver records through the instruments its
// metadata.yaml declares; it decodes no spans, so it counts none.
func TestOwnTelemetry(t *testing.T) {
	f := startFixture(t, testConfig())
	client := ptraceotlp.NewGRPCClient(f.dial(t))
	if _, err := client.Export(context.Background(), exportRequest(testutil.ClientServer("a", "b", f.clock.Now(), false))); err != nil {
		t.Fatal(err)
	}
	points := func(v int64) []metricdata.DataPoint[int64] { return []metricdata.DataPoint[int64]{{Value: v}} }
	opts := []metricdatatest.Option{metricdatatest.IgnoreTimestamp(), metricdatatest.IgnoreExemplars()}
	metadatatest.AssertEqualServicemapBatches(t, f.tel, points(1), opts...)
	metadatatest.AssertEqualServicemapEngineBatchesAccepted(t, f.tel, points(1), opts...)
	metadatatest.AssertEqualServicemapEngineSpansReceived(t, f.tel, points(2), opts...)
	metadatatest.AssertEqualServicemapEngineEdgesCompleted(t, f.tel, points(1), opts...)
	metadatatest.AssertEqualServicemapConsumeDuration(t, f.tel, []metricdata.HistogramDataPoint[float64]{{}},
		append(opts, metricdatatest.IgnoreValue())...)
	if p, err := testutil.HistogramPoint(f.tel, "otelcol_servicemap_consume_duration"); err != nil || p.Count != 1 {
		t.Errorf("consume_duration %+v (%v), want 1 batch", p, err)
	}
	if _, err := f.tel.GetMetric("otelcol_servicemap_spans"); err == nil {
		t.Error("the receiver counted spans")
	}
}

func TestGRPCMalformedRequest(t *testing.T) {
	f := startFixture(t, testConfig())
	conn := f.dial(t)
	var reply rawMessage
	err := conn.Invoke(context.Background(), exportMethod, &rawMessage{b: testutil.Garbage}, &reply,
		grpc.ForceCodecV2(rawCodec{}))
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("malformed request: %v, want InvalidArgument", err)
	}
	metadatatest.AssertEqualServicemapBatchesRejected(t, f.tel, []metricdata.DataPoint[int64]{{Value: 1}}, metricdatatest.IgnoreTimestamp(), metricdatatest.IgnoreExemplars())
	// The receiver still takes good requests.
	client := ptraceotlp.NewGRPCClient(conn)
	td := testutil.ClientServer("a", "b", f.clock.Now(), false)
	if _, err := client.Export(context.Background(), exportRequest(td)); err != nil {
		t.Fatal(err)
	}
	f.push()
	checkOneRequest(t, f.onlyPush(t), "a", "b")
}

// TestShutdownFlushes: a lone client span waits for its server side; at
// shutdown it is expired and sent with the final push, and the servers stop.
func TestShutdownFlushes(t *testing.T) {
	f := startFixture(t, testConfig())
	client := ptraceotlp.NewGRPCClient(f.dial(t))
	if _, err := client.Export(context.Background(), exportRequest(testutil.LoneClient("svc", "payments", f.clock.Now()))); err != nil {
		t.Fatal(err)
	}
	if err := f.r.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	md := f.onlyPush(t)
	if v, ok := testutil.MetricValue(md, "traces_service_graph_request_total", map[string]string{"client": "svc", "server": "payments"}); !ok || v != 1 {
		t.Errorf("request_total{svc→payments} = %v (found %v), want 1", v, ok)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := client.Export(ctx, exportRequest(ptrace.NewTraces())); err == nil {
		t.Error("export after shutdown succeeded")
	}
	if err := f.r.Shutdown(context.Background()); err != nil {
		t.Errorf("second shutdown: %v", err)
	}
}

// TestFactory starts the receiver the collector's way, through the factory.
func TestFactory(t *testing.T) {
	cfg := loopbackConfig()
	r, err := NewFactory().CreateMetrics(context.Background(), receivertest.NewNopSettings(metadata.Type), cfg, consumertest.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	if err := r.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}
