package testutil

import (
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// MetricValue finds a data point of the named metric whose attributes
// include every pair in labels (compared as strings) and returns its value:
// the value of a sum or gauge point, the count of a histogram point.
func MetricValue(md pmetric.Metrics, name string, labels map[string]string) (float64, bool) {
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		sms := rms.At(i).ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			ms := sms.At(j).Metrics()
			for k := 0; k < ms.Len(); k++ {
				m := ms.At(k)
				if m.Name() != name {
					continue
				}
				if v, ok := pointValue(m, labels); ok {
					return v, true
				}
			}
		}
	}
	return 0, false
}

func pointValue(m pmetric.Metric, labels map[string]string) (float64, bool) {
	number := func(ps pmetric.NumberDataPointSlice) (float64, bool) {
		for i := 0; i < ps.Len(); i++ {
			p := ps.At(i)
			if hasLabels(p.Attributes(), labels) {
				if p.ValueType() == pmetric.NumberDataPointValueTypeInt {
					return float64(p.IntValue()), true
				}
				return p.DoubleValue(), true
			}
		}
		return 0, false
	}
	switch m.Type() {
	case pmetric.MetricTypeSum:
		return number(m.Sum().DataPoints())
	case pmetric.MetricTypeGauge:
		return number(m.Gauge().DataPoints())
	case pmetric.MetricTypeHistogram:
		ps := m.Histogram().DataPoints()
		for i := 0; i < ps.Len(); i++ {
			if hasLabels(ps.At(i).Attributes(), labels) {
				return float64(ps.At(i).Count()), true
			}
		}
	}
	return 0, false
}

func hasLabels(attrs pcommon.Map, labels map[string]string) bool {
	for k, v := range labels {
		got, ok := attrs.Get(k)
		if !ok || got.AsString() != v {
			return false
		}
	}
	return true
}
