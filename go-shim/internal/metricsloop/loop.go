// Package metricsloop holds what the components share once spans are in the
// engine: expiry on one ticker (all three), and the service-graph metrics,
// rendered as OTLP, sent down a metrics pipeline on another (the connector
// and the receiver; the processor serves its metrics over HTTP instead).
package metricsloop

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/zap"

	"github.com/servicemap/servicemap/go-shim/internal/engine"
	"github.com/servicemap/servicemap/go-shim/internal/logthrottle"
	"github.com/servicemap/servicemap/go-shim/internal/selftelemetry"
)

// Loop runs an engine's expiry and metric pushes until Stop. After each
// expiry it checks whether the engine's caps overflowed, and warns if so, at
// most once per logthrottle.Interval.
type Loop struct {
	eng      *engine.Engine
	next     consumer.Metrics // nil: the loop only expires (ExpiryOnly)
	logger   *zap.Logger
	expiry   time.Duration
	every    time.Duration // push period; 0 = the owner pushes after every batch
	overflow *logthrottle.OverflowLog

	// Seams for tests; set before Start.
	Now         func() time.Time
	NewTicker   func(time.Duration) (<-chan time.Time, func())
	AfterExpire func()
	AfterPush   func()

	// pushMu keeps pushes in order and one at a time.
	pushMu      sync.Mutex
	unmarshaler pmetric.ProtoUnmarshaler

	stop  chan struct{}
	loops sync.WaitGroup
}

// New returns a loop that expires every `expiry` and pushes to next every
// `every` (never, when 0: the owner calls Push itself, and New warns that
// every batch then sends metrics).
func New(eng *engine.Engine, next consumer.Metrics, logger *zap.Logger, expiry, every time.Duration) *Loop {
	if every == 0 {
		logger.Warn("metrics_flush_interval is 0: service-graph metrics are sent after every batch, which can produce a very large number of data points")
	}
	l := ExpiryOnly(eng, logger, expiry)
	l.next, l.every = next, every
	return l
}

// ExpiryOnly returns a loop that expires every `expiry` and pushes nothing,
// for a component that serves its metrics instead of sending them on.
func ExpiryOnly(eng *engine.Engine, logger *zap.Logger, expiry time.Duration) *Loop {
	l := &Loop{
		eng:       eng,
		logger:    logger,
		expiry:    expiry,
		Now:       time.Now,
		NewTicker: newTicker,
		stop:      make(chan struct{}),
	}
	// The overflow warnings read the loop's clock, whatever it is set to.
	l.overflow = logthrottle.NewOverflowLog(logger, logthrottle.Interval, func() time.Time { return l.Now() },
		selftelemetry.EngineStats(eng))
	return l
}

func newTicker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

// PushesPerBatch reports whether the owner should push after every batch.
func (l *Loop) PushesPerBatch() bool { return l.next != nil && l.every == 0 }

// Start starts the expiry loop and, for a loop that pushes on a period, the
// push loop. Call it once.
func (l *Loop) Start() {
	l.run(l.expiry, func() {
		now := l.Now()
		if err := l.eng.Expire(now); err != nil {
			l.logger.Warn("servicemap expiry failed", zap.Error(err))
		}
		l.overflow.Check()
		if l.AfterExpire != nil {
			l.AfterExpire()
		}
	})
	if l.next != nil && l.every > 0 {
		l.run(l.every, func() {
			l.Push(context.Background())
			if l.AfterPush != nil {
				l.AfterPush()
			}
		})
	}
}

// run calls tick on every tick of a ticker of period d until Stop.
func (l *Loop) run(d time.Duration, tick func()) {
	ticks, stopTicker := l.NewTicker(d)
	l.loops.Add(1)
	go func() {
		defer l.loops.Done()
		defer stopTicker()
		for {
			select {
			case <-l.stop:
				return
			case <-ticks:
				tick()
			}
		}
	}()
}

// Stop stops the loops and waits for them. Call it once, after Start or not.
func (l *Loop) Stop() {
	close(l.stop)
	l.loops.Wait()
}

// Push renders the current series as OTLP metrics and sends them on. Nothing
// is sent while there are no series, nor by an ExpiryOnly loop.
func (l *Loop) Push(ctx context.Context) {
	if l.next == nil {
		return
	}
	l.pushMu.Lock()
	defer l.pushMu.Unlock()
	raw, err := l.eng.Render(engine.FormatOTLPMetrics, l.Now())
	if err != nil {
		l.logger.Warn("servicemap metrics rendering failed", zap.Error(err))
		return
	}
	if len(raw) == 0 {
		return
	}
	md, err := l.unmarshaler.UnmarshalMetrics(raw)
	if err != nil {
		l.logger.Error("servicemap engine produced undecodable OTLP metrics", zap.Error(err), zap.Int("bytes", len(raw)))
		return
	}
	if md.MetricCount() == 0 {
		return
	}
	if err := l.next.ConsumeMetrics(ctx, md); err != nil {
		l.logger.Warn("sending service-graph metrics failed", zap.Error(err))
	}
}
