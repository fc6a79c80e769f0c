package servicemapreceiver

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
)

// exportMethod is the full name of the one gRPC method served.
const exportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

// rawMessage is a protobuf message kept as its encoding.
type rawMessage struct{ b []byte }

// emptyResponse is an empty ExportTraceServiceResponse: zero bytes.
var emptyResponse rawMessage

// exporter is what the service description dispatches to.
type exporter interface {
	export(context.Context, *rawMessage) (*rawMessage, error)
}

// traceServiceDesc describes TraceService with its Export method, whose
// request reaches the handler as bytes.
var traceServiceDesc = grpc.ServiceDesc{
	ServiceName: "opentelemetry.proto.collector.trace.v1.TraceService",
	HandlerType: (*exporter)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Export",
		Handler:    exportHandler,
	}},
	Streams:  []grpc.StreamDesc{},
	Metadata: "opentelemetry/proto/collector/trace/v1/trace_service.proto",
}

// requests holds request buffers between calls.
var requests = sync.Pool{New: func() any { return new(rawMessage) }}

func exportHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := requests.Get().(*rawMessage)
	defer func() {
		if cap(in.b) <= maxPooledBody {
			in.b = in.b[:0]
			requests.Put(in)
		}
	}()
	if err := dec(in); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return srv.(exporter).export(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: exportMethod}
	return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
		return srv.(exporter).export(ctx, req.(*rawMessage))
	})
}

// rawCodec passes messages through as bytes: requests are copied into a
// rawMessage, responses are written as they are.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(*rawMessage)
	if !ok {
		return nil, fmt.Errorf("servicemap receiver: cannot encode %T", v)
	}
	if len(m.b) == 0 {
		return nil, nil
	}
	return mem.BufferSlice{mem.SliceBuffer(m.b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*rawMessage)
	if !ok {
		return fmt.Errorf("servicemap receiver: cannot decode into %T", v)
	}
	m.b = m.b[:0]
	if n := data.Len(); cap(m.b) < n {
		m.b = make([]byte, 0, n)
	}
	for _, buf := range data {
		m.b = append(m.b, buf.ReadOnlyData()...)
	}
	return nil
}

// Name is the content subtype: the requests are protobuf.
func (rawCodec) Name() string { return "proto" }
