package testutil

import (
	"fmt"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// HistogramPoint returns the one data point of a float histogram among a
// component's own metrics.
func HistogramPoint(tt *componenttest.Telemetry, name string) (metricdata.HistogramDataPoint[float64], error) {
	m, err := tt.GetMetric(name)
	if err != nil {
		return metricdata.HistogramDataPoint[float64]{}, err
	}
	h, ok := m.Data.(metricdata.Histogram[float64])
	if !ok || len(h.DataPoints) != 1 {
		return metricdata.HistogramDataPoint[float64]{}, fmt.Errorf("%s is %+v, not a histogram of one point", name, m.Data)
	}
	return h.DataPoints[0], nil
}
