//go:generate mdatagen metadata.yaml

// Package servicemapprocessor is a traces processor that feeds every batch to
// the servicemap engine, passes the traces on unchanged, and serves the
// resulting service-graph metrics on its own HTTP endpoint.
package servicemapprocessor

import (
	"context"
	"fmt"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processorhelper"

	"github.com/servicemap/servicemap/go-shim/processor/servicemapprocessor/internal/metadata"
)

// NewFactory returns the factory of the servicemap processor.
func NewFactory() processor.Factory {
	return processor.NewFactory(
		metadata.Type,
		func() component.Config { return createDefaultConfig() },
		processor.WithTraces(createTraces, metadata.TracesStability),
	)
}

func createTraces(ctx context.Context, set processor.Settings, cfg component.Config, next consumer.Traces) (processor.Traces, error) {
	tp, _, err := newTracesProcessor(ctx, set, cfg, next)
	return tp, err
}

// newTracesProcessor builds the processor and returns it together with its
// inner state (for tests).
func newTracesProcessor(ctx context.Context, set processor.Settings, cfg component.Config, next consumer.Traces) (processor.Traces, *serviceMapProcessor, error) {
	c, ok := cfg.(*Config)
	if !ok {
		return nil, nil, fmt.Errorf("servicemap processor: unexpected config type %T", cfg)
	}
	p, err := newProcessor(set.TelemetrySettings, c)
	if err != nil {
		return nil, nil, err
	}
	tp, err := processorhelper.NewTraces(ctx, set, cfg, next, p.processTraces,
		processorhelper.WithStart(p.start),
		processorhelper.WithShutdown(p.shutdown),
		processorhelper.WithCapabilities(consumer.Capabilities{MutatesData: false}),
	)
	if err != nil {
		_ = p.shutdown(ctx)
		return nil, nil, err
	}
	return tp, p, nil
}
