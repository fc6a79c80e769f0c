// Package engine is the only place where Go calls into the servicemap Rust
// library. It turns the C ABI of include/servicemap.h into a small Go API:
// bytes in, bytes out, errors carrying the library's message. It contains no
// service-graph logic of its own.
package engine

/*
#cgo CFLAGS: -I${SRCDIR}/../../../include
#cgo LDFLAGS: ${SRCDIR}/../../../target/release/libservicemap.a -lm -ldl -lpthread

// None of these functions keeps a pointer it was given after it returns, and
// none calls back into Go.
#cgo noescape sm_engine_new
#cgo noescape sm_engine_consume
#cgo noescape sm_engine_consume_counted
#cgo noescape sm_engine_expire
#cgo noescape sm_engine_flush
#cgo noescape sm_engine_render
#cgo noescape sm_engine_wanted_keys
#cgo nocallback sm_version_number
#cgo nocallback sm_engine_new
#cgo nocallback sm_engine_free
#cgo nocallback sm_engine_consume
#cgo nocallback sm_engine_consume_counted
#cgo nocallback sm_engine_expire
#cgo nocallback sm_engine_flush
#cgo nocallback sm_engine_render
#cgo nocallback sm_engine_wanted_keys
#cgo nocallback sm_buf_free

#include "servicemap.h"

// The checksum of the Rust archive (the Makefile defines it), kept in this
// package's object so that a new archive changes the object's content: go
// build decides whether to link again from the content of the packages, and
// the archive that cgo links is not one of them.
#ifdef SERVICEMAP_LIB_SHA256
#define SM_STRINGIFY_(x) #x
#define SM_STRINGIFY(x) SM_STRINGIFY_(x)
__attribute__((used)) static const char sm_lib_sha256[] = SM_STRINGIFY(SERVICEMAP_LIB_SHA256);
#endif
*/
import "C"

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
	"unsafe"
)

// Format selects what Render produces.
type Format uint32

// Render formats, as defined by the SM_FORMAT_* constants of the C header.
const (
	FormatPrometheus  Format = C.SM_FORMAT_PROMETHEUS
	FormatOpenMetrics Format = C.SM_FORMAT_OPENMETRICS
	FormatOTLPMetrics Format = C.SM_FORMAT_OTLP_METRICS
	FormatStatsJSON   Format = C.SM_FORMAT_STATS_JSON
	// FormatPrometheusProtobuf is Prometheus' protobuf exposition
	// (length-delimited MetricFamily messages), which carries native histograms.
	FormatPrometheusProtobuf Format = C.SM_FORMAT_PROMETHEUS_PROTOBUF
)

func (f Format) String() string {
	switch f {
	case FormatPrometheus:
		return "prometheus"
	case FormatOpenMetrics:
		return "openmetrics"
	case FormatOTLPMetrics:
		return "otlp_metrics"
	case FormatStatsJSON:
		return "stats_json"
	case FormatPrometheusProtobuf:
		return "prometheus_protobuf"
	}
	return fmt.Sprintf("format(%d)", uint32(f))
}

// Status is the library's result code for a failed call.
type Status int

// Status values, as defined by enum sm_status of the C header.
// MaxValueDepth is how deep the engine follows nested attribute values;
// deeper ones are cut and counted, whatever the input.
const MaxValueDepth = C.SM_MAX_VALUE_DEPTH

const (
	StatusNullArgument    Status = C.SM_STATUS_NULL_ARGUMENT
	StatusInvalidConfig   Status = C.SM_STATUS_INVALID_CONFIG
	StatusInvalidInput    Status = C.SM_STATUS_INVALID_INPUT
	StatusInvalidArgument Status = C.SM_STATUS_INVALID_ARGUMENT
	StatusPanic           Status = C.SM_STATUS_PANIC
)

func (s Status) String() string {
	switch s {
	case StatusNullArgument:
		return "null argument"
	case StatusInvalidConfig:
		return "invalid config"
	case StatusInvalidInput:
		return "invalid input"
	case StatusInvalidArgument:
		return "invalid argument"
	case StatusPanic:
		return "panic"
	}
	return fmt.Sprintf("status %d", int(s))
}

// Error is a failed library call: which call, its status and the library's
// own message (which, for configuration errors, names the offending key).
type Error struct {
	Op      string
	Status  Status
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("servicemap %s: %s", e.Op, e.Status)
	}
	return fmt.Sprintf("servicemap %s: %s", e.Op, e.Message)
}

// IsInvalidInput reports whether err is a batch the library rejected as
// malformed (nothing from it was applied).
func IsInvalidInput(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == StatusInvalidInput
}

// IsInvalidConfig reports whether err is a configuration the library rejected.
func IsInvalidConfig(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == StatusInvalidConfig
}

// ErrClosed is returned by every call on an engine after Close.
var ErrClosed = errors.New("servicemap engine is closed")

// HeaderVersion is the library version the Go code was compiled against
// (SERVICEMAP_VERSION_NUMBER of the header: major*10000 + minor*100 + patch).
const HeaderVersion = uint32(C.SERVICEMAP_VERSION_NUMBER)

// LibraryVersion returns the version string of the linked library.
func LibraryVersion() string { return C.GoString(C.sm_version()) }

// versionErr is set when the linked library does not implement the ABI the
// header describes; New then refuses to create engines.
var versionErr = checkVersion(uint32(C.sm_version_number()), HeaderVersion)

func checkVersion(lib, header uint32) error {
	libMajor, headerMajor := lib/10000, header/10000
	libMinor, headerMinor := lib/100%100, header/100%100
	if libMajor != headerMajor || libMinor < headerMinor {
		return fmt.Errorf("servicemap library version %d.%d.%d does not match the header the shim was built with (%d.%d.%d); rebuild the Rust library and the collector together",
			libMajor, libMinor, lib%100, headerMajor, headerMinor, header%100)
	}
	return nil
}

// Engine is one servicemap engine. All methods are safe for concurrent use.
// Close frees the library's memory; calls after Close return ErrClosed.
type Engine struct {
	// mu guards ptr: calls hold it shared, Close holds it exclusively, so the
	// engine is never freed while a call is running.
	mu  sync.RWMutex
	ptr *C.sm_engine
}

// New creates an engine from a JSON configuration. An empty configuration
// means every default of the Tempo preset.
func New(configJSON []byte) (*Engine, error) {
	if versionErr != nil {
		return nil, versionErr
	}
	var ptr *C.sm_engine
	var msg C.sm_buf
	st := C.sm_engine_new(bytesPtr(configJSON), C.size_t(len(configJSON)), &ptr, &msg)
	if err := callError("new", st, &msg); err != nil {
		return nil, err
	}
	if ptr == nil {
		return nil, &Error{Op: "new", Status: StatusNullArgument, Message: "library returned no engine"}
	}
	return &Engine{ptr: ptr}, nil
}

// Check reports whether configJSON would be accepted, without keeping an engine.
func Check(configJSON []byte) error {
	e, err := New(configJSON)
	if err != nil {
		return err
	}
	e.Close()
	return nil
}

// Consume feeds one OTLP traces batch (TracesData / ExportTraceServiceRequest
// protobuf). The bytes are only read during the call. A malformed batch gives
// an error for which IsInvalidInput is true.
func (e *Engine) Consume(otlp []byte, now time.Time) error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.ptr == nil {
		return ErrClosed
	}
	var msg C.sm_buf
	st := C.sm_engine_consume(e.ptr, bytesPtr(otlp), C.size_t(len(otlp)), unixNano(now), &msg)
	return callError("consume", st, &msg)
}

// ConsumeCounted is Consume that also says how many of the batch's spans
// were dropped because the pairing store was full (0 when it fails): what an
// OTLP server reports as rejected in a partial success.
func (e *Engine) ConsumeCounted(otlp []byte, now time.Time) (dropped uint64, err error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.ptr == nil {
		return 0, ErrClosed
	}
	var msg C.sm_buf
	var n C.uint64_t
	st := C.sm_engine_consume_counted(e.ptr, bytesPtr(otlp), C.size_t(len(otlp)), unixNano(now), &n, &msg)
	return uint64(n), callError("consume", st, &msg)
}

// Expire expires the half-edges whose wait has passed at now and removes idle series.
func (e *Engine) Expire(now time.Time) error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.ptr == nil {
		return ErrClosed
	}
	var msg C.sm_buf
	st := C.sm_engine_expire(e.ptr, unixNano(now), &msg)
	return callError("expire", st, &msg)
}

// Flush expires every waiting half-edge regardless of its deadline.
func (e *Engine) Flush(now time.Time) error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.ptr == nil {
		return ErrClosed
	}
	var msg C.sm_buf
	st := C.sm_engine_flush(e.ptr, unixNano(now), &msg)
	return callError("flush", st, &msg)
}

// Render returns the engine's state at now in the given format. The result is
// a Go-owned copy.
func (e *Engine) Render(format Format, now time.Time) ([]byte, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.ptr == nil {
		return nil, ErrClosed
	}
	var out, msg C.sm_buf
	st := C.sm_engine_render(e.ptr, C.uint32_t(format), unixNano(now), &out, &msg)
	b := copyBuf(out)
	if out.ptr != nil {
		C.sm_buf_free(out)
	}
	if err := callError("render "+format.String(), st, &msg); err != nil {
		return nil, err
	}
	return b, nil
}

// WantedKeys are the attribute keys an engine reads from a batch: resource
// attributes and span attributes with other keys never change its output.
// SpanName says whether it reads span names (a filter policy looks at them).
type WantedKeys struct {
	Resource []string `json:"resource"`
	Span     []string `json:"span"`
	SpanName bool     `json:"span_name"`
}

// WantedKeys asks the engine which attribute keys it reads. They follow from
// its configuration and do not change over its life.
func (e *Engine) WantedKeys() (WantedKeys, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.ptr == nil {
		return WantedKeys{}, ErrClosed
	}
	var out, msg C.sm_buf
	st := C.sm_engine_wanted_keys(e.ptr, &out, &msg)
	b := copyBuf(out)
	if out.ptr != nil {
		C.sm_buf_free(out)
	}
	if err := callError("wanted keys", st, &msg); err != nil {
		return WantedKeys{}, err
	}
	var k WantedKeys
	if err := json.Unmarshal(b, &k); err != nil {
		return WantedKeys{}, fmt.Errorf("servicemap wanted keys: %w", err)
	}
	return k, nil
}

// Close frees the engine. It waits for running calls and is safe to call more
// than once.
func (e *Engine) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ptr != nil {
		C.sm_engine_free(e.ptr)
		e.ptr = nil
	}
}

func bytesPtr(b []byte) *C.uint8_t {
	return (*C.uint8_t)(unsafe.Pointer(unsafe.SliceData(b)))
}

func unixNano(t time.Time) C.uint64_t {
	n := t.UnixNano()
	if n < 0 {
		n = 0
	}
	return C.uint64_t(n)
}

// copyBuf copies a library buffer into Go memory; the caller still frees buf.
func copyBuf(buf C.sm_buf) []byte {
	if buf.ptr == nil || buf.len == 0 {
		return []byte{}
	}
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(buf.ptr)), int(buf.len))...)
}

// callError turns a status into an error, taking (and freeing) the message.
func callError(op string, st C.enum_sm_status, msg *C.sm_buf) error {
	var text string
	if msg.ptr != nil {
		text = string(copyBuf(*msg))
		C.sm_buf_free(*msg)
		*msg = C.sm_buf{}
	}
	if st == C.SM_STATUS_OK {
		return nil
	}
	return &Error{Op: op, Status: Status(st), Message: text}
}
