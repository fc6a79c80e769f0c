package servicemapreceiver

import (
	"context"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/config/configgrpc"
	"go.opentelemetry.io/collector/consumer"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/servicemap/servicemap/go-shim/internal/engine"
	"github.com/servicemap/servicemap/go-shim/internal/metricsloop"
	"github.com/servicemap/servicemap/go-shim/internal/selftelemetry"
	"github.com/servicemap/servicemap/go-shim/receiver/servicemapreceiver/internal/metadata"
)

// rejectLogInterval is the least time between two log messages about rejected batches.
const rejectLogInterval = 10 * time.Second

// TracesPath is the URL path of the HTTP server.
const TracesPath = "/v1/traces"

type serviceMapReceiver struct {
	cfg     *Config
	telset  component.TelemetrySettings
	logger  *zap.Logger
	next    consumer.Metrics
	eng     *engine.Engine
	tel     *selftelemetry.Telemetry
	rejects *selftelemetry.RejectLog
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
	tel, err := selftelemetry.ForEngine(telset.MeterProvider, metadata.ScopeName, eng)
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
		rejects: selftelemetry.NewRejectLog(telset.Logger, rejectLogInterval, "the request was refused"),
		loop:    metricsloop.New(eng, next, telset.Logger, cfg.ExpirationLoop(), cfg.FlushInterval()),
	}, nil
}

// consume hands one request's bytes to the engine. A request the engine
// rejects is counted and logged, and its error returned.
func (r *serviceMapReceiver) consume(ctx context.Context, otlp []byte) error {
	if err := r.tel.FeedBytes(ctx, r.eng, r.loop.Now(), r.rejects, otlp); err != nil {
		return err
	}
	if r.loop.PushesPerBatch() && len(otlp) > 0 {
		r.loop.Push(ctx)
	}
	return nil
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
	r.serverHTTP, err = cfg.ToServer(ctx, host.GetExtensions(), r.telset, mux)
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
	if err := r.consume(ctx, req.b); err != nil {
		return nil, grpcError(err)
	}
	return &emptyResponse, nil
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

// bodies holds request body buffers between HTTP requests.
var bodies = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBody is the largest body buffer kept for reuse.
const maxPooledBody = 16 << 20

// handleHTTP serves POST /v1/traces with a protobuf body (compressed bodies
// are decompressed by the confighttp server). JSON bodies are not supported.
func (r *serviceMapReceiver) handleHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeHTTPError(w, http.StatusMethodNotAllowed, codes.Unimplemented, "method "+req.Method+" not allowed, supported: POST")
		return
	}
	mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-protobuf" {
		writeHTTPError(w, http.StatusUnsupportedMediaType, codes.InvalidArgument,
			"unsupported content type "+req.Header.Get("Content-Type")+", supported: application/x-protobuf")
		return
	}
	buf := bodies.Get().(*[]byte)
	body, err := readBody(req.Body, (*buf)[:0], req.ContentLength)
	defer func() {
		if cap(body) <= maxPooledBody {
			*buf = body[:0]
		}
		bodies.Put(buf)
	}()
	if err != nil {
		writeHTTPError(w, http.StatusBadRequest, codes.InvalidArgument, "reading the request body: "+err.Error())
		return
	}
	if err := r.consume(req.Context(), body); err != nil {
		code := http.StatusInternalServerError
		st := status.Convert(grpcError(err))
		switch st.Code() {
		case codes.InvalidArgument:
			code = http.StatusBadRequest
		case codes.Unavailable:
			code = http.StatusServiceUnavailable
		}
		writeHTTPError(w, code, st.Code(), st.Message())
		return
	}
	// An empty ExportTraceServiceResponse encodes as zero bytes.
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

// readBody appends all of body to buf.
func readBody(body io.Reader, buf []byte, size int64) ([]byte, error) {
	if size > 0 && int64(cap(buf)) < size && size <= maxPooledBody {
		buf = make([]byte, 0, size+1)
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// writeHTTPError answers with a google.rpc.Status protobuf, as OTLP/HTTP asks.
func writeHTTPError(w http.ResponseWriter, httpCode int, code codes.Code, msg string) {
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(httpCode)
	_, _ = w.Write(encodeStatus(code, msg))
}

// encodeStatus encodes google.rpc.Status{code, message}.
func encodeStatus(code codes.Code, msg string) []byte {
	b := make([]byte, 0, 16+len(msg))
	if code != 0 {
		b = append(b, 0x08)
		b = appendVarint(b, uint64(code))
	}
	if msg != "" {
		b = append(b, 0x12)
		b = appendVarint(b, uint64(len(msg)))
		b = append(b, msg...)
	}
	return b
}

func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
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
