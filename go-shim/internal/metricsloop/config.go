package metricsloop

import (
	"fmt"
	"time"
)

// DefaultFlushInterval is how often metrics are sent when
// metrics_flush_interval is not set (contrib's connector default).
const DefaultFlushInterval = 60 * time.Second

// Flush is the `metrics_flush_interval` key of the components that push
// metrics; embed it with `mapstructure:",squash"`.
type Flush struct {
	// MetricsFlushInterval is how often the service-graph metrics are sent to
	// the metrics pipeline. Not set means 60s; 0 means after every batch.
	MetricsFlushInterval *time.Duration `mapstructure:"metrics_flush_interval"`
}

// CheckFlushInterval names the key when its value is negative.
func (f Flush) CheckFlushInterval() error {
	if f.MetricsFlushInterval != nil && *f.MetricsFlushInterval < 0 {
		return fmt.Errorf("metrics_flush_interval: must not be negative, got %s", *f.MetricsFlushInterval)
	}
	return nil
}

// FlushInterval is the period of metric pushes; 0 means after every batch.
func (f Flush) FlushInterval() time.Duration {
	if f.MetricsFlushInterval == nil {
		return DefaultFlushInterval
	}
	return max(*f.MetricsFlushInterval, 0)
}
