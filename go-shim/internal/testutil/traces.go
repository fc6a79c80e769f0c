package testutil

import (
	"encoding/binary"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Garbage is a truncated protobuf message: field 1, length 5, one byte.
var Garbage = []byte{0x0a, 0x05, 0x01}

var nextID atomic.Uint64

func ids() (pcommon.TraceID, pcommon.SpanID, pcommon.SpanID) {
	n := nextID.Add(1)
	var trace [16]byte
	binary.BigEndian.PutUint64(trace[0:], 0x5e41ce3a9)
	binary.BigEndian.PutUint64(trace[8:], n)
	var client, server [8]byte
	binary.BigEndian.PutUint64(client[:], n<<1)
	binary.BigEndian.PutUint64(server[:], n<<1|1)
	return trace, client, server
}

// ClientServer is one request in its own trace: a CLIENT span of service
// client and the SERVER span of service server whose parent it is, each
// under its own resource. The client span lasts 100ms, the server span 80ms,
// and both ended before now. failed sets status ERROR on the server span.
func ClientServer(client, server string, now time.Time, failed bool) ptrace.Traces {
	td := ptrace.NewTraces()
	AppendClientServer(td, client, server, now, failed)
	return td
}

// AppendClientServer adds one ClientServer request to td.
func AppendClientServer(td ptrace.Traces, client, server string, now time.Time, failed bool) {
	traceID, clientID, serverID := ids()
	start := now.Add(-time.Second)

	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", client)
	s := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	s.SetTraceID(traceID)
	s.SetSpanID(clientID)
	s.SetKind(ptrace.SpanKindClient)
	s.SetName("GET /")
	s.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
	s.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(100 * time.Millisecond)))

	rs = td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", server)
	s = rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	s.SetTraceID(traceID)
	s.SetSpanID(serverID)
	s.SetParentSpanID(clientID)
	s.SetKind(ptrace.SpanKindServer)
	s.SetName("GET /")
	s.SetStartTimestamp(pcommon.NewTimestampFromTime(start.Add(10 * time.Millisecond)))
	s.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(90 * time.Millisecond)))
	if failed {
		s.Status().SetCode(ptrace.StatusCodeError)
	}
}

// LoneClient is one CLIENT span of service client with peer.service set to
// peer and no server side, so it can only become an edge on expiry.
func LoneClient(client, peer string, now time.Time) ptrace.Traces {
	td := ptrace.NewTraces()
	traceID, clientID, _ := ids()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", client)
	s := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	s.SetTraceID(traceID)
	s.SetSpanID(clientID)
	s.SetKind(ptrace.SpanKindClient)
	s.SetName("call")
	s.Attributes().PutStr("peer.service", peer)
	s.SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(-time.Second)))
	s.SetEndTimestamp(pcommon.NewTimestampFromTime(now.Add(-900 * time.Millisecond)))
	return td
}
