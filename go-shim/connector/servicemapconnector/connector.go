package servicemapconnector

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"

	"github.com/servicemap/servicemap/go-shim/connector/servicemapconnector/internal/metadata"
	"github.com/servicemap/servicemap/go-shim/internal/engine"
	"github.com/servicemap/servicemap/go-shim/internal/projection"
	"github.com/servicemap/servicemap/go-shim/internal/selftelemetry"
)

// rejectLogInterval is the least time between two log messages about rejected batches.
const rejectLogInterval = 10 * time.Second

type serviceMapConnector struct {
	cfg     *Config
	logger  *zap.Logger
	next    consumer.Metrics
	eng     *engine.Engine
	tel     *selftelemetry.Telemetry
	rejects *selftelemetry.RejectLog
	every   time.Duration // metrics push period; 0 = after every batch

	// Seams for tests; set before Start.
	now         func() time.Time
	encode      projection.Encode
	newTicker   func(time.Duration) (<-chan time.Time, func())
	afterExpire func()
	afterPush   func()

	// pushMu keeps metric pushes in order and one at a time.
	pushMu      sync.Mutex
	unmarshaler pmetric.ProtoUnmarshaler

	mu      sync.Mutex
	started bool
	stopped bool
	stop    chan struct{}
	loops   sync.WaitGroup
}

var _ consumer.Traces = (*serviceMapConnector)(nil)

func newConnector(telset component.TelemetrySettings, cfg *Config, next consumer.Metrics) (*serviceMapConnector, error) {
	eng, err := cfg.NewEngine()
	if err != nil {
		return nil, err
	}
	encode, err := projection.ForEngine(eng)
	if err != nil {
		eng.Close()
		return nil, err
	}
	tel, err := selftelemetry.ForEngine(telset.MeterProvider, metadata.ScopeName, eng)
	if err != nil {
		eng.Close()
		return nil, err
	}
	every := cfg.flushInterval()
	if every == 0 {
		telset.Logger.Warn("metrics_flush_interval is 0: service-graph metrics are sent after every trace batch, which can produce a very large number of data points")
	}
	return &serviceMapConnector{
		cfg:       cfg,
		logger:    telset.Logger,
		next:      next,
		eng:       eng,
		tel:       tel,
		rejects:   selftelemetry.NewRejectLog(telset.Logger, rejectLogInterval),
		every:     every,
		now:       time.Now,
		encode:    encode,
		newTicker: newTicker,
		stop:      make(chan struct{}),
	}, nil
}

func newTicker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

// Capabilities reports that the connector only reads the traces.
func (c *serviceMapConnector) Capabilities() consumer.Capabilities {
	return consumer.Capabilities{MutatesData: false}
}

// ConsumeTraces hands the batch to the engine. A batch the engine rejects is
// counted and logged, and not reported as an error upstream.
func (c *serviceMapConnector) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	if !c.tel.Feed(ctx, c.eng, c.encode, c.now(), c.rejects, td) {
		return nil
	}
	if c.every == 0 {
		c.push(ctx)
	}
	return nil
}

// Start starts the expiry loop and, unless metrics are sent after every
// batch, the push loop. Both run until Shutdown.
func (c *serviceMapConnector) Start(context.Context, component.Host) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started || c.stopped {
		return nil
	}
	c.started = true

	expiryTick, stopExpiry := c.newTicker(c.cfg.ExpirationLoop())
	c.loops.Add(1)
	go func() {
		defer c.loops.Done()
		defer stopExpiry()
		for {
			select {
			case <-c.stop:
				return
			case <-expiryTick:
				if err := c.eng.Expire(c.now()); err != nil {
					c.logger.Warn("servicemap expiry failed", zap.Error(err))
				}
				if c.afterExpire != nil {
					c.afterExpire()
				}
			}
		}
	}()

	if c.every > 0 {
		pushTick, stopPush := c.newTicker(c.every)
		c.loops.Add(1)
		go func() {
			defer c.loops.Done()
			defer stopPush()
			for {
				select {
				case <-c.stop:
					return
				case <-pushTick:
					c.push(context.Background())
					if c.afterPush != nil {
						c.afterPush()
					}
				}
			}
		}()
	}
	return nil
}

// push renders the current series as OTLP metrics and sends them on. Nothing
// is sent while there are no series.
func (c *serviceMapConnector) push(ctx context.Context) {
	c.pushMu.Lock()
	defer c.pushMu.Unlock()
	raw, err := c.eng.Render(engine.FormatOTLPMetrics, c.now())
	if err != nil {
		c.logger.Warn("servicemap metrics rendering failed", zap.Error(err))
		return
	}
	if len(raw) == 0 {
		return
	}
	md, err := c.unmarshaler.UnmarshalMetrics(raw)
	if err != nil {
		c.logger.Error("servicemap engine produced undecodable OTLP metrics", zap.Error(err), zap.Int("bytes", len(raw)))
		return
	}
	if md.MetricCount() == 0 {
		return
	}
	if err := c.next.ConsumeMetrics(ctx, md); err != nil {
		c.logger.Warn("sending service-graph metrics failed", zap.Error(err))
	}
}

// Shutdown stops the loops, expires every edge still waiting, sends the
// metrics a last time and frees the engine. It is safe without Start and when
// called again.
func (c *serviceMapConnector) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil
	}
	c.stopped = true
	close(c.stop)
	c.loops.Wait()

	if err := c.eng.Flush(c.now()); err != nil {
		c.logger.Warn("servicemap flush at shutdown failed", zap.Error(err))
	}
	if c.started {
		c.push(ctx)
	}
	c.tel.Shutdown()
	c.eng.Close()
	return nil
}
