package conformance

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// ourOnlyMetrics are metrics the servicemap engine writes and contrib does
// not: contrib's README lists unpaired and dropped span counters, but its
// code never emits them. They are left out of every comparison.
var ourOnlyMetrics = map[string]bool{
	"traces_service_graph_unpaired_spans_total": true,
	"traces_service_graph_dropped_spans_total":  true,
}

// point is one data point reduced to what both sides must agree on.
// Timestamps are not part of it: contrib stamps wall-clock time, the engine
// the time its caller passes.
type point struct {
	intValue    *int64
	doubleValue *float64
	count       uint64
	sum         float64
	bounds      []float64
	buckets     []uint64
	exp         *expPoint
}

// expPoint is what an exponential histogram's point adds: its scale, zero
// bucket, first bucket index, minimum and maximum (counts are in buckets).
type expPoint struct {
	scale, offset int32
	zeroCount     uint64
	zeroThreshold float64
	min, max      *float64
}

func (e *expPoint) String() string {
	if e == nil {
		return ""
	}
	opt := func(v *float64) string {
		if v == nil {
			return "-"
		}
		return fmt.Sprint(*v)
	}
	return fmt.Sprintf(" scale %d offset %d zero %d (≤%g) min %s max %s", e.scale, e.offset, e.zeroCount, e.zeroThreshold, opt(e.min), opt(e.max))
}

func sameExp(a, b *expPoint) bool {
	if a == nil || b == nil {
		return a == b
	}
	sameOpt := func(x, y *float64) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	return a.scale == b.scale && a.offset == b.offset && a.zeroCount == b.zeroCount &&
		a.zeroThreshold == b.zeroThreshold && sameOpt(a.min, b.min) && sameOpt(a.max, b.max)
}

// metricShape is what a metric says about itself, besides its points.
type metricShape struct {
	kind        pmetric.MetricType
	unit        string
	temporality pmetric.AggregationTemporality
	monotonic   bool
}

type canonMetric struct {
	shape  metricShape
	points map[string]point // by attribute set
}

// canonical is a pmetric.Metrics reduced to name → series → point, so that
// two outputs can be compared without regard to order.
type canonical struct {
	resources []string // attribute sets of the resources
	scopes    []string // scope names
	metrics   map[string]*canonMetric
	problems  []string // the same series twice in one metric, and similar
}

// attrKey renders an attribute set as a sorted, typed string, so that a bool
// `failed` and a string "false" are different series.
func attrKey(m pcommon.Map) string {
	parts := make([]string, 0, m.Len())
	for k, v := range m.All() {
		parts = append(parts, fmt.Sprintf("%s=%s:%q", k, v.Type(), v.AsString()))
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, ", ") + "}"
}

func canonicalize(md pmetric.Metrics) canonical {
	c := canonical{metrics: map[string]*canonMetric{}}
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		rm := rms.At(i)
		c.resources = append(c.resources, attrKey(rm.Resource().Attributes()))
		sms := rm.ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			sm := sms.At(j)
			c.scopes = append(c.scopes, sm.Scope().Name())
			ms := sm.Metrics()
			for k := 0; k < ms.Len(); k++ {
				m := ms.At(k)
				if ourOnlyMetrics[m.Name()] {
					continue
				}
				cm := c.metrics[m.Name()]
				if cm == nil {
					cm = &canonMetric{points: map[string]point{}}
					c.metrics[m.Name()] = cm
				} else {
					c.problems = append(c.problems, fmt.Sprintf("metric %s appears more than once", m.Name()))
				}
				cm.shape = metricShape{kind: m.Type(), unit: m.Unit()}
				add := func(attrs pcommon.Map, p point) {
					key := attrKey(attrs)
					if _, dup := cm.points[key]; dup {
						c.problems = append(c.problems, fmt.Sprintf("metric %s has series %s twice", m.Name(), key))
					}
					cm.points[key] = p
				}
				switch m.Type() {
				case pmetric.MetricTypeSum:
					cm.shape.temporality = m.Sum().AggregationTemporality()
					cm.shape.monotonic = m.Sum().IsMonotonic()
					numberPoints(m.Sum().DataPoints(), add)
				case pmetric.MetricTypeGauge:
					numberPoints(m.Gauge().DataPoints(), add)
				case pmetric.MetricTypeHistogram:
					cm.shape.temporality = m.Histogram().AggregationTemporality()
					dps := m.Histogram().DataPoints()
					for n := 0; n < dps.Len(); n++ {
						dp := dps.At(n)
						add(dp.Attributes(), point{
							count:   dp.Count(),
							sum:     dp.Sum(),
							bounds:  dp.ExplicitBounds().AsRaw(),
							buckets: dp.BucketCounts().AsRaw(),
						})
					}
				case pmetric.MetricTypeExponentialHistogram:
					cm.shape.temporality = m.ExponentialHistogram().AggregationTemporality()
					dps := m.ExponentialHistogram().DataPoints()
					if dps.Len() == 0 {
						// contrib writes both exponential latency metrics on
						// every flush, with no points before a request: a
						// metric with nothing in it says nothing.
						delete(c.metrics, m.Name())
						continue
					}
					for n := 0; n < dps.Len(); n++ {
						dp := dps.At(n)
						e := &expPoint{
							scale: dp.Scale(), offset: dp.Positive().Offset(),
							zeroCount: dp.ZeroCount(), zeroThreshold: dp.ZeroThreshold(),
						}
						if dp.HasMin() {
							v := dp.Min()
							e.min = &v
						}
						if dp.HasMax() {
							v := dp.Max()
							e.max = &v
						}
						if dp.Negative().BucketCounts().Len() != 0 {
							c.problems = append(c.problems, fmt.Sprintf("metric %s has negative buckets", m.Name()))
						}
						add(dp.Attributes(), point{count: dp.Count(), sum: dp.Sum(), buckets: dp.Positive().BucketCounts().AsRaw(), exp: e})
					}
				default:
					c.problems = append(c.problems, fmt.Sprintf("metric %s has unexpected type %s", m.Name(), m.Type()))
				}
			}
		}
	}
	return c
}

func numberPoints(dps pmetric.NumberDataPointSlice, add func(pcommon.Map, point)) {
	for n := 0; n < dps.Len(); n++ {
		dp := dps.At(n)
		var p point
		switch dp.ValueType() {
		case pmetric.NumberDataPointValueTypeInt:
			v := dp.IntValue()
			p.intValue = &v
		case pmetric.NumberDataPointValueTypeDouble:
			v := dp.DoubleValue()
			p.doubleValue = &v
		}
		add(dp.Attributes(), p)
	}
}

// sameFloat is equality to float rounding: sums are added in arrival order
// on both sides, but nothing promises the same order of additions.
func sameFloat(a, b float64) bool {
	if a == b {
		return true
	}
	d := math.Abs(a - b)
	return d <= 1e-9*math.Max(math.Abs(a), math.Abs(b))
}

func (p point) String() string {
	switch {
	case p.intValue != nil:
		return fmt.Sprintf("int %d", *p.intValue)
	case p.doubleValue != nil:
		return fmt.Sprintf("double %g", *p.doubleValue)
	}
	return fmt.Sprintf("count %d sum %.12g buckets %v bounds %v%v", p.count, p.sum, p.buckets, p.bounds, p.exp)
}

func samePoint(a, b point) bool {
	if (a.intValue == nil) != (b.intValue == nil) || (a.doubleValue == nil) != (b.doubleValue == nil) {
		return false
	}
	if a.intValue != nil && *a.intValue != *b.intValue {
		return false
	}
	if a.doubleValue != nil && !sameFloat(*a.doubleValue, *b.doubleValue) {
		return false
	}
	if a.count != b.count || !sameFloat(a.sum, b.sum) || len(a.bounds) != len(b.bounds) || len(a.buckets) != len(b.buckets) || !sameExp(a.exp, b.exp) {
		return false
	}
	for i := range a.bounds {
		if !sameFloat(a.bounds[i], b.bounds[i]) {
			return false
		}
	}
	for i := range a.buckets {
		if a.buckets[i] != b.buckets[i] {
			return false
		}
	}
	return true
}

// diffMetrics lists every difference between contrib's output and ours, one
// line each; no lines means the outputs agree.
func diffMetrics(contrib, ours pmetric.Metrics) []string {
	a, b := canonicalize(contrib), canonicalize(ours)
	var out []string
	for _, p := range a.problems {
		out = append(out, "contrib: "+p)
	}
	for _, p := range b.problems {
		out = append(out, "ours: "+p)
	}
	// An empty output is "no metrics" on either side, whatever its envelope.
	if len(a.metrics) > 0 && len(b.metrics) > 0 {
		if fmt.Sprint(a.resources) != fmt.Sprint(b.resources) {
			out = append(out, fmt.Sprintf("resources: contrib %v, ours %v", a.resources, b.resources))
		}
		if fmt.Sprint(a.scopes) != fmt.Sprint(b.scopes) {
			out = append(out, fmt.Sprintf("scopes: contrib %v, ours %v", a.scopes, b.scopes))
		}
	}
	names := map[string]bool{}
	for n := range a.metrics {
		names[n] = true
	}
	for n := range b.metrics {
		names[n] = true
	}
	for _, name := range sortedKeys(names) {
		ma, mb := a.metrics[name], b.metrics[name]
		switch {
		case ma == nil:
			out = append(out, fmt.Sprintf("%s: only ours has it (%d series)", name, len(mb.points)))
			continue
		case mb == nil:
			out = append(out, fmt.Sprintf("%s: only contrib has it (%d series)", name, len(ma.points)))
			continue
		}
		if ma.shape != mb.shape {
			out = append(out, fmt.Sprintf("%s: shape contrib %+v, ours %+v", name, ma.shape, mb.shape))
		}
		series := map[string]bool{}
		for k := range ma.points {
			series[k] = true
		}
		for k := range mb.points {
			series[k] = true
		}
		for _, k := range sortedKeys(series) {
			pa, okA := ma.points[k]
			pb, okB := mb.points[k]
			switch {
			case !okA:
				out = append(out, fmt.Sprintf("%s %s: only ours (%v)", name, k, pb))
			case !okB:
				out = append(out, fmt.Sprintf("%s %s: only contrib (%v)", name, k, pa))
			case !samePoint(pa, pb):
				out = append(out, fmt.Sprintf("%s %s: contrib %v, ours %v", name, k, pa, pb))
			}
		}
	}
	return out
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
