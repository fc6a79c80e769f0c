package servicemapprocessor

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"

	"github.com/servicemap/servicemap/go-shim/internal/engine"
	"github.com/servicemap/servicemap/go-shim/internal/logthrottle"
	"github.com/servicemap/servicemap/go-shim/internal/metricsloop"
	"github.com/servicemap/servicemap/go-shim/internal/projection"
	"github.com/servicemap/servicemap/go-shim/internal/selftelemetry"
	"github.com/servicemap/servicemap/go-shim/processor/servicemapprocessor/internal/metadata"
)

type serviceMapProcessor struct {
	cfg     *Config
	telset  component.TelemetrySettings
	logger  *zap.Logger
	eng     *engine.Engine
	tel     *selftelemetry.Telemetry
	rejects *logthrottle.RejectLog
	encode  projection.Encode // a seam for tests; set before start
	loop    *metricsloop.Loop // expiry; its seams (the clock among them) serve the tests

	mu       sync.Mutex
	started  bool
	stopped  bool
	server   *http.Server
	listener net.Listener
	serving  sync.WaitGroup
}

func newProcessor(telset component.TelemetrySettings, cfg *Config) (*serviceMapProcessor, error) {
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
	return &serviceMapProcessor{
		cfg:     cfg,
		telset:  telset,
		logger:  telset.Logger,
		eng:     eng,
		tel:     tel,
		rejects: logthrottle.NewRejectLog(telset.Logger, logthrottle.Interval, time.Now, "the traces were passed on unchanged"),
		encode:  encode,
		loop:    metricsloop.ExpiryOnly(eng, telset.Logger, cfg.ExpirationLoop()),
	}, nil
}

// processTraces hands the batch to the engine and returns it unchanged. A
// batch the engine rejects is counted and logged; it still flows on.
func (p *serviceMapProcessor) processTraces(ctx context.Context, td ptrace.Traces) (ptrace.Traces, error) {
	p.tel.Ingest(ctx, p.eng, p.encode, p.loop.Now(), p.rejects, td)
	return td, nil
}

func (p *serviceMapProcessor) start(ctx context.Context, host component.Host) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started || p.stopped {
		return nil
	}

	ln, err := p.cfg.HTTP.ToListener(ctx)
	if err != nil {
		return err
	}
	srv, err := p.cfg.HTTP.ToServer(ctx, host.GetExtensions(), p.telset, p.handler())
	if err != nil {
		_ = ln.Close()
		return err
	}
	p.server, p.listener, p.started = srv, ln, true
	p.logger.Info("servicemap processor serving metrics",
		zap.String("endpoint", ln.Addr().String()), zap.String("path", p.cfg.HTTP.MetricsPath))

	p.serving.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			componentstatus.ReportStatus(host, componentstatus.NewFatalErrorEvent(err))
		}
	})
	p.loop.Start()
	return nil
}

// shutdown stops the server and the expiry loop, flushes the edges still
// waiting for their other side, and frees the engine. It is safe without
// start and when called again.
func (p *serviceMapProcessor) shutdown(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return nil
	}
	p.stopped = true
	p.loop.Stop()

	var err error
	if p.server != nil {
		err = p.server.Shutdown(ctx)
		if err != nil {
			// Shutdown gave up waiting for active requests; cut them off.
			_ = p.server.Close()
		}
	}
	p.serving.Wait()

	if ferr := p.eng.Flush(p.loop.Now()); ferr != nil {
		p.logger.Warn("servicemap flush at shutdown failed", zap.Error(ferr))
	}
	p.tel.Shutdown()
	p.eng.Close()
	return err
}

// addr is the address the HTTP server listens on, once started.
func (p *serviceMapProcessor) addr() net.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.listener == nil {
		return nil
	}
	return p.listener.Addr()
}
