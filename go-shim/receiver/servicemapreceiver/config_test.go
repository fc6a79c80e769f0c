package servicemapreceiver

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/servicemap/servicemap/go-shim/internal/metricsloop"
	"github.com/servicemap/servicemap/go-shim/receiver/servicemapreceiver/internal/metadata"
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
	cfg := NewFactory().CreateDefaultConfig()
	if err := componenttest.CheckConfigStruct(cfg); err != nil {
		t.Fatal(err)
	}
	c := cfg.(*Config)
	if c.Protocols.GRPC.HasValue() || c.Protocols.HTTP.HasValue() {
		t.Error("a protocol is enabled without being configured")
	}
	if c.FlushInterval() != metricsloop.DefaultFlushInterval {
		t.Errorf("flush interval %s", c.FlushInterval())
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "protocols") {
		t.Errorf("default config without protocols: %v", err)
	}
}

func TestLoadConfigs(t *testing.T) {
	cfg, err := loadConfig(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := confmap.Validate(cfg); err != nil {
		t.Fatal(err)
	}
	if !cfg.Protocols.GRPC.HasValue() || cfg.Protocols.HTTP.HasValue() {
		t.Fatal("want gRPC only")
	}
	if got := cfg.Protocols.GRPC.Get().NetAddr.Endpoint; got != "localhost:4317" {
		t.Errorf("gRPC endpoint %q", got)
	}

	cfg, err = loadConfig(t, "both")
	if err != nil {
		t.Fatal(err)
	}
	if err := confmap.Validate(cfg); err != nil {
		t.Fatal(err)
	}
	if got := cfg.Protocols.GRPC.Get().NetAddr.Endpoint; got != "0.0.0.0:14317" {
		t.Errorf("gRPC endpoint %q", got)
	}
	if got := cfg.Protocols.HTTP.Get().NetAddr.Endpoint; got != "0.0.0.0:14318" {
		t.Errorf("HTTP endpoint %q", got)
	}
	if cfg.FlushInterval() != 30*time.Second {
		t.Errorf("flush interval %s", cfg.FlushInterval())
	}
	doc, err := cfg.EngineJSON()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"compat":"contrib"`, `"store_ttl":"2s"`, `"store_max_items":2000`, `"dimensions":["deployment.environment"]`} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("engine config %s lacks %s", doc, want)
		}
	}
	if strings.Contains(string(doc), "protocols") || strings.Contains(string(doc), "endpoint") {
		t.Errorf("receiver keys reach the engine: %s", doc)
	}
}

func TestInvalidConfigs(t *testing.T) {
	for name, want := range map[string]string{
		"no_protocols":   "protocols",
		"negative_flush": "metrics_flush_interval",
	} {
		cfg, err := loadConfig(t, name)
		if err == nil {
			err = confmap.Validate(cfg)
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one naming %s", name, err, want)
		}
	}
}
