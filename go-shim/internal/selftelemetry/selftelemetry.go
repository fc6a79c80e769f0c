// Package selftelemetry reports the shim's and the engine's own health through
// the component's MeterProvider, and logs rejected batches and overflowed
// caps without flooding the log.
package selftelemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/servicemap/servicemap/go-shim/internal/engine"
)

// Prefix starts the name of every instrument this package creates.
const Prefix = "otelcol_servicemap_"

// StatsSource renders the engine's self-report (SM_FORMAT_STATS_JSON).
type StatsSource func(now time.Time) ([]byte, error)

// Telemetry holds the instruments of one component instance.
type Telemetry struct {
	spans    metric.Int64Counter
	batches  metric.Int64Counter
	rejected metric.Int64Counter
	reg      metric.Registration
	stats    []string
}

// New creates the instruments. Engine statistics are read from stats once now
// to learn which keys the engine reports; each numeric key (nested objects are
// flattened with "_") becomes an observable instrument read at collection
// time. Keys that count events (see isCumulative) are counters, the others
// gauges.
func New(mp metric.MeterProvider, scope string, stats StatsSource) (*Telemetry, error) {
	m := mp.Meter(scope)
	t := &Telemetry{}
	var err error
	if t.spans, err = m.Int64Counter(Prefix+"spans",
		metric.WithDescription("Spans handed to the servicemap engine."),
		metric.WithUnit("{span}")); err != nil {
		return nil, err
	}
	if t.batches, err = m.Int64Counter(Prefix+"batches",
		metric.WithDescription("Trace batches handed to the servicemap engine."),
		metric.WithUnit("{batch}")); err != nil {
		return nil, err
	}
	if t.rejected, err = m.Int64Counter(Prefix+"batches_rejected",
		metric.WithDescription("Trace batches the servicemap engine rejected; their traces still flow on."),
		metric.WithUnit("{batch}")); err != nil {
		return nil, err
	}
	if stats == nil {
		return t, nil
	}
	first, err := readStats(stats, time.Now())
	if err != nil || len(first) == 0 {
		// Engine statistics are optional: nothing to observe.
		return t, nil
	}
	keys := make([]string, 0, len(first))
	for k := range first {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	t.stats = keys

	gauges := map[string]metric.Float64ObservableGauge{}
	counters := map[string]metric.Float64ObservableCounter{}
	observables := make([]metric.Observable, 0, len(keys))
	for _, k := range keys {
		name := Prefix + "engine_" + k
		desc := fmt.Sprintf("servicemap engine statistic %q.", k)
		if isCumulative(k) {
			c, err := m.Float64ObservableCounter(name, metric.WithDescription(desc))
			if err != nil {
				return nil, err
			}
			counters[k] = c
			observables = append(observables, c)
		} else {
			g, err := m.Float64ObservableGauge(name, metric.WithDescription(desc))
			if err != nil {
				return nil, err
			}
			gauges[k] = g
			observables = append(observables, g)
		}
	}
	t.reg, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		values, err := readStats(stats, time.Now())
		if err != nil {
			return err
		}
		for k, v := range values {
			if g, ok := gauges[k]; ok {
				o.ObserveFloat64(g, v)
			} else if c, ok := counters[k]; ok {
				o.ObserveFloat64(c, v)
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
	t.batches.Add(ctx, 1)
	t.spans.Add(ctx, int64(spans))
}

// Rejected records one rejected batch.
func (t *Telemetry) Rejected(ctx context.Context) {
	t.rejected.Add(ctx, 1)
}

// Shutdown stops observing the engine. Safe to call more than once.
func (t *Telemetry) Shutdown() {
	if t.reg != nil {
		_ = t.reg.Unregister()
		t.reg = nil
	}
}

// Statistics are counters when they count events since the engine started,
// recognised by their name; everything else (waiting edges, active series,
// memory) is a gauge.
// The engine's "overflow" object (flattened to overflow_*) counts what each
// cap refused or folded since the start, so it is cumulative as a whole.
var (
	cumulativePrefixes = []string{"batches_", "spans_", "edges_", "expired_", "overflow_"}
	cumulativeWords    = []string{"dropped", "expired", "rejected", "refused", "received", "accepted", "completed", "ignored", "evicted", "truncated"}
)

// isCumulative reports whether a statistic counts events (a counter) rather
// than describing current state (a gauge).
func isCumulative(key string) bool {
	if strings.HasSuffix(key, "_total") {
		return true
	}
	for _, p := range cumulativePrefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	for _, w := range cumulativeWords {
		if strings.Contains(key, w) {
			return true
		}
	}
	return false
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

// throttle lets at most one log message through per interval. Its owner
// holds the lock that guards it.
type throttle struct {
	interval time.Duration
	last     time.Time
}

// open reports whether a message may be written at now.
func (t *throttle) open(now time.Time) bool {
	return t.last.IsZero() || now.Sub(t.last) >= t.interval
}

// written starts a new interval at now.
func (t *throttle) written(now time.Time) { t.last = now }

// RejectLog logs rejected batches at most once per interval, with the number
// of rejections since the last message.
type RejectLog struct {
	logger  *zap.Logger
	outcome string // what became of the batch, for the message
	now     func() time.Time

	mu         sync.Mutex
	throttle   throttle
	suppressed int64
}

// NewRejectLog logs through logger at most once per interval; outcome says
// what the component did with a rejected batch ("the traces were passed on
// unchanged", "the request was refused").
func NewRejectLog(logger *zap.Logger, interval time.Duration, outcome string) *RejectLog {
	return &RejectLog{logger: logger, throttle: throttle{interval: interval}, outcome: outcome, now: time.Now}
}

// SetClock replaces the clock (for tests).
func (r *RejectLog) SetClock(now func() time.Time) { r.now = now }

// Reject notes one rejected batch and logs if the interval has passed.
// It reports whether a message was written.
func (r *RejectLog) Reject(err error, spans int) bool {
	r.mu.Lock()
	now := r.now()
	r.suppressed++
	if !r.throttle.open(now) {
		r.mu.Unlock()
		return false
	}
	count := r.suppressed
	r.suppressed = 0
	r.throttle.written(now)
	r.mu.Unlock()

	fields := []zap.Field{
		zap.Error(err),
		zap.Int("spans_in_batch", spans),
		zap.Int64("rejected_since_last_message", count),
		zap.Duration("log_interval", r.throttle.interval),
	}
	if engine.IsInvalidInput(err) {
		r.logger.Warn("servicemap engine rejected a trace batch; "+r.outcome, fields...)
	} else {
		r.logger.Error("servicemap engine failed to take a trace batch; "+r.outcome, fields...)
	}
	return true
}

// OverflowLog warns when the engine refused, folded or truncated input
// because one of its caps was full: when series_refused, values_truncated
// or an overflow_* statistic has grown. It writes at most one message per
// interval, naming each statistic that grew since the last message and by
// how much, so that an operator learns which cap to raise, or which input
// to look at, without a line per span.
type OverflowLog struct {
	logger *zap.Logger
	stats  StatsSource

	mu       sync.Mutex
	throttle throttle
	// reported holds each statistic's value at the last message (zero
	// before the first: the engine counts from its start).
	reported map[string]float64
}

// NewOverflowLog watches the statistics from stats and logs through logger
// at most once per interval.
func NewOverflowLog(logger *zap.Logger, interval time.Duration, stats StatsSource) *OverflowLog {
	return &OverflowLog{logger: logger, stats: stats, throttle: throttle{interval: interval}, reported: map[string]float64{}}
}

// OverflowLogForEngine is NewOverflowLog over an engine's self-report.
func OverflowLogForEngine(logger *zap.Logger, interval time.Duration, eng *engine.Engine) *OverflowLog {
	return NewOverflowLog(logger, interval, func(now time.Time) ([]byte, error) {
		return eng.Render(engine.FormatStatsJSON, now)
	})
}

// isOverflow reports whether a statistic counts input lost to a cap.
func isOverflow(key string) bool {
	return key == "series_refused" || key == "values_truncated" || strings.HasPrefix(key, "overflow_")
}

// Check reads the statistics, unless a message was written less than an
// interval ago (growth until then is reported in the next message), and
// logs what grew since the last message. It reports whether it logged.
func (o *OverflowLog) Check(now time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.throttle.open(now) {
		return false
	}
	values, err := readStats(o.stats, now)
	if err != nil {
		// The engine is closing, or its report is unreadable; the
		// instruments' callback reports the latter.
		return false
	}
	var grown []string
	for k, v := range values {
		if isOverflow(k) && v > o.reported[k] {
			grown = append(grown, k)
		}
	}
	if len(grown) == 0 {
		return false
	}
	sort.Strings(grown)
	fields := make([]zap.Field, 0, len(grown)+2)
	fields = append(fields, zap.Strings("caps", grown))
	for _, k := range grown {
		fields = append(fields, zap.Int64(k, int64(values[k]-o.reported[k])))
		o.reported[k] = values[k]
	}
	fields = append(fields, zap.Duration("log_interval", o.throttle.interval))
	o.throttle.written(now)
	o.logger.Warn("servicemap engine caps overflowed: input beyond them was refused, folded or truncated; "+
		"each field counts what one cap turned away since the last message", fields...)
	return true
}

// ForEngine is New with an engine's own self-report as the statistics source.
func ForEngine(mp metric.MeterProvider, scope string, eng *engine.Engine) (*Telemetry, error) {
	return New(mp, scope, func(now time.Time) ([]byte, error) {
		return eng.Render(engine.FormatStatsJSON, now)
	})
}

// buffers holds encoding buffers between batches, so that encoding a batch
// allocates nothing once they have grown. Each Feed takes its own, so
// concurrent batches never share one.
var buffers = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBuffer is the largest buffer kept for reuse; a rare huge batch's
// buffer is left to the garbage collector.
const maxPooledBuffer = 16 << 20

// Feed hands one batch to the engine as OTLP bytes and accounts for it: its
// spans are counted, and a batch that cannot be encoded or that the engine
// rejects is counted and logged. It reports whether the engine took the
// batch. Empty batches are skipped.
//
// encode appends the batch's encoding to the buffer it is given (one from a
// pool, reused across calls) and returns it; the engine reads it only during
// the call, after which the buffer returns to the pool.
func (t *Telemetry) Feed(ctx context.Context, eng *engine.Engine, encode func([]byte, ptrace.Traces) ([]byte, error),
	now time.Time, rejects *RejectLog, td ptrace.Traces) bool {
	spans := td.SpanCount()
	if spans == 0 {
		return false
	}
	buf := buffers.Get().(*[]byte)
	b, err := encode((*buf)[:0], td)
	if err == nil {
		err = eng.Consume(b, now)
	}
	if b != nil && cap(b) <= maxPooledBuffer {
		*buf = b[:0]
	}
	buffers.Put(buf)
	t.Batch(ctx, spans)
	if err != nil {
		t.Rejected(ctx)
		rejects.Reject(err, spans)
		return false
	}
	return true
}

// FeedBytes hands one request's OTLP traces bytes to the engine as received
// and accounts for it like Feed, except that its spans are not counted (the
// bytes are never decoded here; the engine's own statistics count them). It
// returns how many spans the engine dropped because its store was full, and
// its error for a batch it did not take. Empty requests are skipped.
func (t *Telemetry) FeedBytes(ctx context.Context, eng *engine.Engine, now time.Time, rejects *RejectLog, otlp []byte) (dropped uint64, err error) {
	if len(otlp) == 0 {
		return 0, nil
	}
	dropped, err = eng.ConsumeCounted(otlp, now)
	t.batches.Add(ctx, 1)
	if err != nil {
		t.Rejected(ctx)
		rejects.Reject(err, 0)
	}
	return dropped, err
}
