package servicemapprocessor

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/servicemap/servicemap/go-shim/internal/options"
	"github.com/servicemap/servicemap/go-shim/processor/servicemapprocessor/internal/metadata"
)

func loadConfig(t *testing.T, name string) (*Config, error) {
	t.Helper()
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	id := component.NewIDWithName(metadata.Type, name)
	if name == "" {
		id = component.NewID(metadata.Type)
	}
	sub, err := cm.Sub(id.String())
	if err != nil {
		t.Fatal(err)
	}
	cfg := createDefaultConfig()
	if err := sub.Unmarshal(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

func TestDefaultConfig(t *testing.T) {
	cfg := createDefaultConfig()
	if err := componenttest.CheckConfigStruct(cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Compat != options.CompatTempo {
		t.Errorf("compat = %q, want tempo", cfg.Compat)
	}
	if cfg.HTTP.NetAddr.Endpoint != "localhost:9464" || cfg.HTTP.MetricsPath != "/metrics" {
		t.Errorf("http = %s%s, want localhost:9464/metrics", cfg.HTTP.NetAddr.Endpoint, cfg.HTTP.MetricsPath)
	}
	if cfg.HTTP.AcceptEdges || cfg.HTTP.MaxEdgesBodySize != 1<<20 {
		t.Errorf("http.accept_edges = %v, http.max_edges_body_size = %d; want false and 1 MiB", cfg.HTTP.AcceptEdges, cfg.HTTP.MaxEdgesBodySize)
	}
	if cfg.StoreExpirationLoop != 2*time.Second || cfg.CacheLoop != time.Minute {
		t.Errorf("loops = %s, %s", cfg.StoreExpirationLoop, cfg.CacheLoop)
	}
	doc, err := cfg.EngineJSON()
	if err != nil {
		t.Fatal(err)
	}
	if string(doc) != `{"compat":"tempo"}` {
		t.Errorf("default engine config %s sends more than the preset", doc)
	}
	if err := confmap.Validate(cfg); err != nil {
		t.Fatal(err)
	}
}

func TestLoadConfig(t *testing.T) {
	cfg, err := loadConfig(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := confmap.Validate(cfg); err != nil {
		t.Fatal(err)
	}

	cfg, err = loadConfig(t, "custom")
	if err != nil {
		t.Fatal(err)
	}
	if err := confmap.Validate(cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Compat != "contrib" || len(cfg.Dimensions) != 2 || cfg.Dimensions[1] != "k8s.namespace.name" {
		t.Errorf("compat %q, dimensions %v", cfg.Compat, cfg.Dimensions)
	}
	if got := cfg.LatencyHistogramBuckets; len(got) != 4 || got[0] != 10*time.Millisecond || got[3] != 10*time.Second {
		t.Errorf("buckets %v", got)
	}
	if cfg.Store.TTL == nil || *cfg.Store.TTL != 5*time.Second || cfg.Store.MaxItems == nil || *cfg.Store.MaxItems != 2000 {
		t.Errorf("store %+v", cfg.Store)
	}
	if cfg.VirtualNodeExtraLabel == nil || !*cfg.VirtualNodeExtraLabel {
		t.Error("virtual_node_extra_label not set")
	}
	if cfg.MetricsTimestampOffset == nil || *cfg.MetricsTimestampOffset != 10*time.Second {
		t.Error("metrics_timestamp_offset not set")
	}
	if cfg.StoreExpirationLoop != time.Second || cfg.CacheLoop != 30*time.Second {
		t.Errorf("loops %s %s", cfg.StoreExpirationLoop, cfg.CacheLoop)
	}
	if cfg.SpanMultiplierKey == nil || *cfg.SpanMultiplierKey != "sampling.multiplier" {
		t.Error("span_multiplier_key not set")
	}
	if cfg.SeriesIdleTimeout == nil || *cfg.SeriesIdleTimeout != 5*time.Minute || cfg.MaxSeries == nil || *cfg.MaxSeries != 5000 {
		t.Error("series limits not set")
	}
	if cfg.EnableConnectionInfo == nil || !*cfg.EnableConnectionInfo {
		t.Error("enable_connection_info not set")
	}
	if cfg.FailedLabel != nil || cfg.EnableClientServerPrefix != nil {
		t.Error("options absent from the file are set")
	}
	if cfg.HTTP.NetAddr.Endpoint != "127.0.0.1:19464" || cfg.HTTP.MetricsPath != "/servicemap/metrics" {
		t.Errorf("http %s%s", cfg.HTTP.NetAddr.Endpoint, cfg.HTTP.MetricsPath)
	}
	doc, err := cfg.EngineJSON()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"compat":"contrib"`, `"store_ttl":"5s"`, `"store_max_items":2000`,
		`"latency_histogram_buckets":["10ms","100ms","1s","10s"]`, `"virtual_node_extra_label":true`} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("engine config %s lacks %s", doc, want)
		}
	}
}

func TestEmptyListsAreSent(t *testing.T) {
	cfg, err := loadConfig(t, "empty_lists")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := cfg.EngineJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), `"virtual_node_peer_attributes":[]`) {
		t.Errorf("an explicit empty list is not sent: %s", doc)
	}
}

func TestUnknownKeyIsRejected(t *testing.T) {
	_, err := loadConfig(t, "unknown_key")
	if err == nil || !strings.Contains(err.Error(), "max_itmes") {
		t.Fatalf("unknown key: %v", err)
	}
}

func TestUnknownHTTPKeyIsRejected(t *testing.T) {
	_, err := loadConfig(t, "unknown_http_key")
	if err == nil || !strings.Contains(err.Error(), "metrics_pth") {
		t.Fatalf("unknown key under http: %v", err)
	}
}

// The processor's own keys under http and the server's settings beside them
// are all read, and the server is built with them.
func TestHTTPKeysAndServerSettings(t *testing.T) {
	cfg, err := loadConfig(t, "http_server")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.MetricsPath != "/sm" || !cfg.HTTP.AcceptEdges || cfg.HTTP.MaxEdgesBodySize != 4096 {
		t.Errorf("metrics_path %q, accept_edges %v, max_edges_body_size %d; want /sm, true, 4096",
			cfg.HTTP.MetricsPath, cfg.HTTP.AcceptEdges, cfg.HTTP.MaxEdgesBodySize)
	}
	srv, err := cfg.HTTP.ToServer(context.Background(), nil, componenttest.NewNopTelemetrySettings(), http.NotFoundHandler())
	if err != nil {
		t.Fatal(err)
	}
	if srv.ReadTimeout != 3*time.Second || srv.IdleTimeout != 7*time.Second {
		t.Errorf("server read timeout %s, idle timeout %s; want 3s and 7s", srv.ReadTimeout, srv.IdleTimeout)
	}
}

func TestValidateNamesKeys(t *testing.T) {
	for name, keys := range map[string][]string{
		"bad_values": {"`compat`"},
		"bad_bucket": {"`latency_histogram_buckets[1]`"},
		"bad_http":   {"http.endpoint", "http.metrics_path", "http.max_edges_body_size"},
	} {
		cfg, err := loadConfig(t, name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		err = confmap.Validate(cfg)
		if err == nil {
			t.Fatalf("%s: accepted", name)
		}
		for _, k := range keys {
			if !strings.Contains(err.Error(), k) {
				t.Errorf("%s: error %q does not name %s", name, err, k)
			}
		}
	}
	// The engine reports one key at a time; with compat fixed, max_items is next.
	cfg, err := loadConfig(t, "bad_values")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Compat = "tempo"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "`store.max_items`") {
		t.Errorf("max_items 0: %v", err)
	}
}
