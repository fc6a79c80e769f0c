// Package metadata holds the processor's component type and stability.
package metadata

import "go.opentelemetry.io/collector/component"

var (
	// Type is the component type used in collector configuration.
	Type = component.MustNewType("servicemap")
	// ScopeName is the instrumentation scope of the processor's own telemetry.
	ScopeName = "github.com/servicemap/servicemap/go-shim/processor/servicemapprocessor"
)

// TracesStability is the stability of the traces processor.
const TracesStability = component.StabilityLevelAlpha
