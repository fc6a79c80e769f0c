package logthrottle

import (
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/servicemap/servicemap/go-shim/internal/engine"
)

// RejectLog logs batches the engine rejected at most once per interval, with
// the number of rejections since the last message.
type RejectLog struct {
	logger   *zap.Logger
	outcome  string // what became of the batch, for the message
	throttle *Throttle
}

// NewRejectLog logs through logger at most once per interval of clock;
// outcome says what the component did with a rejected batch ("the traces
// were passed on unchanged", "the request was refused").
func NewRejectLog(logger *zap.Logger, interval time.Duration, clock func() time.Time, outcome string) *RejectLog {
	return &RejectLog{logger: logger, outcome: outcome, throttle: New(interval, clock)}
}

// Reject notes one rejected batch of spans spans (0 when they were not
// counted) and logs if the interval has passed: a warning when the engine
// found the batch malformed, an error when it failed otherwise. It reports
// whether a message was written.
func (r *RejectLog) Reject(err error, spans int) bool {
	r.throttle.Note()
	return r.throttle.Try(func(_ time.Time, rejected int64) bool {
		fields := []zap.Field{
			zap.Error(err),
			zap.Int("spans_in_batch", spans),
			zap.Int64("rejected_since_last_message", rejected),
			zap.Duration("log_interval", r.throttle.Interval()),
		}
		if engine.IsInvalidInput(err) {
			r.logger.Warn("servicemap engine rejected a trace batch; "+r.outcome, fields...)
		} else {
			r.logger.Error("servicemap engine failed to take a trace batch; "+r.outcome, fields...)
		}
		return true
	})
}

// Stats reads the engine's statistics at now, flattened into numbers by
// their keys (selftelemetry.EngineStats).
type Stats func(now time.Time) (map[string]float64, error)

// OverflowLog warns when the engine refused, folded or truncated input
// because one of its caps was full: when series_refused, values_truncated
// or an overflow_* statistic has grown. It writes at most one message per
// interval, naming each statistic that grew since the last message and by
// how much, so that an operator learns which cap to raise, or which input
// to look at, without a line per span.
type OverflowLog struct {
	logger   *zap.Logger
	stats    Stats
	throttle *Throttle
	// reported holds each statistic's value at the last message (zero
	// before the first: the engine counts from its start). Only write,
	// which the throttle calls one at a time, touches it.
	reported map[string]float64
}

// NewOverflowLog watches the statistics from stats and logs through logger
// at most once per interval of clock.
func NewOverflowLog(logger *zap.Logger, interval time.Duration, clock func() time.Time, stats Stats) *OverflowLog {
	return &OverflowLog{logger: logger, stats: stats, throttle: New(interval, clock), reported: map[string]float64{}}
}

// isOverflow reports whether a statistic counts input lost to a cap.
func isOverflow(key string) bool {
	return key == "series_refused" || key == "values_truncated" || strings.HasPrefix(key, "overflow_")
}

// Check reads the statistics, unless a message was written less than an
// interval ago (growth until then is reported in the next message), and
// logs what grew since the last message. It reports whether it logged.
func (o *OverflowLog) Check() bool {
	return o.throttle.Try(o.write)
}

func (o *OverflowLog) write(now time.Time, _ int64) bool {
	values, err := o.stats(now)
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
	fields = append(fields, zap.Duration("log_interval", o.throttle.Interval()))
	o.logger.Warn("servicemap engine caps overflowed: input beyond them was refused, folded or truncated; "+
		"each field counts what one cap turned away since the last message", fields...)
	return true
}
