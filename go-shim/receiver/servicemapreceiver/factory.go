// Package servicemapreceiver is a metrics receiver for a collector tier that
// only computes the service graph: it accepts OTLP traces over gRPC and
// HTTP, hands each request's protobuf bytes to the servicemap engine as they
// arrived (no pdata traces are built) and periodically sends the
// service-graph metrics to a metrics pipeline. It takes the engine options of
// the servicemap connector.
package servicemapreceiver

import (
	"context"
	"fmt"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/receiver"

	"github.com/servicemap/servicemap/go-shim/receiver/servicemapreceiver/internal/metadata"
)

// NewFactory returns the factory of the servicemap receiver.
func NewFactory() receiver.Factory {
	return receiver.NewFactory(
		metadata.Type,
		func() component.Config { return createDefaultConfig() },
		receiver.WithMetrics(createMetrics, metadata.MetricsStability),
	)
}

func createMetrics(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Metrics) (receiver.Metrics, error) {
	c, ok := cfg.(*Config)
	if !ok {
		return nil, fmt.Errorf("servicemap receiver: unexpected config type %T", cfg)
	}
	return newReceiver(set.TelemetrySettings, c, next)
}
