package servicemapprocessor

import (
	"errors"
	"fmt"
	"strings"

	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/confmap"

	"github.com/servicemap/servicemap/go-shim/internal/options"
	"github.com/servicemap/servicemap/go-shim/internal/web"
)

const (
	defaultEndpoint    = "localhost:9464"
	defaultMetricsPath = "/metrics"
)

// HTTPConfig is the processor's own HTTP server, which serves the service
// graph as Prometheus or OpenMetrics text, and the live map.
type HTTPConfig struct {
	confighttp.ServerConfig `mapstructure:",squash"`
	// MetricsPath is the path of the exposition endpoint.
	MetricsPath string `mapstructure:"metrics_path"`
	// AcceptEdges turns on POST /api/edges, through which anyone who can
	// reach the server adds edges to the map. Off by default.
	AcceptEdges bool `mapstructure:"accept_edges"`
	// MaxEdgesBodySize bounds a POST /api/edges body in bytes (default 1 MiB).
	MaxEdgesBodySize int64 `mapstructure:"max_edges_body_size"`

	_ struct{}
}

// Config configures the servicemap processor. The engine options are those
// shared with the connector; unset options take the compat preset's default
// (the processor's default preset is "tempo").
type Config struct {
	options.Options `mapstructure:",squash"`

	// HTTP is the exposition server (default localhost:9464, path /metrics).
	HTTP HTTPConfig `mapstructure:"http"`

	_ struct{}
}

var _ confmap.Validator = (*Config)(nil)

// Validate checks the configuration; every error names its key.
func (c *Config) Validate() error {
	var errs []error
	if c.HTTP.NetAddr.Endpoint == "" {
		errs = append(errs, errors.New("http.endpoint: must not be empty"))
	}
	if !strings.HasPrefix(c.HTTP.MetricsPath, "/") {
		errs = append(errs, fmt.Errorf("http.metrics_path: must start with \"/\", got %q", c.HTTP.MetricsPath))
	}
	if c.HTTP.MaxEdgesBodySize <= 0 {
		errs = append(errs, fmt.Errorf("http.max_edges_body_size: must be a positive number of bytes, got %d", c.HTTP.MaxEdgesBodySize))
	}
	if err := c.Options.Check(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func createDefaultConfig() *Config {
	server := confighttp.NewDefaultServerConfig()
	server.NetAddr.Endpoint = defaultEndpoint
	return &Config{
		Options: options.Defaults(options.CompatTempo),
		HTTP: HTTPConfig{
			ServerConfig:     server,
			MetricsPath:      defaultMetricsPath,
			MaxEdgesBodySize: web.DefaultMaxEdgesBodySize,
		},
	}
}
