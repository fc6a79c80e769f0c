// Package web serves the live service map over HTTP: the JSON API, Graphviz
// and Mermaid exports, and a self-contained page that draws the map. Every
// answer comes from the engine; this package only maps URLs to engine calls.
package web

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
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

// DefaultMaxEdgesBodySize bounds a POST /api/edges body when
// EdgesOptions.MaxBodySize is not set: about ten thousand edge lines.
const DefaultMaxEdgesBodySize = 1 << 20

// EdgesOptions govern POST /api/edges, the one route that changes state.
type EdgesOptions struct {
	// Accept turns the route on; off, it answers 404 saying how to turn it on.
	Accept bool
	// MaxBodySize bounds a body in bytes, after any Content-Encoding is
	// undone (0: DefaultMaxEdgesBodySize).
	MaxBodySize int64
	// AllowedOrigins are the origins besides the server's own from which a
	// browser may post, as in the server's cors.allowed_origins: compared
	// without regard to case, "*" alone allows any, and one "*" inside
	// stands for any run of characters (the rules the CORS handler applies).
	AllowedOrigins []string
}

// Register adds the service-map routes to mux. now is the clock (time.Now in
// production, a fixed clock in tests).
func Register(mux *http.ServeMux, eng Engine, now func() time.Time, edges EdgesOptions) {
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
	mux.Handle("POST /api/edges", postEdges(eng, now, edges))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		b, _ := page.ReadFile("index.html")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(b)
	})
}

// postEdges takes JSON lines of edges for the engine. Anyone who can reach
// the port, including any web page open in a browser on the same machine,
// could otherwise add edges to the map, so the route is off unless
// configured, takes only JSON media types (which a page on another origin
// cannot send without a CORS preflight, and only the configured origins
// pass one), refuses origins other than its own and the configured ones,
// and bounds its body. A refused request does not reach the engine.
func postEdges(eng Engine, now func() time.Time, opts EdgesOptions) http.HandlerFunc {
	limit := opts.MaxBodySize
	if limit <= 0 {
		limit = DefaultMaxEdgesBodySize
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if !opts.Accept {
			http.Error(w, "POST /api/edges is off: set `http: {accept_edges: true}` in the servicemap processor's configuration to accept edges", http.StatusNotFound)
			return
		}
		if origin := r.Header.Values("Origin"); len(origin) > 0 && !originAllowed(origin[0], r, opts.AllowedOrigins) {
			http.Error(w, fmt.Sprintf("POST /api/edges from origin %q refused: only requests from %s itself, or from an origin listed in the server's cors.allowed_origins, may post edges",
				origin[0], ownOrigin(r)), http.StatusForbidden)
			return
		}
		if ct := r.Header.Get("Content-Type"); !isJSONMediaType(ct) {
			http.Error(w, fmt.Sprintf("POST /api/edges takes Content-Type application/json or application/x-ndjson (JSON lines), not %q", ct),
				http.StatusUnsupportedMediaType)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
		if err != nil {
			if tooBig := (*http.MaxBytesError)(nil); errors.As(err, &tooBig) {
				http.Error(w, tooLarge(tooBig.Limit, limit), http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := eng.ObserveEdges(body, now()); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// tooLarge says which bound a body passed: this route's own, or the lower
// one of the whole server (confighttp's max_request_body_size), which
// limits the body before this handler reads it.
func tooLarge(passed, own int64) string {
	key := "http.max_edges_body_size"
	if passed != own {
		key = "http.max_request_body_size"
	}
	return fmt.Sprintf("POST /api/edges body is larger than %d bytes (%s); send the edges in smaller requests", passed, key)
}

// isJSONMediaType reports whether a Content-Type is application/json or
// application/x-ndjson, with any parameters.
func isJSONMediaType(contentType string) bool {
	mediaType, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mediaType == "application/json" || mediaType == "application/x-ndjson")
}

// ownOrigin is the origin the request was sent to: its scheme and its Host.
func ownOrigin(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// originAllowed reports whether a request's Origin header names the server
// itself or an allowed origin.
func originAllowed(origin string, r *http.Request, allowed []string) bool {
	origin = strings.ToLower(origin)
	if o, ok := normalOrigin(origin); ok {
		if own, ok := normalOrigin(strings.ToLower(ownOrigin(r))); ok && o == own {
			return true
		}
	}
	for _, pattern := range allowed {
		pattern = strings.ToLower(pattern)
		if pattern == "*" || pattern == origin {
			return true
		}
		if prefix, suffix, ok := strings.Cut(pattern, "*"); ok &&
			len(origin) >= len(prefix)+len(suffix) && strings.HasPrefix(origin, prefix) && strings.HasSuffix(origin, suffix) {
			return true
		}
	}
	return false
}

// normalOrigin reduces a lower-case origin to scheme://host[:port], leaving
// out the scheme's default port, so that "http://h" and "http://h:80" agree.
// "null" and anything with a path, user or query is not an origin.
func normalOrigin(origin string) (string, bool) {
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", false
	}
	host := u.Host
	if port := u.Port(); (u.Scheme == "http" && port == "80") || (u.Scheme == "https" && port == "443") {
		host = strings.TrimSuffix(host, ":"+port)
	}
	return u.Scheme + "://" + host, true
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
