package servicemapconnector

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/servicemap/servicemap/go-shim/connector/servicemapconnector/internal/metadata"
	"github.com/servicemap/servicemap/go-shim/internal/options"
)

func loadConfig(t *testing.T, name string) (*Config, error) {
	t.Helper()
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	id := component.NewID(metadata.Type)
	if name != "" {
		id = component.NewIDWithName(metadata.Type, name)
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
	if cfg.Compat != options.CompatContrib {
		t.Errorf("compat = %q, want contrib", cfg.Compat)
	}
	if cfg.MetricsFlushInterval != nil || cfg.FlushInterval() != 60*time.Second {
		t.Errorf("flush interval %v / %s, want unset / 60s", cfg.MetricsFlushInterval, cfg.FlushInterval())
	}
	if cfg.StoreExpirationLoop != 2*time.Second || cfg.CacheLoop != time.Minute {
		t.Errorf("loops %s, %s", cfg.StoreExpirationLoop, cfg.CacheLoop)
	}
	doc, err := cfg.EngineJSON()
	if err != nil {
		t.Fatal(err)
	}
	if string(doc) != `{"compat":"contrib"}` {
		t.Errorf("default engine config %s sends more than the preset", doc)
	}
	if err := confmap.Validate(cfg); err != nil {
		t.Fatal(err)
	}
}

func TestLoadContribConfig(t *testing.T) {
	cfg, err := loadConfig(t, "contrib")
	if err != nil {
		t.Fatal(err)
	}
	if err := confmap.Validate(cfg); err != nil {
		t.Fatal(err)
	}
	if got := cfg.LatencyHistogramBuckets; len(got) != 5 || got[1] != 250*time.Millisecond {
		t.Errorf("buckets %v", got)
	}
	if len(cfg.Dimensions) != 2 || cfg.Dimensions[0] != "dimension-1" {
		t.Errorf("dimensions %v", cfg.Dimensions)
	}
	if *cfg.Store.TTL != 2*time.Second || *cfg.Store.MaxItems != 200 {
		t.Errorf("store %v %v", *cfg.Store.TTL, *cfg.Store.MaxItems)
	}
	if cfg.CacheLoop != 2*time.Minute || cfg.StoreExpirationLoop != 10*time.Second {
		t.Errorf("loops %s %s", cfg.CacheLoop, cfg.StoreExpirationLoop)
	}
	if len(cfg.VirtualNodePeerAttributes) != 2 || !*cfg.VirtualNodeExtraLabel {
		t.Errorf("virtual node settings %v %v", cfg.VirtualNodePeerAttributes, *cfg.VirtualNodeExtraLabel)
	}
	if cfg.FlushInterval() != 30*time.Second {
		t.Errorf("flush interval %s", cfg.FlushInterval())
	}
	if len(cfg.DatabaseNameAttributes) != 1 || *cfg.MetricsTimestampOffset != time.Minute {
		t.Errorf("database_name_attributes %v, offset %v", cfg.DatabaseNameAttributes, *cfg.MetricsTimestampOffset)
	}
	doc, err := cfg.EngineJSON()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"compat":"contrib"`, `"store_ttl":"2s"`, `"store_max_items":200`,
		`"virtual_node_peer_attributes":["db.name","rpc.service"]`, `"metrics_timestamp_offset":"1m0s"`} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("engine config %s lacks %s", doc, want)
		}
	}
	if strings.Contains(string(doc), "flush") || strings.Contains(string(doc), "loop") {
		t.Errorf("collector-only keys reach the engine: %s", doc)
	}
}

func TestLoadOtherConfigs(t *testing.T) {
	cfg, err := loadConfig(t, "per_batch")
	if err != nil {
		t.Fatal(err)
	}
	if err := confmap.Validate(cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.MetricsFlushInterval == nil || cfg.FlushInterval() != 0 {
		t.Errorf("per-batch flush interval %v", cfg.MetricsFlushInterval)
	}

	cfg, err = loadConfig(t, "tempo")
	if err != nil {
		t.Fatal(err)
	}
	if err := confmap.Validate(cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Compat != "tempo" || !*cfg.EnableClientServerPrefix || !*cfg.EnableMessagingSystemLatencyHistogram || *cfg.SpanLinks {
		t.Errorf("tempo options %+v", cfg.Options)
	}
}

func TestExponentialConfig(t *testing.T) {
	cfg, err := loadConfig(t, "exponential")
	if err != nil {
		t.Fatal(err)
	}
	if err := confmap.Validate(cfg); err != nil {
		t.Fatal(err)
	}
	doc, err := cfg.EngineJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), `"exponential_histogram_max_size":4`) {
		t.Errorf("engine config %s lacks the exponential size", doc)
	}
}

func TestInvalidConfigs(t *testing.T) {
	// As contrib's validation says: explicit bounds or exponential histograms.
	cfg, err := loadConfig(t, "exponential_with_buckets")
	if err != nil {
		t.Fatal(err)
	}
	if err := confmap.Validate(cfg); err == nil ||
		!strings.Contains(err.Error(), "use either `latency_histogram_buckets` or `exponential_histogram_max_size`") {
		t.Errorf("exponential histograms with buckets: %v", err)
	}
	if _, err := loadConfig(t, "bad_ttl"); err == nil || !strings.Contains(err.Error(), "ttl") {
		t.Errorf("bad ttl: %v", err)
	}
	cfg, err = loadConfig(t, "negative_flush")
	if err != nil {
		t.Fatal(err)
	}
	if err := confmap.Validate(cfg); err == nil || !strings.Contains(err.Error(), "metrics_flush_interval") {
		t.Errorf("negative flush interval: %v", err)
	}
}
