package web

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/servicemap/servicemap/go-shim/internal/engine"
	"github.com/servicemap/servicemap/go-shim/internal/testutil"
)

// server returns a test server over a real engine holding
// web -> api (ok), api -> db (failing), with a fixed clock.
func server(t *testing.T) (*httptest.Server, time.Time) {
	t.Helper()
	eng, err := engine.New([]byte(`{"initial_zero":false}`))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	now := time.Unix(1767225600, 0)
	td := ptrace.NewTraces()
	for i := 0; i < 4; i++ {
		testutil.AppendClientServer(td, "web", "api", now, false)
		testutil.AppendClientServer(td, "api", "db", now, true)
	}
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Consume(b, now); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	Register(mux, eng, func() time.Time { return now })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, now
}

func get(t *testing.T, url string) (int, string, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

func TestGraphJSON(t *testing.T) {
	srv, _ := server(t)
	code, ctype, body := get(t, srv.URL+"/api/graph")
	if code != 200 || ctype != "application/json" {
		t.Fatalf("status %d, content type %q", code, ctype)
	}
	var g struct {
		Nodes []struct{ ID, Health string }
		Edges []struct {
			Client, Server string
			ErrorRate      float64 `json:"error_rate"`
		}
		RootCauses []string `json:"root_causes"`
	}
	if err := json.Unmarshal([]byte(body), &g); err != nil {
		t.Fatal(err)
	}
	health := map[string]string{}
	for _, n := range g.Nodes {
		health[n.ID] = n.Health
	}
	want := map[string]string{"web": "unknown", "api": "green", "db": "red"}
	for k, v := range want {
		if health[k] != v {
			t.Errorf("health of %s = %q, want %q (all: %v)", k, health[k], v, health)
		}
	}
	if len(g.Edges) != 2 || g.Edges[0].Client != "api" || g.Edges[0].ErrorRate != 1 {
		t.Errorf("edges = %+v", g.Edges)
	}
	if strings.Join(g.RootCauses, ",") != "db" {
		t.Errorf("root causes = %v, want [db]", g.RootCauses)
	}
}

func TestImpact(t *testing.T) {
	srv, _ := server(t)
	code, _, body := get(t, srv.URL+"/api/impact?service=db")
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	var i struct {
		Dependents    []string
		Dependencies  []string
		RecoveryOrder []string `json:"recovery_order"`
	}
	if err := json.Unmarshal([]byte(body), &i); err != nil {
		t.Fatal(err)
	}
	if strings.Join(i.Dependents, ",") != "api,web" || len(i.Dependencies) != 0 || strings.Join(i.RecoveryOrder, ",") != "db" {
		t.Errorf("impact = %+v", i)
	}
	code, _, body = get(t, srv.URL+"/api/impact")
	if code != 400 || !strings.Contains(body, "service parameter is required") {
		t.Errorf("missing service: status %d, body %q", code, body)
	}
}

func TestExportsAndPage(t *testing.T) {
	srv, _ := server(t)
	code, ctype, body := get(t, srv.URL+"/graph.dot")
	if code != 200 || !strings.HasPrefix(ctype, "text/vnd.graphviz") || !strings.Contains(body, `"api" -> "db" [color="#c62828"`) {
		t.Errorf("dot: %d %q %s", code, ctype, body)
	}
	code, _, body = get(t, srv.URL+"/graph.mmd")
	if code != 200 || !strings.HasPrefix(body, "graph LR\n") {
		t.Errorf("mermaid: %d %s", code, body)
	}
	code, ctype, body = get(t, srv.URL+"/")
	if code != 200 || ctype != "text/html; charset=utf-8" || !strings.Contains(body, `fetch("api/graph")`) {
		t.Errorf("page: %d %q", code, ctype)
	}
	if code, _, _ := get(t, srv.URL+"/nope"); code != 404 {
		t.Errorf("unknown path: status %d, want 404", code)
	}
}

func TestDiffAndHistory(t *testing.T) {
	srv, now := server(t)
	code, _, body := get(t, srv.URL+"/api/diff")
	if code != 400 || !strings.Contains(body, "from parameter is required") {
		t.Errorf("missing from: %d %q", code, body)
	}
	code, _, body = get(t, srv.URL+"/api/diff?from=yesterday")
	if code != 400 || !strings.Contains(body, "is not an RFC 3339 time") {
		t.Errorf("bad from: %d %q", code, body)
	}
	// No snapshot has been taken (no expiry ran): the engine says so.
	code, _, body = get(t, srv.URL+"/api/diff?from="+now.Add(-time.Hour).Format(time.RFC3339))
	if code != 400 || !strings.Contains(body, "no snapshot has been taken yet") {
		t.Errorf("diff before any snapshot: %d %q", code, body)
	}
	code, _, body = get(t, srv.URL+"/api/history")
	if code != 200 || strings.TrimSpace(body) != `{"snapshots_unix_nano":[]}` {
		t.Errorf("history: %d %q", code, body)
	}
}

func TestPostedEdgesJoinTheGraph(t *testing.T) {
	srv, _ := server(t)
	resp, err := http.Post(srv.URL+"/api/edges", "application/x-ndjson", strings.NewReader(`{"client":"lb","server":"web","count":10}`+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	_, _, body := get(t, srv.URL+"/api/impact?service=db")
	if !strings.Contains(body, `"dependents":["api","web","lb"]`) {
		t.Errorf("impact after posting edges: %s", body)
	}
	resp, err = http.Post(srv.URL+"/api/edges", "application/x-ndjson", strings.NewReader(`{"client":"lb"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(b), "edge line 1: `server` must be a non-empty string") {
		t.Errorf("bad edges: %d %s", resp.StatusCode, b)
	}
}

func TestParseTime(t *testing.T) {
	now := time.Unix(1000, 0)
	cases := map[string]uint64{
		"":                     0,
		"500":                  500e9,
		"1970-01-01T00:10:00Z": 600e9,
		"90s":                  910e9,
	}
	for in, want := range cases {
		got, err := parseTime(in, now)
		if err != nil || got != want {
			t.Errorf("parseTime(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}
