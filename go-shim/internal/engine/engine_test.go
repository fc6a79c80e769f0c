package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/servicemap/servicemap/go-shim/internal/testutil"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

var garbage = testutil.Garbage

// realEngine skips a test that needs pairing output while the library is
// still a stub that accepts everything and renders nothing.
func realEngine(t *testing.T) {
	t.Helper()
	e, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if e.Consume(garbage, time.Now()) == nil {
		t.Skip("the linked servicemap library does not implement the engine yet")
	}
}

func TestVersionMatchesHeader(t *testing.T) {
	if versionErr != nil {
		t.Fatal(versionErr)
	}
	if LibraryVersion() == "" {
		t.Fatal("empty library version")
	}
}

func TestCheckVersion(t *testing.T) {
	for _, tc := range []struct {
		lib, header uint32
		ok          bool
	}{
		{100, 100, true},
		{101, 100, true},
		{200, 100, true},
		{100, 200, false},
		{10100, 100, false},
	} {
		if err := checkVersion(tc.lib, tc.header); (err == nil) != tc.ok {
			t.Errorf("checkVersion(%d, %d) = %v", tc.lib, tc.header, err)
		}
	}
}

func TestNewDefaults(t *testing.T) {
	for _, cfg := range []string{"", "{}", `{"compat":"contrib"}`, `{"compat":"tempo","dimensions":["http.method"]}`} {
		e, err := New([]byte(cfg))
		if err != nil {
			t.Fatalf("New(%q): %v", cfg, err)
		}
		e.Close()
	}
}

func TestNewInvalidConfigNamesKey(t *testing.T) {
	for cfg, key := range map[string]string{
		`{"max_itmes":3}`:          "max_itmes",
		`{"compat":"jaeger"}`:      "compat",
		`{"store_ttl":"forever"}`:  "store_ttl",
		`{"dimensions":["ok", 3]}`: "dimensions[1]",
	} {
		_, err := New([]byte(cfg))
		if err == nil {
			t.Fatalf("New(%s) accepted", cfg)
		}
		if !IsInvalidConfig(err) {
			t.Errorf("New(%s): status of %v is not invalid config", cfg, err)
		}
		if !strings.Contains(err.Error(), "`"+key+"`") {
			t.Errorf("New(%s): error %q does not name %s", cfg, err, key)
		}
	}
	if err := Check([]byte(`{"compat":"contrib"}`)); err != nil {
		t.Fatal(err)
	}
	if err := Check([]byte(`{"nope":1}`)); err == nil {
		t.Fatal("Check accepted an unknown key")
	}
}

func TestCloseIsIdempotentAndFinal(t *testing.T) {
	e, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	e.Close()
	now := time.Now()
	if err := e.Consume(nil, now); !errors.Is(err, ErrClosed) {
		t.Errorf("Consume after Close: %v", err)
	}
	if err := e.Expire(now); !errors.Is(err, ErrClosed) {
		t.Errorf("Expire after Close: %v", err)
	}
	if err := e.Flush(now); !errors.Is(err, ErrClosed) {
		t.Errorf("Flush after Close: %v", err)
	}
	if _, err := e.Render(FormatPrometheus, now); !errors.Is(err, ErrClosed) {
		t.Errorf("Render after Close: %v", err)
	}
}

func TestUnknownFormat(t *testing.T) {
	e, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	_, err = e.Render(Format(99), time.Now())
	var ee *Error
	if !errors.As(err, &ee) || ee.Status != StatusInvalidArgument {
		t.Fatalf("Render(99) = %v, want invalid argument", err)
	}
}

func TestEmptyAndValidBatches(t *testing.T) {
	e, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	now := time.Now()
	if err := e.Consume(nil, now); err != nil {
		t.Fatalf("nil batch: %v", err)
	}
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(testutil.ClientServer("a", "b", time.Now(), false))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Consume(b, now); err != nil {
		t.Fatalf("valid batch: %v", err)
	}
	for _, f := range []Format{FormatPrometheus, FormatOpenMetrics, FormatOTLPMetrics, FormatStatsJSON} {
		if _, err := e.Render(f, now); err != nil {
			t.Errorf("Render(%s): %v", f, err)
		}
	}
}

func TestGarbageBatchIsRejected(t *testing.T) {
	realEngine(t)
	e, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	err = e.Consume(garbage, time.Now())
	if !IsInvalidInput(err) {
		t.Fatalf("Consume(garbage) = %v, want invalid input", err)
	}
	if ee := (*Error)(nil); errors.As(err, &ee) && ee.Message == "" {
		t.Error("rejection carries no message")
	}
}

func TestPairRendersEdge(t *testing.T) {
	realEngine(t)
	e, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	now := time.Now()
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(testutil.ClientServer("a", "b", time.Now(), false))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Consume(b, now); err != nil {
		t.Fatal(err)
	}
	// A new series reads as zero for initial_zero_hold (a minute), however
	// often it is read (Tempo semantics), then with its value.
	for range 2 {
		text, err := e.Render(FormatPrometheus, now)
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := testutil.Sample(text, "traces_service_graph_request_total", map[string]string{"client": "a", "server": "b"}); !ok || v != 0 {
			t.Fatalf("within the hold: request_total{client=a,server=b} = %v (found %v), want 0:\n%s", v, ok, text)
		}
	}
	now = now.Add(time.Minute)
	text, err := e.Render(FormatPrometheus, now)
	if err != nil {
		t.Fatal(err)
	}
	v, ok := testutil.Sample(text, "traces_service_graph_request_total", map[string]string{"client": "a", "server": "b"})
	if !ok || v != 1 {
		t.Fatalf("request_total{client=a,server=b} = %v (found %v), want 1:\n%s", v, ok, text)
	}
	om, err := e.Render(FormatOpenMetrics, now)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(om, []byte("# EOF\n")) {
		t.Errorf("OpenMetrics text does not end with # EOF:\n%s", om)
	}
	raw, err := e.Render(FormatOTLPMetrics, now)
	if err != nil {
		t.Fatal(err)
	}
	md, err := (&pmetric.ProtoUnmarshaler{}).UnmarshalMetrics(raw)
	if err != nil {
		t.Fatal(err)
	}
	if md.MetricCount() == 0 {
		t.Error("OTLP rendering has no metrics")
	}
	stats, err := e.Render(FormatStatsJSON, now)
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := json.Unmarshal(stats, &obj); err != nil {
		t.Fatalf("stats are not a JSON object: %v\n%s", err, stats)
	}
}

func TestConcurrentUseAndClose(t *testing.T) {
	e, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(testutil.ClientServer("a", "b", time.Now(), false))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for j := 0; j < 50; j++ {
				now := time.Now()
				if err := e.Consume(b, now); err != nil && !errors.Is(err, ErrClosed) {
					t.Error(err)
					return
				}
				if _, err := e.Render(FormatPrometheus, now); err != nil && !errors.Is(err, ErrClosed) {
					t.Error(err)
					return
				}
				_ = e.Expire(now)
			}
		}()
	}
	close(start)
	e.Close()
	wg.Wait()
}

func TestWantedKeysFollowTheConfiguration(t *testing.T) {
	contains := func(list []string, k string) bool {
		for _, x := range list {
			if x == k {
				return true
			}
		}
		return false
	}
	e, err := New([]byte(`{"dimensions":["http.route"],"peer_attributes":["peer.x"],"database_name_attributes":["db.x"],
		"span_multiplier_key":"sampling.ratio","owner_attribute":"team","graph":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	k, err := e.WantedKeys()
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"http.route", "peer.x", "db.x", "sampling.ratio", "team", "peer.service", "rpc.system", "service.version"} {
		if !contains(k.Span, key) || !contains(k.Resource, key) {
			t.Errorf("%q is not wanted: %+v", key, k)
		}
	}
	if !contains(k.Resource, "service.name") {
		t.Errorf("service.name is not wanted on resources: %+v", k)
	}
	if contains(k.Span, "http.url") {
		t.Errorf("http.url is wanted: %+v", k)
	}

	off, err := New([]byte(`{"graph":false}`))
	if err != nil {
		t.Fatal(err)
	}
	defer off.Close()
	k, err = off.WantedKeys()
	if err != nil {
		t.Fatal(err)
	}
	if contains(k.Span, "rpc.system") || contains(k.Resource, "service.owner") {
		t.Errorf("without the service map the engine still wants its keys: %+v", k)
	}
	off.Close()
	if _, err := off.WantedKeys(); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}
