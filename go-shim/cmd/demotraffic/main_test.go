package main

import (
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/servicemap/servicemap/go-shim/internal/traffic"
)

func TestCheckLoopback(t *testing.T) {
	for endpoint, ok := range map[string]bool{
		"http://localhost:4318/v1/traces": true,
		"http://127.0.0.1:4318/v1/traces": true,
		"http://[::1]:4318/v1/traces":     true,
		"https://localhost/v1/traces":     true,
		"http://10.0.0.1:4318/v1/traces":  false,
		"http://example.com/v1/traces":    false,
		"ftp://localhost/v1/traces":       false,
		"localhost:4318":                  false,
	} {
		if err := checkLoopback(endpoint); (err == nil) != ok {
			t.Errorf("checkLoopback(%q) = %v", endpoint, err)
		}
	}
}

func TestCheckoutTopology(t *testing.T) {
	g := &generator{rng: traffic.New(1, 2), errorRate: 0}
	batches := map[string]ptrace.Traces{}
	if g.checkout(time.Now(), batches) {
		t.Fatal("a checkout failed with error rate 0")
	}
	kinds := map[string]map[ptrace.SpanKind]int{}
	for name, td := range batches {
		kinds[name] = map[ptrace.SpanKind]int{}
		rs := td.ResourceSpans().At(0)
		if v, _ := rs.Resource().Attributes().Get("service.name"); v.Str() != name {
			t.Errorf("batch %s has service.name %q", name, v.Str())
		}
		spans := rs.ScopeSpans().At(0).Spans()
		for i := 0; i < spans.Len(); i++ {
			s := spans.At(i)
			kinds[name][s.Kind()]++
			if s.EndTimestamp() < s.StartTimestamp() {
				t.Errorf("%s span %s ends before it starts", name, s.Name())
			}
		}
	}
	want := map[string]map[ptrace.SpanKind]int{
		"frontend": {ptrace.SpanKindServer: 1, ptrace.SpanKindClient: 1},
		"checkout": {ptrace.SpanKindServer: 1, ptrace.SpanKindClient: 2, ptrace.SpanKindProducer: 1},
		"payment":  {ptrace.SpanKindServer: 1, ptrace.SpanKindClient: 1},
		"shipping": {ptrace.SpanKindConsumer: 1},
	}
	for name, w := range want {
		for kind, n := range w {
			if kinds[name][kind] != n {
				t.Errorf("%s has %d %s spans, want %d", name, kinds[name][kind], kind, n)
			}
		}
	}
}

// TestRollout: before the rollout payment reports its version, after it the
// new one; the other services keep theirs.
func TestRollout(t *testing.T) {
	g := &generator{rng: traffic.New(1, 2), errorRate: 0}
	versions := func() map[string]string {
		batches := map[string]ptrace.Traces{}
		g.checkout(time.Now(), batches)
		out := map[string]string{}
		for name, td := range batches {
			v, _ := td.ResourceSpans().At(0).Resource().Attributes().Get("service.version")
			out[name] = v.Str()
		}
		return out
	}
	before := map[string]string{"frontend": "2.3.1", "checkout": "1.8.0", "payment": "0.9.4", "shipping": "3.0.2"}
	if got := versions(); !maps.Equal(got, before) {
		t.Errorf("before the rollout: %v, want %v", got, before)
	}
	g.rolledOut = true
	after := map[string]string{"frontend": "2.3.1", "checkout": "1.8.0", "payment": "0.10.0", "shipping": "3.0.2"}
	if got := versions(); !maps.Equal(got, after) {
		t.Errorf("after the rollout: %v, want %v", got, after)
	}
}

// TestRunRollsOut: a run with -rollout-at sends payment's first version,
// then, from that share of the run on, only the new one.
func TestRunRollsOut(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := ptraceotlp.NewExportRequest()
		if err := req.UnmarshalProto(body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rs := req.Traces().ResourceSpans()
		mu.Lock()
		for i := 0; i < rs.Len(); i++ {
			attrs := rs.At(i).Resource().Attributes()
			if name, _ := attrs.Get("service.name"); name.Str() == "payment" {
				v, _ := attrs.Get("service.version")
				if len(seen) == 0 || seen[len(seen)-1] != v.Str() {
					seen = append(seen, v.Str())
				}
			}
		}
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	if err := run(srv.URL+"/v1/traces", 100, 600*time.Millisecond, 0, 7, 0.5); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"0.9.4", "0.10.0"}; !slices.Equal(seen, want) {
		t.Errorf("payment's versions in the order sent: %v, want %v", seen, want)
	}
}

func TestRunRefusesARolloutOutsideTheRun(t *testing.T) {
	for _, at := range []float64{-0.1, 1, 2} {
		if err := run("http://localhost:4318/v1/traces", 10, time.Second, 0, 1, at); err == nil {
			t.Errorf("-rollout-at %v was taken", at)
		}
	}
}

func TestRunSendsToCollector(t *testing.T) {
	var mu sync.Mutex
	services := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := ptraceotlp.NewExportRequest()
		if err := req.UnmarshalProto(body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rs := req.Traces().ResourceSpans()
		mu.Lock()
		for i := 0; i < rs.Len(); i++ {
			v, _ := rs.At(i).Resource().Attributes().Get("service.name")
			services[v.Str()]++
		}
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	if err := run(srv.URL+"/v1/traces", 100, 350*time.Millisecond, 0.5, 7, 0); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, name := range []string{"frontend", "checkout", "payment"} {
		if services[name] == 0 {
			t.Errorf("nothing sent for %s (%v)", name, services)
		}
	}
}
