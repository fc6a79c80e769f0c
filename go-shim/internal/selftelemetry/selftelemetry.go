// Package selftelemetry reports the shim's and the engine's own health
// through the instruments each component declares in its metadata.yaml
// (mdatagen generates their builder), and hands the components' batches to
// the engine, accounting for each in those instruments.
package selftelemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/metric"

	"github.com/servicemap/servicemap/go-shim/internal/engine"
	"github.com/servicemap/servicemap/go-shim/internal/logthrottle"
)

// StatsSource renders the engine's self-report (SM_FORMAT_STATS_JSON).
type StatsSource func(now time.Time) ([]byte, error)

// Instruments are one component's own instruments. Each component declares
// them in its metadata.yaml, and its generated metadata.TelemetryBuilder
// creates them; InstrumentsOf takes them from the builder.
type Instruments struct {
	// Meter created the instruments. The engine's statistics are observed
	// through one callback registered on it, so that one collection reads
	// the engine's self-report once.
	Meter metric.Meter
	// Spans counts the spans handed to the engine. It is nil for a
	// component that never decodes spans (the receiver).
	Spans           metric.Int64Counter
	Batches         metric.Int64Counter
	BatchesRejected metric.Int64Counter
	ConsumeDuration metric.Float64Histogram
	// Engine holds one instrument per statistic of the engine's
	// self-report, by its key there (nested objects flattened with "_").
	Engine map[string]metric.Int64Observable

	// shutdown, when set, is the builder's own Shutdown.
	shutdown func()
}

// The fields of a generated TelemetryBuilder are named after the metrics of
// metadata.yaml: servicemap_batches_rejected becomes
// ServicemapBatchesRejected, servicemap_engine_<statistic> becomes
// ServicemapEngine<Statistic> (each "_"-separated word capitalised).
const (
	builderPrefix       = "Servicemap"
	builderEnginePrefix = builderPrefix + "Engine"
)

// InstrumentsOf takes a component's instruments from its generated
// metadata.TelemetryBuilder (a pointer to it), by the names its fields get
// from metadata.yaml, and meter, which must be the builder's own
// (metadata.Meter of the same settings). Every instrument the builder has
// must be one this package uses, and every one it needs (all but Spans)
// must be there.
func InstrumentsOf(builder any, meter metric.Meter) (Instruments, error) {
	v := reflect.ValueOf(builder)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return Instruments{}, fmt.Errorf("servicemap telemetry: %T is not a pointer to a telemetry builder", builder)
	}
	inst := Instruments{Meter: meter, Engine: map[string]metric.Int64Observable{}}
	if s, ok := builder.(interface{ Shutdown() }); ok {
		inst.shutdown = s.Shutdown
	}
	v = v.Elem()
	var errs []error
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		if !f.IsExported() {
			continue
		}
		value := v.Field(i).Interface()
		ok := false
		switch name := f.Name; {
		case name == builderPrefix+"Spans":
			inst.Spans, ok = value.(metric.Int64Counter)
		case name == builderPrefix+"Batches":
			inst.Batches, ok = value.(metric.Int64Counter)
		case name == builderPrefix+"BatchesRejected":
			inst.BatchesRejected, ok = value.(metric.Int64Counter)
		case name == builderPrefix+"ConsumeDuration":
			inst.ConsumeDuration, ok = value.(metric.Float64Histogram)
		case strings.HasPrefix(name, builderEnginePrefix) && len(name) > len(builderEnginePrefix):
			var o metric.Int64Observable
			if o, ok = value.(metric.Int64Observable); ok {
				inst.Engine[statisticKey(strings.TrimPrefix(name, builderEnginePrefix))] = o
			}
		default:
			errs = append(errs, fmt.Errorf("instrument %s has no use in the servicemap components", name))
			continue
		}
		if !ok {
			errs = append(errs, fmt.Errorf("instrument %s is a %s, not what the servicemap components record into it", f.Name, f.Type))
		}
	}
	for _, required := range []struct {
		name    string
		missing bool
	}{
		{builderPrefix + "Batches", inst.Batches == nil},
		{builderPrefix + "BatchesRejected", inst.BatchesRejected == nil},
		{builderPrefix + "ConsumeDuration", inst.ConsumeDuration == nil},
	} {
		if required.missing {
			errs = append(errs, fmt.Errorf("no instrument %s", required.name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Instruments{}, fmt.Errorf("servicemap telemetry: %T: %w", builder, err)
	}
	return inst, nil
}

// statisticKey turns the end of a builder's field name back into the
// statistic's key: ExpiredByKindSpanKindServer is
// expired_by_kind_span_kind_server.
func statisticKey(camel string) string {
	var b strings.Builder
	for i, r := range camel {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Telemetry records one component instance's own telemetry.
type Telemetry struct {
	inst  Instruments
	reg   metric.Registration
	stats []string
}

// New records into inst, and observes the engine's statistics from stats
// through inst.Engine. The statistics are read once now: each one the
// engine reports must have its instrument, and each instrument its
// statistic, or New fails naming them (a statistic added to the engine
// goes into every component's metadata.yaml).
func New(inst Instruments, stats StatsSource) (*Telemetry, error) {
	if inst.Batches == nil || inst.BatchesRejected == nil || inst.ConsumeDuration == nil {
		return nil, errors.New("servicemap telemetry: the batches, batches_rejected and consume_duration instruments are required")
	}
	if len(inst.Engine) > 0 && inst.Meter == nil {
		return nil, errors.New("servicemap telemetry: engine instruments without the meter that made them")
	}
	first, err := readStats(stats, time.Now())
	if err != nil {
		return nil, fmt.Errorf("servicemap telemetry: reading the engine statistics: %w", err)
	}
	var unobserved, unreported []string
	for k := range first {
		if _, ok := inst.Engine[k]; !ok {
			unobserved = append(unobserved, k)
		}
	}
	for k := range inst.Engine {
		if _, ok := first[k]; !ok {
			unreported = append(unreported, k)
		}
	}
	if len(unobserved) > 0 || len(unreported) > 0 {
		sort.Strings(unobserved)
		sort.Strings(unreported)
		return nil, fmt.Errorf("servicemap telemetry: engine statistics without an instrument: %v; instruments without an engine statistic: %v",
			unobserved, unreported)
	}
	t := &Telemetry{inst: inst}
	t.stats = make([]string, 0, len(inst.Engine))
	observables := make([]metric.Observable, 0, len(inst.Engine))
	for k, o := range inst.Engine {
		t.stats = append(t.stats, k)
		observables = append(observables, o)
	}
	sort.Strings(t.stats)
	if len(observables) == 0 {
		return t, nil
	}
	t.reg, err = inst.Meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		values, err := readStats(stats, time.Now())
		if err != nil {
			return err
		}
		for k, v := range values {
			if instrument, ok := inst.Engine[k]; ok {
				o.ObserveInt64(instrument, int64(v))
			}
		}
		return nil
	}, observables...)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// StatKeys lists the engine statistics that are observed.
func (t *Telemetry) StatKeys() []string { return t.stats }

// Batch records one batch of n spans handed to the engine.
func (t *Telemetry) Batch(ctx context.Context, spans int) {
	t.inst.Batches.Add(ctx, 1)
	if t.inst.Spans != nil {
		t.inst.Spans.Add(ctx, int64(spans))
	}
}

// Rejected records one rejected batch.
func (t *Telemetry) Rejected(ctx context.Context) {
	t.inst.BatchesRejected.Add(ctx, 1)
}

// consumed records how long handing one batch to the engine took, from start.
func (t *Telemetry) consumed(ctx context.Context, start time.Time) {
	t.inst.ConsumeDuration.Record(ctx, time.Since(start).Seconds())
}

// Shutdown stops observing the engine. Safe to call more than once.
func (t *Telemetry) Shutdown() {
	if t.reg != nil {
		_ = t.reg.Unregister()
		t.reg = nil
	}
	if t.inst.shutdown != nil {
		t.inst.shutdown()
		t.inst.shutdown = nil
	}
}

func readStats(stats StatsSource, now time.Time) (map[string]float64, error) {
	raw, err := stats(now)
	if err != nil {
		return nil, err
	}
	return ParseStats(raw)
}

// ParseStats flattens the engine's JSON self-report into numeric values.
// Nested objects become "outer_inner"; booleans become 0 or 1; strings,
// arrays and nulls are skipped. Empty input gives no values.
func ParseStats(raw []byte) (map[string]float64, error) {
	out := map[string]float64{}
	if len(bytes.TrimSpace(raw)) == 0 {
		return out, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return nil, fmt.Errorf("servicemap engine statistics are not a JSON object: %w", err)
	}
	flatten("", obj, out)
	return out, nil
}

func flatten(prefix string, obj map[string]any, out map[string]float64) {
	for k, v := range obj {
		key := sanitize(k)
		if prefix != "" {
			key = prefix + "_" + key
		}
		switch x := v.(type) {
		case json.Number:
			if f, err := x.Float64(); err == nil {
				out[key] = f
			}
		case bool:
			if x {
				out[key] = 1
			} else {
				out[key] = 0
			}
		case map[string]any:
			flatten(key, x, out)
		}
	}
}

// sanitize makes a statistic name usable as part of an instrument name:
// lower case letters, digits and underscores.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_':
			return r
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		}
		return '_'
	}, s)
}

// engineStats is an engine's own self-report as a statistics source.
func engineStats(eng *engine.Engine) StatsSource {
	return func(now time.Time) ([]byte, error) {
		return eng.Render(engine.FormatStatsJSON, now)
	}
}

// ForEngine is New with an engine's own self-report as the statistics source.
func ForEngine(inst Instruments, eng *engine.Engine) (*Telemetry, error) {
	return New(inst, engineStats(eng))
}

// EngineStats reads an engine's self-report, flattened by ParseStats.
func EngineStats(eng *engine.Engine) func(now time.Time) (map[string]float64, error) {
	src := engineStats(eng)
	return func(now time.Time) (map[string]float64, error) { return readStats(src, now) }
}

// ForComponent records a component's own telemetry and observes eng: the
// component passes its generated metadata.NewTelemetryBuilder and
// metadata.Meter, and the instruments its metadata.yaml declares are
// created with them and taken by InstrumentsOf.
func ForComponent[B any, O any](telset component.TelemetrySettings,
	newBuilder func(component.TelemetrySettings, ...O) (B, error),
	meter func(component.TelemetrySettings) metric.Meter, eng *engine.Engine,
) (*Telemetry, error) {
	builder, err := newBuilder(telset)
	if err != nil {
		return nil, err
	}
	inst, err := InstrumentsOf(builder, meter(telset))
	if err == nil {
		var t *Telemetry
		if t, err = ForEngine(inst, eng); err == nil {
			return t, nil
		}
	}
	if s, ok := any(builder).(interface{ Shutdown() }); ok {
		s.Shutdown()
	}
	return nil, err
}

// buffers holds encoding buffers between batches, so that encoding a batch
// allocates nothing once they have grown. Each Ingest takes its own, so
// concurrent batches never share one.
var buffers = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBuffer is the largest buffer kept for reuse; a rare huge batch's
// buffer is left to the garbage collector.
const maxPooledBuffer = 16 << 20

// Ingest hands one batch to the engine as OTLP bytes and accounts for it: its
// spans are counted, the time encoding and handing it over took is
// recorded, and a batch that cannot be encoded or that the engine rejects is
// counted and logged. It reports whether the engine took the
// batch. Empty batches are skipped.
//
// encode appends the batch's encoding to the buffer it is given (one from a
// pool, reused across calls) and returns it; the engine reads it only during
// the call, after which the buffer returns to the pool.
func (t *Telemetry) Ingest(ctx context.Context, eng *engine.Engine, encode func([]byte, ptrace.Traces) ([]byte, error),
	now time.Time, rejects *logthrottle.RejectLog, td ptrace.Traces) bool {
	spans := td.SpanCount()
	if spans == 0 {
		return false
	}
	start := time.Now()
	buf := buffers.Get().(*[]byte)
	b, err := encode((*buf)[:0], td)
	if err == nil {
		err = eng.Consume(b, now)
	}
	if b != nil && cap(b) <= maxPooledBuffer {
		*buf = b[:0]
	}
	buffers.Put(buf)
	t.consumed(ctx, start)
	t.Batch(ctx, spans)
	if err != nil {
		t.Rejected(ctx)
		rejects.Reject(err, spans)
		return false
	}
	return true
}

// IngestBytes hands one request's OTLP traces bytes to the engine as received
// and accounts for it like Ingest, except that its spans are not counted (the
// bytes are never decoded here; the engine's own statistics count them) and
// the time recorded is the engine's alone. It
// returns how many spans the engine dropped because its store was full, and
// its error for a batch it did not take. Empty requests are skipped.
func (t *Telemetry) IngestBytes(ctx context.Context, eng *engine.Engine, now time.Time, rejects *logthrottle.RejectLog, otlp []byte) (dropped uint64, err error) {
	if len(otlp) == 0 {
		return 0, nil
	}
	start := time.Now()
	dropped, err = eng.ConsumeCounted(otlp, now)
	t.consumed(ctx, start)
	t.inst.Batches.Add(ctx, 1)
	if err != nil {
		t.Rejected(ctx)
		rejects.Reject(err, 0)
	}
	return dropped, err
}
