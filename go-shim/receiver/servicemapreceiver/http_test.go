package servicemapreceiver

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/servicemap/servicemap/go-shim/internal/engine"
	"github.com/servicemap/servicemap/go-shim/internal/selftelemetry"
	"github.com/servicemap/servicemap/go-shim/internal/testutil"
	"github.com/servicemap/servicemap/go-shim/receiver/servicemapreceiver/internal/metadatatest"
)

// fixedNow is the clock of the HTTP tests: a second after the spans of
// testdata/traces.json began.
var fixedNow = time.Unix(1_700_000_000, 0)

// reply is one HTTP answer.
type reply struct {
	code        int
	contentType string
	allow       string
	body        []byte
}

func send(t *testing.T, method, url, contentType, contentEncoding string, body []byte) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if contentEncoding != "" {
		req.Header.Set("Content-Encoding", contentEncoding)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	if _, err := out.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Allow"), out.Bytes()}
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func zstded(t *testing.T, b []byte) []byte {
	t.Helper()
	w, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	return w.EncodeAll(b, nil)
}

func compress(t *testing.T, contentEncoding string, b []byte) []byte {
	t.Helper()
	switch contentEncoding {
	case "":
		return b
	case "gzip":
		return gzipped(t, b)
	case "zstd":
		return zstded(t, b)
	}
	t.Fatalf("no compressor for %q", contentEncoding)
	return nil
}

// tracesURL is the receiver's OTLP/HTTP traces URL.
func (f *fixture) tracesURL() string { return "http://" + f.r.addrHTTP.String() + TracesPath }

// render is the engine's output in format two minutes after the fixed
// clock, past the preset's initial_zero_hold (1m: until then the text
// formats show a new series at 0).
func (f *fixture) render(t *testing.T, format engine.Format) []byte {
	t.Helper()
	b, err := f.r.eng.Render(format, fixedNow.Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func traceID(t *testing.T, s string) pcommon.TraceID {
	t.Helper()
	var id pcommon.TraceID
	if n, err := hex.Decode(id[:], []byte(s)); err != nil || n != len(id) {
		t.Fatalf("trace ID %q: %v", s, err)
	}
	return id
}

func spanID(t *testing.T, s string) pcommon.SpanID {
	t.Helper()
	var id pcommon.SpanID
	if n, err := hex.Decode(id[:], []byte(s)); err != nil || n != len(id) {
		t.Fatalf("span ID %q: %v", s, err)
	}
	return id
}

// shopTraces is testdata/traces.json built with the pdata API: web calls api
// (OK), auth (which fails) and payments (not traced, named by peer.service),
// and has one INTERNAL span.
func shopTraces(t *testing.T) ptrace.Traces {
	t.Helper()
	at := func(ms int64) pcommon.Timestamp {
		return pcommon.NewTimestampFromTime(fixedNow.Add(-time.Second + time.Duration(ms)*time.Millisecond))
	}
	td := ptrace.NewTraces()

	web := td.ResourceSpans().AppendEmpty()
	web.Resource().Attributes().PutStr("service.name", "web")
	web.Resource().Attributes().PutStr("deployment.environment", "test")
	ss := web.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("web-http")
	ss.Scope().SetVersion("1.2.0")
	s := ss.Spans().AppendEmpty()
	s.SetTraceID(traceID(t, "5b8efff798038103d269b633813fc60c"))
	s.SetSpanID(spanID(t, "eee19b7ec3c1b174"))
	s.SetName("GET /api")
	s.SetKind(ptrace.SpanKindClient)
	s.SetStartTimestamp(at(0))
	s.SetEndTimestamp(at(100))
	s.Attributes().PutStr("http.request.method", "GET")
	s.Attributes().PutInt("http.response.status_code", 200)
	s = ss.Spans().AppendEmpty()
	s.SetTraceID(traceID(t, "5b8efff798038103d269b633813fc60d"))
	s.SetSpanID(spanID(t, "eee19b7ec3c1b175"))
	s.SetName("POST /login")
	s.SetKind(ptrace.SpanKindClient)
	s.SetStartTimestamp(at(200))
	s.SetEndTimestamp(at(450))
	s = ss.Spans().AppendEmpty()
	s.SetTraceID(traceID(t, "5b8efff798038103d269b633813fc60e"))
	s.SetSpanID(spanID(t, "eee19b7ec3c1b176"))
	s.SetName("charge")
	s.SetKind(ptrace.SpanKindClient)
	s.SetStartTimestamp(at(500))
	s.SetEndTimestamp(at(750))
	s.Attributes().PutStr("peer.service", "payments")
	s = ss.Spans().AppendEmpty()
	s.SetTraceID(traceID(t, "5b8efff798038103d269b633813fc60c"))
	s.SetSpanID(spanID(t, "eee19b7ec3c1b177"))
	s.SetParentSpanID(spanID(t, "eee19b7ec3c1b174"))
	s.SetName("render")
	s.SetKind(ptrace.SpanKindInternal)
	s.SetStartTimestamp(at(100))
	s.SetEndTimestamp(at(125))

	api := td.ResourceSpans().AppendEmpty()
	api.Resource().Attributes().PutStr("service.name", "api")
	s = api.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	s.SetTraceID(traceID(t, "5b8efff798038103d269b633813fc60c"))
	s.SetSpanID(spanID(t, "a1a2a3a4a5a6a7a8"))
	s.SetParentSpanID(spanID(t, "eee19b7ec3c1b174"))
	s.SetName("GET /api")
	s.SetKind(ptrace.SpanKindServer)
	s.SetStartTimestamp(at(10))
	s.SetEndTimestamp(at(90))
	s.Status().SetCode(ptrace.StatusCodeOk)

	auth := td.ResourceSpans().AppendEmpty()
	auth.Resource().Attributes().PutStr("service.name", "auth")
	s = auth.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	s.SetTraceID(traceID(t, "5b8efff798038103d269b633813fc60d"))
	s.SetSpanID(spanID(t, "b1b2b3b4b5b6b7b8"))
	s.SetParentSpanID(spanID(t, "eee19b7ec3c1b175"))
	s.SetName("POST /login")
	s.SetKind(ptrace.SpanKindServer)
	s.SetStartTimestamp(at(210))
	s.SetEndTimestamp(at(440))
	s.Status().SetCode(ptrace.StatusCodeError)
	s.Status().SetMessage("bad password store")
	return td
}

// shopBodies returns the shop's request as protobuf (encoded from
// shopTraces) and as OTLP/JSON (testdata/traces.json, written by hand).
func shopBodies(t *testing.T) (protobuf, json []byte) {
	t.Helper()
	protobuf, err := ptraceotlp.NewExportRequestFromTraces(shopTraces(t)).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	json, err = os.ReadFile(filepath.Join("testdata", "traces.json"))
	if err != nil {
		t.Fatal(err)
	}
	// The two bodies hold the same traces: the file's decoding encodes to
	// the same protobuf bytes.
	decoded := ptraceotlp.NewExportRequest()
	if err := decoded.UnmarshalJSON(json); err != nil {
		t.Fatal(err)
	}
	if again, err := decoded.MarshalProto(); err != nil || !bytes.Equal(again, protobuf) {
		t.Fatalf("testdata/traces.json and shopTraces differ (%v)", err)
	}
	return protobuf, json
}

// shopFixture sends one request to a fresh receiver at the fixed clock,
// checks the answer (200 with an empty ExportTraceServiceResponse in the
// request's encoding), expires every waiting span and returns the engine's
// Prometheus text and self-report.
func shopFixture(t *testing.T, contentType, contentEncoding string, body []byte) (prometheus, stats []byte) {
	t.Helper()
	f := startFixture(t, testConfig())
	f.clock.Set(fixedNow)
	got := send(t, http.MethodPost, f.tracesURL(), contentType, contentEncoding, compress(t, contentEncoding, body))
	if got.code != http.StatusOK || got.contentType != contentType {
		t.Fatalf("HTTP %d, Content-Type %q: %q", got.code, got.contentType, got.body)
	}
	resp := ptraceotlp.NewExportResponse()
	if contentType == jsonContentType {
		if string(got.body) != "{}" {
			t.Errorf("JSON response %q, want {}", got.body)
		}
		if err := resp.UnmarshalJSON(got.body); err != nil {
			t.Errorf("JSON response does not decode: %v", err)
		}
	} else {
		if len(got.body) != 0 {
			t.Errorf("protobuf response %x, want no bytes", got.body)
		}
		if err := resp.UnmarshalProto(got.body); err != nil {
			t.Errorf("protobuf response does not decode: %v", err)
		}
	}
	if ps := resp.PartialSuccess(); ps.RejectedSpans() != 0 || ps.ErrorMessage() != "" {
		t.Errorf("partial success %d %q", ps.RejectedSpans(), ps.ErrorMessage())
	}
	if err := f.r.eng.Flush(fixedNow.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	return f.render(t, engine.FormatPrometheus), f.render(t, engine.FormatStatsJSON)
}

// TestHTTPEncodings: the same traces as protobuf and as OTLP/JSON, each
// plain, gzip and zstd, give byte-identical metrics and self-reports from
// the engine, and the metrics are the shop's.
func TestHTTPEncodings(t *testing.T) {
	protobuf, json := shopBodies(t)
	wantProm, wantStats := shopFixture(t, protobufContentType, "", protobuf)

	for _, sample := range []struct {
		name   string
		labels map[string]string
		value  float64
	}{
		{"traces_service_graph_request_total", map[string]string{"client": "web", "server": "api"}, 1},
		{"traces_service_graph_request_total", map[string]string{"client": "web", "server": "auth"}, 1},
		{"traces_service_graph_request_failed_total", map[string]string{"client": "web", "server": "auth"}, 1},
		{"traces_service_graph_request_total", map[string]string{"client": "web", "server": "payments", "connection_type": "virtual_node"}, 1},
		{"traces_service_graph_request_server_seconds_count", map[string]string{"client": "web", "server": "api"}, 1},
		{"traces_service_graph_request_server_seconds_sum", map[string]string{"client": "web", "server": "api"}, 0.08},
		{"traces_service_graph_request_client_seconds_sum", map[string]string{"client": "web", "server": "auth"}, 0.25},
		{"traces_service_graph_request_server_seconds_sum", map[string]string{"client": "web", "server": "auth"}, 0.23},
		{"traces_service_graph_unpaired_spans_total", map[string]string{"client": "web"}, 1},
	} {
		if v, ok := testutil.Sample(wantProm, sample.name, sample.labels); !ok || v != sample.value {
			t.Errorf("%s%v = %v (found %v), want %v", sample.name, sample.labels, v, ok, sample.value)
		}
	}
	if v, ok := testutil.Sample(wantProm, "traces_service_graph_request_failed_total", map[string]string{"client": "web", "server": "api"}); ok && v != 0 {
		t.Errorf("request_failed_total{web→api} = %v, want none", v)
	}
	stats, err := selftelemetry.ParseStats(wantStats)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]float64{"batches_accepted": 1, "spans_received": 6, "edges_completed": 2, "edges_virtual": 1} {
		if stats[key] != want {
			t.Errorf("engine %s = %v, want %v", key, stats[key], want)
		}
	}

	for _, tc := range []struct {
		contentType string
		body        []byte
	}{{protobufContentType, protobuf}, {jsonContentType, json}} {
		for _, contentEncoding := range []string{"", "gzip", "zstd"} {
			if tc.contentType == protobufContentType && contentEncoding == "" {
				continue // the reference
			}
			t.Run(tc.contentType+"/"+contentEncoding, func(t *testing.T) {
				prom, stats := shopFixture(t, tc.contentType, contentEncoding, tc.body)
				if !bytes.Equal(prom, wantProm) {
					t.Errorf("metrics differ from plain protobuf:\n%s\nwant:\n%s", prom, wantProm)
				}
				if !bytes.Equal(stats, wantStats) {
					t.Errorf("self-report differs from plain protobuf:\n%s\nwant:\n%s", stats, wantStats)
				}
			})
		}
	}
}

// statusOf decodes a google.rpc.Status answer in the encoding its
// Content-Type names.
func statusOf(t *testing.T, got reply) *spb.Status {
	t.Helper()
	st := &spb.Status{}
	var err error
	switch got.contentType {
	case protobufContentType:
		err = proto.Unmarshal(got.body, st)
	case jsonContentType:
		err = protojson.Unmarshal(got.body, st)
	default:
		t.Fatalf("answer of Content-Type %q: %q", got.contentType, got.body)
	}
	if err != nil {
		t.Fatalf("%s answer %q is not a google.rpc.Status: %v", got.contentType, got.body, err)
	}
	return st
}

// TestHTTPErrors: each refused request is answered with its exact HTTP
// status and a google.rpc.Status in the request's encoding (protobuf when
// the request names no OTLP media type), and none reaches the engine.
func TestHTTPErrors(t *testing.T) {
	const maxBody = 4096
	cfg := testConfig()
	h := confighttp.NewDefaultServerConfig()
	h.NetAddr.Endpoint = "127.0.0.1:0"
	h.MaxRequestBodySize = maxBody
	cfg.Protocols.HTTP = configoptional.Some(h)
	f := startFixture(t, cfg)
	f.clock.Set(fixedNow)

	// What the engine says of the garbage, and pdata of bad JSON.
	probe, err := cfg.NewEngine()
	if err != nil {
		t.Fatal(err)
	}
	garbageErr := probe.Consume(testutil.Garbage, fixedNow)
	probe.Close()
	if garbageErr == nil {
		t.Fatal("the engine took the garbage")
	}
	jsonErr := func(body string) string {
		err := ptraceotlp.NewExportRequest().UnmarshalJSON([]byte(body))
		if err == nil {
			t.Fatalf("pdata decodes %s", body)
		}
		return "the body is not an OTLP/JSON ExportTraceServiceRequest: " + err.Error()
	}
	const truncatedJSON = `{"resourceSpans":[`
	const badTraceID = `{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8e","spanId":"eee19b7ec3c1b174","kind":2}]}]}]}`

	// Bodies over the limit: many requests in one, plain and gzip (whose
	// compressed size is under the limit, its decompressed size over).
	big := ptrace.NewTraces()
	for big.SpanCount() < 80 {
		testutil.AppendClientServer(big, "web", "api", fixedNow, false)
	}
	bigProto, err := ptraceotlp.NewExportRequestFromTraces(big).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	bigJSON, err := ptraceotlp.NewExportRequestFromTraces(big).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if len(bigProto) <= maxBody || len(bigJSON) <= maxBody || len(gzipped(t, bigJSON)) >= maxBody {
		t.Fatalf("sizes %d %d %d do not straddle the limit", len(bigProto), len(bigJSON), len(gzipped(t, bigJSON)))
	}
	tooLarge := "the request body is larger than max_request_body_size (4096 bytes)"
	unsupported := func(ct string) string {
		return "unsupported content type " + ct + ", supported: application/x-protobuf, application/json"
	}

	for _, tc := range []struct {
		name            string
		method          string
		contentType     string
		contentEncoding string
		body            []byte
		wantHTTP        int
		wantType        string
		wantCode        codes.Code
		wantMsg         string
	}{
		{"GET", http.MethodGet, "", "", nil,
			http.StatusMethodNotAllowed, protobufContentType, codes.Unimplemented, "method GET not allowed, supported: POST"},
		{"PUT JSON", http.MethodPut, jsonContentType, "", []byte("{}"),
			http.StatusMethodNotAllowed, jsonContentType, codes.Unimplemented, "method PUT not allowed, supported: POST"},
		{"text", http.MethodPost, "text/plain", "", []byte("hello"),
			http.StatusUnsupportedMediaType, protobufContentType, codes.InvalidArgument, unsupported(`"text/plain"`)},
		{"no content type", http.MethodPost, "", "", []byte("{}"),
			http.StatusUnsupportedMediaType, protobufContentType, codes.InvalidArgument, unsupported(`""`)},
		{"protobuf garbage", http.MethodPost, protobufContentType, "", testutil.Garbage,
			http.StatusBadRequest, protobufContentType, codes.InvalidArgument, garbageErr.Error()},
		{"truncated JSON", http.MethodPost, jsonContentType + "; charset=utf-8", "", []byte(truncatedJSON),
			http.StatusBadRequest, jsonContentType, codes.InvalidArgument, jsonErr(truncatedJSON)},
		{"JSON short trace ID", http.MethodPost, jsonContentType, "gzip", gzipped(t, []byte(badTraceID)),
			http.StatusBadRequest, jsonContentType, codes.InvalidArgument, jsonErr(badTraceID)},
		{"unknown encoding", http.MethodPost, jsonContentType, "br", []byte("{}"),
			http.StatusBadRequest, jsonContentType, codes.InvalidArgument, "unsupported Content-Encoding: br"},
		{"not gzip", http.MethodPost, protobufContentType, "gzip", []byte("this is not gzip"),
			http.StatusBadRequest, protobufContentType, codes.InvalidArgument, "gzip: invalid header"},
		{"protobuf too large", http.MethodPost, protobufContentType, "", bigProto,
			http.StatusRequestEntityTooLarge, protobufContentType, codes.ResourceExhausted, tooLarge},
		{"JSON too large", http.MethodPost, jsonContentType, "", bigJSON,
			http.StatusRequestEntityTooLarge, jsonContentType, codes.ResourceExhausted, tooLarge},
		{"gzip JSON too large", http.MethodPost, jsonContentType, "gzip", gzipped(t, bigJSON),
			http.StatusRequestEntityTooLarge, jsonContentType, codes.ResourceExhausted, tooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := send(t, tc.method, f.tracesURL(), tc.contentType, tc.contentEncoding, tc.body)
			if got.code != tc.wantHTTP || got.contentType != tc.wantType {
				t.Fatalf("HTTP %d, Content-Type %q (%q); want %d, %q", got.code, got.contentType, got.body, tc.wantHTTP, tc.wantType)
			}
			st := statusOf(t, got)
			if codes.Code(st.GetCode()) != tc.wantCode || st.GetMessage() != tc.wantMsg || len(st.GetDetails()) != 0 {
				t.Errorf("status %v %q, want %v %q", codes.Code(st.GetCode()), st.GetMessage(), tc.wantCode, tc.wantMsg)
			}
			wantAllow := ""
			if tc.wantHTTP == http.StatusMethodNotAllowed {
				wantAllow = http.MethodPost
			}
			if got.allow != wantAllow {
				t.Errorf("Allow %q, want %q", got.allow, wantAllow)
			}
		})
	}

	// The three bodies that were read and could not be decoded are counted;
	// only the protobuf one reached the engine, and nothing was taken.
	metadatatest.AssertEqualServicemapBatchesRejected(t, f.tel, []metricdata.DataPoint[int64]{{Value: 3}}, metricdatatest.IgnoreTimestamp(), metricdatatest.IgnoreExemplars())
	stats, err := selftelemetry.ParseStats(f.render(t, engine.FormatStatsJSON))
	if err != nil {
		t.Fatal(err)
	}
	if stats["batches_rejected"] != 1 || stats["batches_accepted"] != 0 || stats["spans_received"] != 0 {
		t.Errorf("engine saw %v rejected, %v accepted batches, %v spans; want 1, 0, 0",
			stats["batches_rejected"], stats["batches_accepted"], stats["spans_received"])
	}
	// The receiver still takes requests in both encodings.
	protobuf, json := shopBodies(t)
	for _, body := range []struct {
		contentType string
		body        []byte
	}{{protobufContentType, protobuf}, {jsonContentType, json}} {
		if got := send(t, http.MethodPost, f.tracesURL(), body.contentType, "", body.body); got.code != http.StatusOK {
			t.Fatalf("%s after the errors: HTTP %d %q", body.contentType, got.code, got.body)
		}
	}
	if v, ok := testutil.Sample(f.render(t, engine.FormatPrometheus), "traces_service_graph_request_total",
		map[string]string{"client": "web", "server": "api"}); !ok || v != 2 {
		t.Errorf("request_total{web→api} = %v (found %v), want 2", v, ok)
	}
}

// TestHTTPStatusEncoding: Status bodies encode as protobuf and protojson
// decode them, whatever bytes the message holds.
func TestHTTPStatusEncoding(t *testing.T) {
	for _, msg := range []string{"", "plain", "quote \" and \\ and <tag> & \u00e9", "bad \xff\xfe utf-8", strings.Repeat("long ", 100)} {
		want := strings.ToValidUTF8(msg, "\uFFFD")
		pb := &spb.Status{}
		if err := proto.Unmarshal(encodeStatus(codes.InvalidArgument, msg), pb); err != nil {
			t.Fatalf("%q: protobuf: %v", msg, err)
		}
		js := &spb.Status{}
		if err := protojson.Unmarshal(encodeStatusJSON(codes.InvalidArgument, msg), js); err != nil {
			t.Fatalf("%q: JSON: %v", msg, err)
		}
		for _, st := range []*spb.Status{pb, js} {
			if codes.Code(st.GetCode()) != codes.InvalidArgument || st.GetMessage() != want {
				t.Errorf("%q: decoded %v %q", msg, codes.Code(st.GetCode()), st.GetMessage())
			}
		}
	}
	// Code OK with no message is the empty message in both encodings.
	if b := encodeStatus(codes.OK, ""); len(b) != 0 {
		t.Errorf("protobuf %x", b)
	}
	if b := encodeStatusJSON(codes.OK, ""); string(b) != "{}" {
		t.Errorf("JSON %s", b)
	}
}

// TestHTTPThroughThePipeline: a JSON request's metrics reach the metrics
// pipeline like a protobuf request's.
func TestHTTPThroughThePipeline(t *testing.T) {
	f := startFixture(t, testConfig())
	body, err := exportRequest(testutil.ClientServer("web", "db", f.clock.Now(), false)).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if got := send(t, http.MethodPost, f.tracesURL(), jsonContentType, "zstd", zstded(t, body)); got.code != http.StatusOK {
		t.Fatalf("HTTP %d %q", got.code, got.body)
	}
	f.push()
	checkOneRequest(t, f.onlyPush(t), "web", "db")
	metadatatest.AssertEqualServicemapBatches(t, f.tel, []metricdata.DataPoint[int64]{{Value: 1}}, metricdatatest.IgnoreTimestamp(), metricdatatest.IgnoreExemplars())
	if _, err := f.tel.GetMetric("otelcol_servicemap_batches_rejected"); err == nil {
		t.Error("batches_rejected recorded")
	}
}

// loneClients is n client spans, each in a trace of its own, that no
// server answers: each waits in the store.
func loneClients(n int, now time.Time) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "frontend")
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	for i := range n {
		s := spans.AppendEmpty()
		s.SetKind(ptrace.SpanKindClient)
		s.SetTraceID(pcommon.TraceID{0: 0xab, 15: byte(i + 1)})
		s.SetSpanID(pcommon.SpanID{0: 1, 7: byte(i + 1)})
		s.SetStartTimestamp(pcommon.NewTimestampFromTime(now))
		s.SetEndTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Millisecond)))
	}
	return td
}

// TestPartialSuccess: spans the full store drops are reported as rejected
// in an OTLP partial success, over HTTP (both encodings) and gRPC.
func TestPartialSuccess(t *testing.T) {
	const message = "2 spans dropped: the pairing store was full (store.max_items); they are counted in traces_service_graph_dropped_spans_total"
	check := func(t *testing.T, resp ptraceotlp.ExportResponse) {
		t.Helper()
		if ps := resp.PartialSuccess(); ps.RejectedSpans() != 2 || ps.ErrorMessage() != message {
			t.Errorf("partial success: %d rejected, %q", ps.RejectedSpans(), ps.ErrorMessage())
		}
	}
	start := func(t *testing.T) *fixture {
		cfg := testConfig()
		one := 1
		cfg.Store.MaxItems = &one
		f := startFixture(t, cfg)
		f.clock.Set(fixedNow)
		return f
	}
	for _, contentType := range []string{protobufContentType, jsonContentType} {
		t.Run(contentType, func(t *testing.T) {
			f := start(t)
			req := exportRequest(loneClients(3, fixedNow))
			var body []byte
			var err error
			if contentType == jsonContentType {
				body, err = req.MarshalJSON()
			} else {
				body, err = req.MarshalProto()
			}
			if err != nil {
				t.Fatal(err)
			}
			got := send(t, http.MethodPost, f.tracesURL(), contentType, "", body)
			if got.code != http.StatusOK || got.contentType != contentType {
				t.Fatalf("HTTP %d, Content-Type %q: %q", got.code, got.contentType, got.body)
			}
			resp := ptraceotlp.NewExportResponse()
			if contentType == jsonContentType {
				err = resp.UnmarshalJSON(got.body)
			} else {
				err = resp.UnmarshalProto(got.body)
			}
			if err != nil {
				t.Fatal(err)
			}
			check(t, resp)
		})
	}
	t.Run("grpc", func(t *testing.T) {
		f := start(t)
		resp, err := ptraceotlp.NewGRPCClient(f.dial(t)).Export(context.Background(), exportRequest(loneClients(3, fixedNow)))
		if err != nil {
			t.Fatal(err)
		}
		check(t, resp)
	})
}
