package engine

/*
#cgo noescape sm_engine_query
#cgo noescape sm_engine_observe_edges
#cgo nocallback sm_engine_query
#cgo nocallback sm_engine_observe_edges

#include "servicemap.h"
*/
import "C"

import (
	"errors"
	"time"
)

// Service-map render formats.
const (
	FormatGraphJSON    Format = C.SM_FORMAT_GRAPH_JSON
	FormatGraphDOT     Format = C.SM_FORMAT_GRAPH_DOT
	FormatGraphMermaid Format = C.SM_FORMAT_GRAPH_MERMAID
)

// Query answers a service-map query given as JSON, such as
// {"query":"impact","service":"checkout"}, and returns the JSON answer.
func (e *Engine) Query(request []byte, now time.Time) ([]byte, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.ptr == nil {
		return nil, ErrClosed
	}
	var out, msg C.sm_buf
	st := C.sm_engine_query(e.ptr, bytesPtr(request), C.size_t(len(request)), unixNano(now), &out, &msg)
	b := copyBuf(out)
	if out.ptr != nil {
		C.sm_buf_free(out)
	}
	if err := callError("query", st, &msg); err != nil {
		return nil, err
	}
	return b, nil
}

// ObserveEdges adds edges seen outside traces (JSON lines of client, server,
// count, errors, latency_seconds, connection_type, protocol) to the map. A bad
// line rejects the whole input.
func (e *Engine) ObserveEdges(lines []byte, now time.Time) error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.ptr == nil {
		return ErrClosed
	}
	var msg C.sm_buf
	st := C.sm_engine_observe_edges(e.ptr, bytesPtr(lines), C.size_t(len(lines)), unixNano(now), &msg)
	return callError("observe edges", st, &msg)
}

// IsInvalidArgument reports whether err is a request the library rejected
// (a bad query or bad edge lines).
func IsInvalidArgument(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == StatusInvalidArgument
}
