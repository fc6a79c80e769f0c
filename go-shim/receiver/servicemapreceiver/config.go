package servicemapreceiver

import (
	"errors"

	"go.opentelemetry.io/collector/config/configgrpc"
	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configtls"
	"go.opentelemetry.io/collector/confmap"

	"github.com/servicemap/servicemap/go-shim/internal/metricsloop"
	"github.com/servicemap/servicemap/go-shim/internal/options"
)

// Protocols are the servers the receiver runs. Like the OTLP receiver's,
// each is off unless its key is present in the configuration.
type Protocols struct {
	// GRPC serves opentelemetry.proto.collector.trace.v1.TraceService/Export
	// (default endpoint localhost:4317).
	GRPC configoptional.Optional[configgrpc.ServerConfig] `mapstructure:"grpc"`
	// HTTP serves POST /v1/traces with protobuf or JSON bodies (default
	// endpoint localhost:4318).
	HTTP configoptional.Optional[confighttp.ServerConfig] `mapstructure:"http"`

	_ struct{}
}

// Config configures the servicemap receiver: the OTLP servers it listens on
// and the same engine options as the servicemap connector (the default
// preset is "contrib").
type Config struct {
	Protocols Protocols `mapstructure:"protocols"`

	options.Options `mapstructure:",squash"`

	metricsloop.Flush `mapstructure:",squash"`

	_ struct{}
}

var _ confmap.Validator = (*Config)(nil)

// Validate checks the configuration; every error names its key.
func (c *Config) Validate() error {
	var errs []error
	if !c.Protocols.GRPC.HasValue() && !c.Protocols.HTTP.HasValue() {
		errs = append(errs, errors.New("protocols: must specify at least one of grpc and http"))
	}
	if err := c.CheckFlushInterval(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Options.Check(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func createDefaultConfig() *Config {
	grpcCfg := configgrpc.NewDefaultServerConfig()
	grpcCfg.NetAddr.Endpoint = "localhost:4317"
	grpcCfg.ReadBufferSize = 512 * 1024

	httpCfg := confighttp.NewDefaultServerConfig()
	httpCfg.NetAddr.Endpoint = "localhost:4318"
	httpCfg.TLS = configoptional.None[configtls.ServerConfig]()
	httpCfg.WriteTimeout = 0
	httpCfg.ReadHeaderTimeout = 0
	// No idle timeout, as the OTLP receiver (IdleTimeout is deprecated for Keepalive).
	httpCfg.Keepalive = configoptional.Some(confighttp.KeepaliveServerConfig{})

	return &Config{
		Protocols: Protocols{
			GRPC: configoptional.Default(grpcCfg),
			HTTP: configoptional.Default(httpCfg),
		},
		Options: options.Defaults(options.CompatContrib),
	}
}
