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

var _ confmap.Unmarshaler = (*HTTPConfig)(nil)

// strictServerConfig has confighttp.ServerConfig's fields and none of its
// methods, so decoding into it is the plain, strict decoding.
type strictServerConfig confighttp.ServerConfig

// strictHTTPConfig is HTTPConfig for that strict decoding.
type strictHTTPConfig struct {
	Server           strictServerConfig `mapstructure:",squash"`
	MetricsPath      string             `mapstructure:"metrics_path"`
	AcceptEdges      bool               `mapstructure:"accept_edges"`
	MaxEdgesBodySize int64              `mapstructure:"max_edges_body_size"`
}

// ownHTTPKeys are HTTPConfig's keys beside the server's.
var ownHTTPKeys = []string{"metrics_path", "accept_edges", "max_edges_body_size"}

// Unmarshal decodes the processor's own keys and the server's settings; an
// unknown key is an error, as everywhere else in the configuration.
//
// Some collector releases (v0.160.0 and v0.161.0 among them) give
// confighttp.ServerConfig an Unmarshal method. Embedded here, it would be
// promoted to HTTPConfig and decode the server's settings alone, dropping
// metrics_path, accept_edges, max_edges_body_size and unknown keys without a
// word. This method decodes both parts, whether ServerConfig has one or not.
func (h *HTTPConfig) Unmarshal(conf *confmap.Conf) error {
	strict := strictHTTPConfig{
		Server:           strictServerConfig(h.ServerConfig),
		MetricsPath:      h.MetricsPath,
		AcceptEdges:      h.AcceptEdges,
		MaxEdgesBodySize: h.MaxEdgesBodySize,
	}
	if err := conf.Unmarshal(&strict); err != nil {
		return err
	}
	h.MetricsPath, h.AcceptEdges, h.MaxEdgesBodySize = strict.MetricsPath, strict.AcceptEdges, strict.MaxEdgesBodySize

	// The server's settings through ServerConfig's own decoding, where it has
	// one (it resolves deprecated keys), else the plain one.
	server := conf.ToStringMap()
	for _, k := range ownHTTPKeys {
		delete(server, k)
	}
	return confmap.NewFromStringMap(server).Unmarshal(&h.ServerConfig)
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
