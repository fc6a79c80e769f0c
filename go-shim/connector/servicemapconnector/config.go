package servicemapconnector

import (
	"errors"

	"go.opentelemetry.io/collector/confmap"

	"github.com/servicemap/servicemap/go-shim/internal/metricsloop"
	"github.com/servicemap/servicemap/go-shim/internal/options"
)

// Config configures the servicemap connector. It accepts the keys of the
// contrib servicegraph connector where they overlap, plus the engine options
// shared with the processor; unset options take the compat preset's default
// (the connector's default preset is "contrib").
type Config struct {
	options.Options `mapstructure:",squash"`

	metricsloop.Flush `mapstructure:",squash"`

	_ struct{}
}

var _ confmap.Validator = (*Config)(nil)

// Validate checks the configuration; every error names its key.
func (c *Config) Validate() error {
	var errs []error
	if err := c.CheckFlushInterval(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Options.Check(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func createDefaultConfig() *Config {
	return &Config{
		Options: options.Defaults(options.CompatContrib),
	}
}
