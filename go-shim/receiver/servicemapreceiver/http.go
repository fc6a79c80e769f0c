package servicemapreceiver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The media types of OTLP/HTTP: binary protobuf and the protobuf JSON
// mapping with OTLP's exceptions (hex IDs, integer enums).
const (
	protobufContentType = "application/x-protobuf"
	jsonContentType     = "application/json"
)

// encoding is how a request's body, and so its answer, is encoded.
type encoding uint8

const (
	encodingProtobuf encoding = iota
	encodingJSON
)

func (e encoding) contentType() string {
	if e == encodingJSON {
		return jsonContentType
	}
	return protobufContentType
}

// okBody is an ExportTraceServiceResponse without partial success, the
// answer to every request taken: no bytes in protobuf, an empty object in
// JSON.
func (e encoding) okBody() []byte {
	if e == encodingJSON {
		return []byte("{}")
	}
	return nil
}

// requestEncoding reads the request's Content-Type. known is false for a
// media type OTLP/HTTP does not define; errors about such a request are
// answered in protobuf.
func requestEncoding(req *http.Request) (enc encoding, known bool) {
	mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type"))
	if err != nil {
		return encodingProtobuf, false
	}
	switch mt {
	case protobufContentType:
		return encodingProtobuf, true
	case jsonContentType:
		return encodingJSON, true
	}
	return encodingProtobuf, false
}

// bodies holds request body buffers between HTTP requests.
var bodies = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBody is the largest body buffer kept for reuse.
const maxPooledBody = 16 << 20

// handleHTTP serves POST /v1/traces. A protobuf body goes to the engine as
// it is; a JSON body is decoded with pdata and its protobuf encoding goes to
// the engine, so both give the same metrics (and max_batch_bytes bounds the
// same bytes). Compressed bodies arrive decompressed by the confighttp
// server, which answers a Content-Encoding it cannot decode with
// httpErrorHandler. Answers are encoded as the request was.
func (r *serviceMapReceiver) handleHTTP(w http.ResponseWriter, req *http.Request) {
	enc, known := requestEncoding(req)
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeStatus(w, enc, http.StatusMethodNotAllowed, codes.Unimplemented,
			"method "+req.Method+" not allowed, supported: POST")
		return
	}
	if !known {
		writeStatus(w, enc, http.StatusUnsupportedMediaType, codes.InvalidArgument,
			fmt.Sprintf("unsupported content type %q, supported: %s, %s",
				req.Header.Get("Content-Type"), protobufContentType, jsonContentType))
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
		if tooLarge := (*http.MaxBytesError)(nil); errors.As(err, &tooLarge) {
			writeStatus(w, enc, http.StatusRequestEntityTooLarge, codes.ResourceExhausted,
				fmt.Sprintf("the request body is larger than max_request_body_size (%d bytes)", tooLarge.Limit))
			return
		}
		writeStatus(w, enc, http.StatusBadRequest, codes.InvalidArgument, "reading the request body: "+err.Error())
		return
	}
	otlp := body
	if enc == encodingJSON {
		if otlp, err = jsonToProtobuf(body); err != nil {
			// Refused and counted like a protobuf batch the engine cannot
			// read, though not in batches: the engine never saw it.
			r.tel.Rejected(req.Context())
			writeStatus(w, enc, http.StatusBadRequest, codes.InvalidArgument,
				"the body is not an OTLP/JSON ExportTraceServiceRequest: "+err.Error())
			return
		}
	}
	dropped, err := r.consume(req.Context(), otlp)
	if err != nil {
		code := http.StatusInternalServerError
		st := status.Convert(grpcError(err))
		switch st.Code() {
		case codes.InvalidArgument:
			code = http.StatusBadRequest
		case codes.Unavailable:
			code = http.StatusServiceUnavailable
		}
		writeStatus(w, enc, code, st.Code(), st.Message())
		return
	}
	if dropped == 0 {
		writeResponse(w, enc, http.StatusOK, enc.okBody())
		return
	}
	resp := partialSuccess(dropped)
	var b []byte
	if enc == encodingJSON {
		b, err = resp.MarshalJSON()
	} else {
		b, err = resp.MarshalProto()
	}
	if err != nil {
		writeStatus(w, enc, http.StatusInternalServerError, codes.Internal, err.Error())
		return
	}
	writeResponse(w, enc, http.StatusOK, b)
}

// jsonToProtobuf decodes an OTLP/JSON ExportTraceServiceRequest and returns
// its protobuf encoding.
func jsonToProtobuf(body []byte) ([]byte, error) {
	req := ptraceotlp.NewExportRequest()
	if err := req.UnmarshalJSON(body); err != nil {
		return nil, err
	}
	return req.MarshalProto()
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

// httpErrorHandler answers the errors of the confighttp server's own layers
// (a Content-Encoding it cannot decode, a failed authentication) as
// handleHTTP answers its own.
func httpErrorHandler(w http.ResponseWriter, req *http.Request, msg string, httpCode int) {
	enc, _ := requestEncoding(req)
	writeStatus(w, enc, httpCode, codeForHTTP(httpCode), msg)
}

// codeForHTTP is the gRPC code of an HTTP error status.
func codeForHTTP(httpCode int) codes.Code {
	switch httpCode {
	case http.StatusBadRequest:
		return codes.InvalidArgument
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return codes.Unavailable
	}
	return codes.Unknown
}

// writeStatus answers with a google.rpc.Status, as OTLP/HTTP asks of every
// error: protobuf, or JSON for a JSON request.
func writeStatus(w http.ResponseWriter, enc encoding, httpCode int, code codes.Code, msg string) {
	var body []byte
	if enc == encodingJSON {
		body = encodeStatusJSON(code, msg)
	} else {
		body = encodeStatus(code, msg)
	}
	writeResponse(w, enc, httpCode, body)
}

func writeResponse(w http.ResponseWriter, enc encoding, httpCode int, body []byte) {
	w.Header().Set("Content-Type", enc.contentType())
	w.WriteHeader(httpCode)
	if len(body) > 0 {
		_, _ = w.Write(body)
	}
}

// encodeStatus encodes google.rpc.Status{code, message} in protobuf. The
// message may quote the request (its Content-Type), so bytes that are not
// UTF-8 are replaced: a protobuf string must be UTF-8.
func encodeStatus(code codes.Code, msg string) []byte {
	msg = strings.ToValidUTF8(msg, "\uFFFD")
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

// statusJSON is google.rpc.Status in the protobuf JSON mapping (no details).
type statusJSON struct {
	Code    int32  `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// encodeStatusJSON encodes google.rpc.Status{code, message} in JSON, with
// bytes that are not UTF-8 replaced as encodeStatus replaces them.
func encodeStatusJSON(code codes.Code, msg string) []byte {
	// A struct of an integer and a string always encodes.
	b, _ := json.Marshal(statusJSON{Code: int32(code), Message: strings.ToValidUTF8(msg, "\uFFFD")})
	return b
}

func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}
