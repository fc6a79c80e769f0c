//go:generate mdatagen metadata.yaml

// Package servicemapconnector is a traces-to-metrics connector: it feeds
// every trace batch to the servicemap engine and periodically sends the
// service-graph metrics to a metrics pipeline. It accepts the configuration of
// the contrib servicegraph connector.
package servicemapconnector

import (
	"context"
	"fmt"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/consumer"

	"github.com/servicemap/servicemap/go-shim/connector/servicemapconnector/internal/metadata"
)

// NewFactory returns the factory of the servicemap connector.
func NewFactory() connector.Factory {
	return connector.NewFactory(
		metadata.Type,
		func() component.Config { return createDefaultConfig() },
		connector.WithTracesToMetrics(createTracesToMetrics, metadata.TracesToMetricsStability),
	)
}

func createTracesToMetrics(_ context.Context, set connector.Settings, cfg component.Config, next consumer.Metrics) (connector.Traces, error) {
	c, ok := cfg.(*Config)
	if !ok {
		return nil, fmt.Errorf("servicemap connector: unexpected config type %T", cfg)
	}
	return newConnector(set.TelemetrySettings, c, next)
}
