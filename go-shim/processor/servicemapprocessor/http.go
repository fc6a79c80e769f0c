// The processor's HTTP server: its own route, GET on metrics_path (the
// service-graph series as Prometheus text, or as OpenMetrics or Prometheus
// protobuf, which carries native histograms, when the Accept header prefers
// them), and the live service map's routes that internal/web
// registers beside it (the page, the JSON API, the exports and, when
// http.accept_edges is on, POST /api/edges).

package servicemapprocessor

import (
	"errors"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/servicemap/servicemap/go-shim/internal/engine"
	"github.com/servicemap/servicemap/go-shim/internal/web"
)

const (
	contentTypePrometheus  = "text/plain; version=0.0.4; charset=utf-8"
	contentTypeOpenMetrics = "application/openmetrics-text; version=1.0.0; charset=utf-8"
	contentTypeProtobuf    = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
)

// route is one endpoint of the processor's HTTP server.
type route struct {
	// pattern is an http.ServeMux pattern ("GET /metrics" also serves HEAD).
	pattern string
	handler http.HandlerFunc
}

// routes lists the endpoints the processor serves itself: the metrics path.
// The service map's endpoints are internal/web's; handler adds both.
func (p *serviceMapProcessor) routes() []route {
	return []route{
		{pattern: http.MethodGet + " " + p.cfg.HTTP.MetricsPath, handler: p.serveMetrics},
	}
}

// handler is the server's mux: the processor's routes and the service map's.
func (p *serviceMapProcessor) handler() http.Handler {
	mux := http.NewServeMux()
	for _, r := range p.routes() {
		mux.Handle(r.pattern, r.handler)
	}
	// The live service map: its page, JSON API and exports.
	web.Register(mux, p.eng, p.loop.Now, p.edgesOptions())
	return mux
}

// edgesOptions are the rules for POST /api/edges. Origins the server's CORS
// settings allow may post too, since the server already answers their
// browsers' preflight requests.
func (p *serviceMapProcessor) edgesOptions() web.EdgesOptions {
	opts := web.EdgesOptions{Accept: p.cfg.HTTP.AcceptEdges, MaxBodySize: p.cfg.HTTP.MaxEdgesBodySize}
	if p.cfg.HTTP.CORS.HasValue() {
		opts.AllowedOrigins = p.cfg.HTTP.CORS.Get().AllowedOrigins
	}
	return opts
}

// serveMetrics renders the engine's series in the format the scraper asks for.
func (p *serviceMapProcessor) serveMetrics(w http.ResponseWriter, r *http.Request) {
	format := negotiate(r.Header.Values("Accept"))
	contentType := map[engine.Format]string{
		engine.FormatPrometheus:         contentTypePrometheus,
		engine.FormatOpenMetrics:        contentTypeOpenMetrics,
		engine.FormatPrometheusProtobuf: contentTypeProtobuf,
	}[format]
	body, err := p.eng.Render(format, p.loop.Now())
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, engine.ErrClosed) {
			status = http.StatusServiceUnavailable
		}
		http.Error(w, err.Error(), status)
		return
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Vary", "Accept")
	_, _ = w.Write(body)
}

// negotiate picks the exposition format the Accept header prefers: the one
// listed with the highest quality above zero, Prometheus protobuf (the
// delimited MetricFamily messages, the only format with native histograms)
// before OpenMetrics before text on a tie; text when none is listed.
func negotiate(accept []string) engine.Format {
	protobuf, openMetrics, text := -1.0, -1.0, -1.0
	for _, header := range accept {
		for _, part := range strings.Split(header, ",") {
			mediaType, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			q := 1.0
			if v, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(v, 64); err == nil {
					q = f
				}
			}
			switch mediaType {
			case "application/vnd.google.protobuf":
				if params["proto"] == "io.prometheus.client.MetricFamily" && params["encoding"] == "delimited" {
					protobuf = max(protobuf, q)
				}
			case "application/openmetrics-text":
				openMetrics = max(openMetrics, q)
			case "text/plain", "text/*", "*/*":
				text = max(text, q)
			}
		}
	}
	switch {
	case protobuf > 0 && protobuf >= openMetrics && protobuf >= text:
		return engine.FormatPrometheusProtobuf
	case openMetrics > 0 && openMetrics >= text:
		return engine.FormatOpenMetrics
	}
	return engine.FormatPrometheus
}
