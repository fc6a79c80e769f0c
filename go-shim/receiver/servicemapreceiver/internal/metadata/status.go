// Package metadata holds the receiver's component type and stability.
package metadata

import "go.opentelemetry.io/collector/component"

var (
	// Type is the component type used in collector configuration.
	Type = component.MustNewType("servicemap")
	// ScopeName is the instrumentation scope of the receiver's own telemetry.
	ScopeName = "github.com/servicemap/servicemap/go-shim/receiver/servicemapreceiver"
)

// MetricsStability is the stability of the metrics receiver.
const MetricsStability = component.StabilityLevelAlpha
