package servicemapconnector

import (
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/collector/confmap"

	"github.com/servicemap/servicemap/go-shim/internal/options"
)

// DefaultMetricsFlushInterval is how often metrics are sent when
// metrics_flush_interval is not set (the contrib connector's default).
const DefaultMetricsFlushInterval = 60 * time.Second

// Config configures the servicemap connector. It accepts the keys of the
// contrib servicegraph connector where they overlap, plus the engine options
// shared with the processor; unset options take the compat preset's default
// (the connector's default preset is "contrib").
type Config struct {
	options.Options `mapstructure:",squash"`

	// MetricsFlushInterval is how often the service-graph metrics are sent to
	// the metrics pipeline. Not set means 60s; 0 means after every trace batch.
	MetricsFlushInterval *time.Duration `mapstructure:"metrics_flush_interval"`

	_ struct{}
}

var _ confmap.Validator = (*Config)(nil)

// Validate checks the configuration; every error names its key.
func (c *Config) Validate() error {
	var errs []error
	if c.MetricsFlushInterval != nil && *c.MetricsFlushInterval < 0 {
		errs = append(errs, fmt.Errorf("metrics_flush_interval: must not be negative, got %s", *c.MetricsFlushInterval))
	}
	if err := c.Options.Check(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// flushInterval is the period of metric pushes; 0 means after every batch.
func (c *Config) flushInterval() time.Duration {
	if c.MetricsFlushInterval == nil {
		return DefaultMetricsFlushInterval
	}
	if *c.MetricsFlushInterval < 0 {
		return 0
	}
	return *c.MetricsFlushInterval
}

func createDefaultConfig() *Config {
	return &Config{
		Options: options.Defaults(options.CompatContrib),
	}
}
