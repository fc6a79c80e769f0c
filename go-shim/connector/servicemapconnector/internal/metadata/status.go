// Package metadata holds the connector's component type and stability.
package metadata

import "go.opentelemetry.io/collector/component"

var (
	// Type is the component type used in collector configuration.
	Type = component.MustNewType("servicemap")
	// ScopeName is the instrumentation scope of the connector's own telemetry.
	ScopeName = "github.com/servicemap/servicemap/go-shim/connector/servicemapconnector"
)

// TracesToMetricsStability is the stability of the traces-to-metrics connector.
const TracesToMetricsStability = component.StabilityLevelAlpha
