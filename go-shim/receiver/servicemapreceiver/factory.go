//go:generate mdatagen metadata.yaml

// Package servicemapreceiver is a metrics receiver for a collector tier that
// only computes the service graph: it accepts OTLP traces over gRPC and
// HTTP, hands each protobuf request's bytes to the servicemap engine as they
// arrived (no pdata traces are built) and periodically sends the
// service-graph metrics to a metrics pipeline. It takes the engine options of
// the servicemap connector.
//
// gRPC serves opentelemetry.proto.collector.trace.v1.TraceService/Export
// (gzip, zstd and snappy compression, as configgrpc registers them); HTTP
// serves POST /v1/traces with application/x-protobuf or application/json
// bodies (compressed bodies as confighttp decompresses them: gzip, zstd and
// the rest of its compression_algorithms). A JSON body is decoded with pdata
// and its protobuf encoding handed to the engine, so it gives the same
// metrics as the same traces in protobuf. HTTP answers are encoded as the
// request was: an empty ExportTraceServiceResponse, or a google.rpc.Status
// with the error's HTTP status (400 for a body that cannot be read, 405,
// 413 past max_request_body_size, 415). A request that cannot be read is
// answered InvalidArgument (gRPC) or 400 (HTTP) and counted in
// otelcol_servicemap_batches_rejected. Protobuf requests are not decoded in
// Go, so otelcol_servicemap_spans is not counted (for JSON requests
// neither); the engine's own statistics count spans. The receiver only
// takes traces: OTLP metrics and logs are not served.
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
