package servicemapconnector

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"

	"github.com/servicemap/servicemap/go-shim/connector/servicemapconnector/internal/metadata"
	"github.com/servicemap/servicemap/go-shim/internal/engine"
	"github.com/servicemap/servicemap/go-shim/internal/logthrottle"
	"github.com/servicemap/servicemap/go-shim/internal/metricsloop"
	"github.com/servicemap/servicemap/go-shim/internal/projection"
	"github.com/servicemap/servicemap/go-shim/internal/selftelemetry"
)

type serviceMapConnector struct {
	cfg     *Config
	logger  *zap.Logger
	next    consumer.Metrics
	eng     *engine.Engine
	tel     *selftelemetry.Telemetry
	rejects *logthrottle.RejectLog
	encode  projection.Encode
	loop    *metricsloop.Loop // expiry and metric pushes; its seams serve the tests

	mu      sync.Mutex
	started bool
	stopped bool
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
	tel, err := selftelemetry.ForComponent(telset, metadata.NewTelemetryBuilder, metadata.Meter, eng)
	if err != nil {
		eng.Close()
		return nil, err
	}
	return &serviceMapConnector{
		cfg:     cfg,
		logger:  telset.Logger,
		next:    next,
		eng:     eng,
		tel:     tel,
		rejects: logthrottle.NewRejectLog(telset.Logger, logthrottle.Interval, time.Now, "the batch was dropped"),
		encode:  encode,
		loop:    metricsloop.New(eng, next, telset.Logger, cfg.ExpirationLoop(), cfg.FlushInterval()),
	}, nil
}

// Capabilities reports that the connector only reads the traces.
func (c *serviceMapConnector) Capabilities() consumer.Capabilities {
	return consumer.Capabilities{MutatesData: false}
}

// ConsumeTraces hands the batch to the engine. A batch the engine rejects is
// counted and logged, and not reported as an error upstream.
func (c *serviceMapConnector) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	if !c.tel.Ingest(ctx, c.eng, c.encode, c.loop.Now(), c.rejects, td) {
		return nil
	}
	if c.loop.PushesPerBatch() {
		c.loop.Push(ctx)
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
	c.loop.Start()
	return nil
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
	c.loop.Stop()

	if err := c.eng.Flush(c.loop.Now()); err != nil {
		c.logger.Warn("servicemap flush at shutdown failed", zap.Error(err))
	}
	if c.started {
		c.loop.Push(ctx)
	}
	c.tel.Shutdown()
	c.eng.Close()
	return nil
}
