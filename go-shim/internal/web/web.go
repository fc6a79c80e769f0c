// Package web serves the live service map over HTTP: the JSON API, Graphviz
// and Mermaid exports, and a self-contained page that draws the map. Every
// answer comes from the engine; this package only maps URLs to engine calls.
package web

import (
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/servicemap/servicemap/go-shim/internal/engine"
)

//go:embed index.html
var page embed.FS

// Engine is what the handlers need from an engine.
type Engine interface {
	Render(format engine.Format, now time.Time) ([]byte, error)
	Query(request []byte, now time.Time) ([]byte, error)
	ObserveEdges(lines []byte, now time.Time) error
}

// maxEdgeLines bounds a POST /api/edges body.
const maxEdgeLines = 8 << 20

// Register adds the service-map routes to mux. now is the clock (time.Now in
// production, a fixed clock in tests).
func Register(mux *http.ServeMux, eng Engine, now func() time.Time) {
	render := func(format engine.Format, contentType string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			b, err := eng.Render(format, now())
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", contentType)
			_, _ = w.Write(b)
		}
	}
	query := func(build func(r *http.Request) (map[string]any, error)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			req, err := build(r)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body, _ := json.Marshal(req)
			b, err := eng.Query(body, now())
			if err != nil {
				status := http.StatusInternalServerError
				if engine.IsInvalidArgument(err) {
					status = http.StatusBadRequest
				}
				http.Error(w, err.Error(), status)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(b)
		}
	}
	fixed := func(name string) func(*http.Request) (map[string]any, error) {
		return func(*http.Request) (map[string]any, error) { return map[string]any{"query": name}, nil }
	}

	mux.HandleFunc("GET /api/graph", render(engine.FormatGraphJSON, "application/json"))
	mux.HandleFunc("GET /graph.dot", render(engine.FormatGraphDOT, "text/vnd.graphviz; charset=utf-8"))
	mux.HandleFunc("GET /graph.mmd", render(engine.FormatGraphMermaid, "text/plain; charset=utf-8"))
	mux.HandleFunc("GET /api/impact", query(func(r *http.Request) (map[string]any, error) {
		service := r.URL.Query().Get("service")
		if service == "" {
			return nil, fmt.Errorf("the service parameter is required, as in /api/impact?service=checkout")
		}
		return map[string]any{"query": "impact", "service": service}, nil
	}))
	mux.HandleFunc("GET /api/root_causes", query(fixed("root_causes")))
	mux.HandleFunc("GET /api/recovery_order", query(fixed("recovery_order")))
	mux.HandleFunc("GET /api/history", query(fixed("history")))
	mux.HandleFunc("GET /api/diff", query(func(r *http.Request) (map[string]any, error) {
		t := now()
		from, err := parseTime(r.URL.Query().Get("from"), t)
		if err != nil {
			return nil, fmt.Errorf("from: %w", err)
		}
		if from == 0 {
			return nil, fmt.Errorf("the from parameter is required, as in /api/diff?from=1h (an hour ago)")
		}
		req := map[string]any{"query": "diff", "from": from}
		if to, err := parseTime(r.URL.Query().Get("to"), t); err != nil {
			return nil, fmt.Errorf("to: %w", err)
		} else if to != 0 {
			req["to"] = to
		}
		return req, nil
	}))
	mux.HandleFunc("POST /api/edges", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxEdgeLines))
		if err != nil {
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		if err := eng.ObserveEdges(body, now()); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		b, _ := page.ReadFile("index.html")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(b)
	})
}

// parseTime reads a time as RFC 3339, as Unix seconds, or as a duration
// meaning that long before now ("90m"). Empty gives 0.
func parseTime(s string, now time.Time) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return uint64(t.UnixNano()), nil
	}
	if secs, err := strconv.ParseFloat(s, 64); err == nil && secs >= 0 {
		return uint64(secs * 1e9), nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return uint64(now.Add(-d).UnixNano()), nil
	}
	return 0, fmt.Errorf("%q is not an RFC 3339 time, Unix seconds or a duration before now", s)
}
