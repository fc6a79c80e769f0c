package web

import (
	"bytes"
	"encoding/json"
	"fmt"
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
// web -> api (ok), api -> db (failing), with a fixed clock, taking posted
// edges.
func server(t *testing.T) (*httptest.Server, time.Time) {
	return serverWith(t, EdgesOptions{Accept: true})
}

// serverWith is server with the given rules for POST /api/edges.
func serverWith(t *testing.T, edges EdgesOptions) (*httptest.Server, time.Time) {
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
	Register(mux, eng, func() time.Time { return now }, edges)
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
		Direction     string   `json:"root_cause_direction"`
		Suspects      []string
	}
	if err := json.Unmarshal([]byte(body), &i); err != nil {
		t.Fatal(err)
	}
	// The database first, then its callers, each after what it calls.
	if strings.Join(i.Dependents, ",") != "api,web" || len(i.Dependencies) != 0 ||
		strings.Join(i.RecoveryOrder, ",") != "db,api,web" {
		t.Errorf("impact = %+v", i)
	}
	// The failing database is the cause of its own trouble.
	if i.Direction != "self" || strings.Join(i.Suspects, ",") != "db" {
		t.Errorf("cause = %q, suspects %v; want self, [db]", i.Direction, i.Suspects)
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

// post sends body to /api/edges with the given Content-Type and Origin
// (each left out when empty) and returns the status and body.
func post(t *testing.T, srv *httptest.Server, contentType, origin string, body io.Reader) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/api/edges", body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// graphOf is the server's /api/graph (the clock is fixed, so an unchanged
// map gives the same bytes).
func graphOf(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	code, _, body := get(t, srv.URL+"/api/graph")
	if code != 200 {
		t.Fatalf("GET /api/graph: %d %s", code, body)
	}
	return body
}

// refused posts a request that must be refused with status and message,
// and checks that the map is the same afterwards.
func refused(t *testing.T, srv *httptest.Server, contentType, origin string, body io.Reader, status int, message string) {
	t.Helper()
	before := graphOf(t, srv)
	code, got := post(t, srv, contentType, origin, body)
	if code != status || got != message+"\n" {
		t.Errorf("Content-Type %q, Origin %q: %d %q\nwant %d %q", contentType, origin, code, got, status, message+"\n")
	}
	if after := graphOf(t, srv); after != before {
		t.Errorf("Content-Type %q, Origin %q: a refused request changed the map:\nbefore %s\nafter  %s", contentType, origin, before, after)
	}
}

// accepted posts one edge that must be taken.
func accepted(t *testing.T, srv *httptest.Server, contentType, origin, client string) {
	t.Helper()
	line := fmt.Sprintf(`{"client":%q,"server":"web","count":1}`, client) + "\n"
	if code, got := post(t, srv, contentType, origin, strings.NewReader(line)); code != 204 || got != "" {
		t.Errorf("Content-Type %q, Origin %q: %d %q, want 204", contentType, origin, code, got)
	}
}

// nodeIDs lists the map's nodes.
func nodeIDs(t *testing.T, srv *httptest.Server) []string {
	t.Helper()
	var g struct{ Nodes []struct{ ID string } }
	if err := json.Unmarshal([]byte(graphOf(t, srv)), &g); err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(g.Nodes))
	for i, n := range g.Nodes {
		ids[i] = n.ID
	}
	return ids
}

const edgeLine = `{"client":"lb","server":"web","count":10}` + "\n"

func TestPostEdgesIsOffUnlessAccepted(t *testing.T) {
	srv, _ := serverWith(t, EdgesOptions{})
	refused(t, srv, "application/x-ndjson", "", strings.NewReader(edgeLine), http.StatusNotFound,
		"POST /api/edges is off: set `http: {accept_edges: true}` in the servicemap processor's configuration to accept edges")
	// The map's read-only routes are not affected.
	if code, _, _ := get(t, srv.URL+"/api/impact?service=db"); code != 200 {
		t.Errorf("impact with edges off: %d", code)
	}
}

func TestPostEdgesTakesOnlyJSONMediaTypes(t *testing.T) {
	srv, _ := server(t)
	for _, ct := range []string{"", "text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded",
		"multipart/form-data; boundary=x", "application/jsonx", "application/json; charset", "application/ndjson"} {
		want := fmt.Sprintf("POST /api/edges takes Content-Type application/json or application/x-ndjson (JSON lines), not %q", ct)
		refused(t, srv, ct, "", strings.NewReader(edgeLine), http.StatusUnsupportedMediaType, want)
	}
	// Parameters and case in the media type are allowed.
	accepted(t, srv, "application/json", "", "a1")
	accepted(t, srv, "application/json; charset=utf-8", "", "a2")
	accepted(t, srv, "application/x-ndjson", "", "a3")
	accepted(t, srv, "Application/X-NDJSON; charset=UTF-8", "", "a4")
	if got, want := strings.Join(nodeIDs(t, srv), ","), "a1,a2,a3,a4,api,db,web"; got != want {
		t.Errorf("nodes %s, want %s", got, want)
	}
}

func TestPostEdgesRefusesOtherOrigins(t *testing.T) {
	srv, _ := server(t)
	own := srv.URL // http://127.0.0.1:PORT
	port := strings.TrimPrefix(own, "http://127.0.0.1:")
	for _, origin := range []string{
		"http://evil.example",
		"null",
		"http://127.0.0.1",              // another port
		"https://127.0.0.1:" + port,     // another scheme
		"http://localhost:" + port,      // another host name, even for the same address
		own + "/path",                   // not an origin
		"http://user@127.0.0.1:" + port, // not an origin
	} {
		want := fmt.Sprintf("POST /api/edges from origin %q refused: only requests from %s itself, or from an origin listed in the server's cors.allowed_origins, may post edges", origin, own)
		refused(t, srv, "application/json", origin, strings.NewReader(edgeLine), http.StatusForbidden, want)
	}
	// What a page on another site can send without a preflight: refused
	// for its origin before its media type is looked at.
	refused(t, srv, "text/plain", "http://evil.example", strings.NewReader(edgeLine), http.StatusForbidden,
		`POST /api/edges from origin "http://evil.example" refused: only requests from `+own+` itself, or from an origin listed in the server's cors.allowed_origins, may post edges`)

	accepted(t, srv, "application/json", "", "no-origin")
	accepted(t, srv, "application/json", own, "same-origin")
	accepted(t, srv, "application/json", strings.ToUpper(own), "same-origin-upper-case")
	accepted(t, srv, "application/json", own+"/", "same-origin-slash")
	if got, want := strings.Join(nodeIDs(t, srv), ","), "api,db,no-origin,same-origin,same-origin-slash,same-origin-upper-case,web"; got != want {
		t.Errorf("nodes %s, want %s", got, want)
	}
}

func TestPostEdgesFromAllowedOrigins(t *testing.T) {
	srv, _ := serverWith(t, EdgesOptions{Accept: true, AllowedOrigins: []string{"https://*.example.com", "http://Dashboard.local:3000"}})
	accepted(t, srv, "application/json", "https://map.example.com", "wildcard")
	accepted(t, srv, "application/json", "https://a.b.example.com", "wildcard-deeper")
	accepted(t, srv, "application/json", "HTTP://DASHBOARD.LOCAL:3000", "listed")
	for _, origin := range []string{"https://example.com", "http://map.example.com", "http://dashboard.local:3001", "https://map.example.com.evil.example"} {
		want := fmt.Sprintf("POST /api/edges from origin %q refused: only requests from %s itself, or from an origin listed in the server's cors.allowed_origins, may post edges", origin, srv.URL)
		refused(t, srv, "application/json", origin, strings.NewReader(edgeLine), http.StatusForbidden, want)
	}
	if got, want := strings.Join(nodeIDs(t, srv), ","), "api,db,listed,web,wildcard,wildcard-deeper"; got != want {
		t.Errorf("nodes %s, want %s", got, want)
	}

	any, _ := serverWith(t, EdgesOptions{Accept: true, AllowedOrigins: []string{"*"}})
	accepted(t, any, "application/json", "http://anywhere.example", "anywhere")
}

// sized is one edge line padded with spaces to exactly n bytes.
func sized(t *testing.T, client string, n int) []byte {
	t.Helper()
	line := fmt.Sprintf(`{"client":%q,"server":"web","count":1}`, client)
	if len(line)+1 > n {
		t.Fatalf("%d bytes is too short for %s", n, line)
	}
	return []byte(line + strings.Repeat(" ", n-len(line)-1) + "\n")
}

// unsized hides a body's length from the client, which then sends it
// chunked: the server learns its size only by reading it.
type unsized struct{ r io.Reader }

func (u unsized) Read(p []byte) (int, error) { return u.r.Read(p) }

func TestPostEdgesBodyIsBounded(t *testing.T) {
	srv, _ := serverWith(t, EdgesOptions{Accept: true, MaxBodySize: 100})
	const tooLarge = "POST /api/edges body is larger than 100 bytes (http.max_edges_body_size); send the edges in smaller requests"
	refused(t, srv, "application/x-ndjson", "", bytes.NewReader(sized(t, "big", 101)), http.StatusRequestEntityTooLarge, tooLarge)
	refused(t, srv, "application/x-ndjson", "", unsized{bytes.NewReader(sized(t, "big", 101))}, http.StatusRequestEntityTooLarge, tooLarge)
	// A body the size of the bound is taken, with or without a length.
	if code, got := post(t, srv, "application/x-ndjson", "", bytes.NewReader(sized(t, "exact", 100))); code != 204 {
		t.Errorf("100 bytes: %d %q", code, got)
	}
	if code, got := post(t, srv, "application/x-ndjson", "", unsized{bytes.NewReader(sized(t, "exact-chunked", 100))}); code != 204 {
		t.Errorf("100 bytes chunked: %d %q", code, got)
	}
	if got, want := strings.Join(nodeIDs(t, srv), ","), "api,db,exact,exact-chunked,web"; got != want {
		t.Errorf("nodes %s, want %s", got, want)
	}

}

// TestPostEdgesDefaultBound calls the handler directly: a client sending a
// large body over a socket may see the connection closed under it before it
// reads the 413.
func TestPostEdgesDefaultBound(t *testing.T) {
	var eng recordingEngine
	h := postEdges(&eng, func() time.Time { return time.Unix(1767225600, 0) }, EdgesOptions{Accept: true})
	for _, tc := range []struct {
		size   int
		status int
		body   string
	}{
		{DefaultMaxEdgesBodySize + 1, http.StatusRequestEntityTooLarge,
			"POST /api/edges body is larger than 1048576 bytes (http.max_edges_body_size); send the edges in smaller requests\n"},
		{DefaultMaxEdgesBodySize, http.StatusNoContent, ""},
	} {
		for _, chunked := range []bool{false, true} {
			eng.calls = 0
			var body io.Reader = bytes.NewReader(sized(t, "lb", tc.size))
			if chunked {
				body = unsized{body}
			}
			req := httptest.NewRequest(http.MethodPost, "/api/edges", body)
			req.Header.Set("Content-Type", "application/x-ndjson")
			rec := httptest.NewRecorder()
			h(rec, req)
			wantCalls := 0
			if tc.status == http.StatusNoContent {
				wantCalls = 1
			}
			if rec.Code != tc.status || rec.Body.String() != tc.body || eng.calls != wantCalls || (wantCalls == 1 && eng.bytes != tc.size) {
				t.Errorf("%d bytes (chunked %v): %d %q, engine called %d times with %d bytes; want %d %q, %d calls",
					tc.size, chunked, rec.Code, rec.Body.String(), eng.calls, eng.bytes, tc.status, tc.body, wantCalls)
			}
		}
	}
}

// recordingEngine counts what reaches the engine.
type recordingEngine struct {
	calls, bytes int
}

func (e *recordingEngine) Render(engine.Format, time.Time) ([]byte, error) { return nil, nil }
func (e *recordingEngine) Query([]byte, time.Time) ([]byte, error)         { return nil, nil }
func (e *recordingEngine) ObserveEdges(lines []byte, _ time.Time) error {
	e.calls++
	e.bytes = len(lines)
	return nil
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
