package servicemapreceiver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/config/configgrpc"
	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/servicemap/servicemap/go-shim/internal/engine"
	"github.com/servicemap/servicemap/go-shim/internal/logthrottle"
	"github.com/servicemap/servicemap/go-shim/internal/metricsloop"
	"github.com/servicemap/servicemap/go-shim/internal/selftelemetry"
	"github.com/servicemap/servicemap/go-shim/receiver/servicemapreceiver/internal/metadata"
)

// TracesPath is the URL path of the HTTP server.
const TracesPath = "/v1/traces"

type serviceMapReceiver struct {
	cfg     *Config
	telset  component.TelemetrySettings
	logger  *zap.Logger
	next    consumer.Metrics
	eng     *engine.Engine
	tel     *selftelemetry.Telemetry
	rejects *logthrottle.RejectLog
	loop    *metricsloop.Loop // expiry and metric pushes; its seams serve the tests

	serverGRPC *grpc.Server
	serverHTTP *http.Server
	addrGRPC   net.Addr
	addrHTTP   net.Addr
	servers    sync.WaitGroup

	mu      sync.Mutex
	started bool
	stopped bool
}

func newReceiver(telset component.TelemetrySettings, cfg *Config, next consumer.Metrics) (*serviceMapReceiver, error) {
	eng, err := cfg.NewEngine()
	if err != nil {
		return nil, err
	}
	tel, err := selftelemetry.ForComponent(telset, metadata.NewTelemetryBuilder, metadata.Meter, eng)
	if err != nil {
		eng.Close()
		return nil, err
	}
	return &serviceMapReceiver{
		cfg:     cfg,
		telset:  telset,
		logger:  telset.Logger,
		next:    next,
		eng:     eng,
		tel:     tel,
		rejects: logthrottle.NewRejectLog(telset.Logger, logthrottle.Interval, time.Now, "the request was refused"),
		loop:    metricsloop.New(eng, next, telset.Logger, cfg.ExpirationLoop(), cfg.FlushInterval()),
	}, nil
}

// consume hands one request's bytes to the engine and returns how many of
// its spans were dropped (the store was full). A request the engine rejects
// is counted and logged, and its error returned.
func (r *serviceMapReceiver) consume(ctx context.Context, otlp []byte) (dropped uint64, err error) {
	if dropped, err = r.tel.IngestBytes(ctx, r.eng, r.loop.Now(), r.rejects, otlp); err != nil {
		return 0, err
	}
	if r.loop.PushesPerBatch() && len(otlp) > 0 {
		r.loop.Push(ctx)
	}
	return dropped, nil
}

// partialSuccess is the ExportTraceServiceResponse for a request of which
// the engine dropped `dropped` spans: OTLP's partial success.
func partialSuccess(dropped uint64) ptraceotlp.ExportResponse {
	resp := ptraceotlp.NewExportResponse()
	if dropped > 0 {
		ps := resp.PartialSuccess()
		ps.SetRejectedSpans(int64(dropped))
		ps.SetErrorMessage(fmt.Sprintf("%d spans dropped: the pairing store was full (store.max_items); they are counted in traces_service_graph_dropped_spans_total", dropped))
	}
	return resp
}

// Start starts the expiry and push loops, then the servers.
func (r *serviceMapReceiver) Start(ctx context.Context, host component.Host) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started || r.stopped {
		return nil
	}
	r.started = true
	r.loop.Start()
	if err := r.startGRPC(ctx, host); err != nil {
		return err
	}
	if err := r.startHTTP(ctx, host); err != nil {
		return err
	}
	return nil
}

func (r *serviceMapReceiver) startGRPC(ctx context.Context, host component.Host) error {
	if !r.cfg.Protocols.GRPC.HasValue() {
		return nil
	}
	cfg := r.cfg.Protocols.GRPC.Get()
	var err error
	r.serverGRPC, err = cfg.ToServer(ctx, host.GetExtensions(), r.telset,
		configgrpc.WithGrpcServerOption(grpc.ForceServerCodecV2(rawCodec{})))
	if err != nil {
		return err
	}
	r.serverGRPC.RegisterService(&traceServiceDesc, r)
	ln, err := cfg.NetAddr.Listen(ctx)
	if err != nil {
		return err
	}
	r.addrGRPC = ln.Addr()
	r.logger.Info("Starting gRPC server", zap.String("endpoint", ln.Addr().String()))
	srv := r.serverGRPC
	r.servers.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			componentstatus.ReportStatus(host, componentstatus.NewFatalErrorEvent(err))
		}
	})
	return nil
}

func (r *serviceMapReceiver) startHTTP(ctx context.Context, host component.Host) error {
	if !r.cfg.Protocols.HTTP.HasValue() {
		return nil
	}
	cfg := r.cfg.Protocols.HTTP.Get()
	mux := http.NewServeMux()
	mux.HandleFunc(TracesPath, r.handleHTTP)
	var err error
	r.serverHTTP, err = cfg.ToServer(ctx, host.GetExtensions(), r.telset, mux,
		confighttp.WithErrorHandler(httpErrorHandler))
	if err != nil {
		return err
	}
	ln, err := cfg.ToListener(ctx)
	if err != nil {
		return err
	}
	r.addrHTTP = ln.Addr()
	r.logger.Info("Starting HTTP server", zap.String("endpoint", ln.Addr().String()))
	srv := r.serverHTTP
	r.servers.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			componentstatus.ReportStatus(host, componentstatus.NewFatalErrorEvent(err))
		}
	})
	return nil
}

// export is the gRPC Export method: the request's bytes go to the engine.
func (r *serviceMapReceiver) export(ctx context.Context, req *rawMessage) (*rawMessage, error) {
	dropped, err := r.consume(ctx, req.b)
	if err != nil {
		return nil, grpcError(err)
	}
	if dropped == 0 {
		return &emptyResponse, nil
	}
	b, err := partialSuccess(dropped).MarshalProto()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &rawMessage{b: b}, nil
}

func grpcError(err error) error {
	switch {
	case engine.IsInvalidInput(err):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, engine.ErrClosed):
		return status.Error(codes.Unavailable, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// Shutdown stops the servers (letting requests in progress finish) and the
// loops, expires every edge still waiting, sends the metrics a last time and
// frees the engine. It is safe without Start and when called again.
func (r *serviceMapReceiver) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return nil
	}
	r.stopped = true
	var err error
	if r.serverHTTP != nil {
		err = r.serverHTTP.Shutdown(ctx)
	}
	if r.serverGRPC != nil {
		r.serverGRPC.GracefulStop()
	}
	r.servers.Wait()
	r.loop.Stop()

	if ferr := r.eng.Flush(r.loop.Now()); ferr != nil {
		r.logger.Warn("servicemap flush at shutdown failed", zap.Error(ferr))
	}
	if r.started {
		r.loop.Push(ctx)
	}
	r.tel.Shutdown()
	r.eng.Close()
	return err
}
