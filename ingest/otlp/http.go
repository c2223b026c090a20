package otlp

import (
	"bytes"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"mime"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/bucketq/bucketq/ingest/auth"
	"github.com/bucketq/bucketq/ingest/ingestmetrics"
	"github.com/bucketq/bucketq/ingest/reqbody"
	"github.com/bucketq/bucketq/producer"
)

// Content types of OTLP/HTTP.
const (
	ContentTypeProtobuf = "application/x-protobuf"
	ContentTypeJSON     = "application/json"
)

// DefaultMaxBodyBytes is the request body limit, applied after
// decompression (the OTLP specification recommends 20 MiB).
const DefaultMaxBodyBytes = 20 << 20

// HTTPConfig configures the OTLP/HTTP handler.
type HTTPConfig struct {
	// MaxBodyBytes bounds the request body after decompression (a gzip
	// body on the wire: reqbody.WireLimit of it); above it the request is
	// answered 413. Zero means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Tokens, if not empty, are the accepted bearer tokens (package auth);
	// other requests are answered 401.
	Tokens []string
	// BodyLimits is the minimum body rate (package reqbody); slower
	// bodies are answered 408. Zero fields take reqbody's defaults.
	BodyLimits reqbody.Limits
	// Budget bounds the bytes of bodies being read, shared with the other
	// front doors; when spent, requests are answered 429. Nil: no bound.
	Budget *reqbody.Budget
}

// NewHTTPHandler returns the OTLP/HTTP receiver: POST /v1/logs, /v1/metrics
// and /v1/traces with Content-Type application/x-protobuf or
// application/json (OTLP JSON: hex trace and span ids, integer enums,
// unknown fields ignored), optionally Content-Encoding gzip (the body
// reader shared with /api/v1/events, package reqbody). It matches the
// exact request path, so mount it at the server root (or behind
// http.StripPrefix). Responses use the request's content type.
func NewHTTPHandler(app producer.Appender, cfg HTTPConfig, m *ingestmetrics.Metrics, log *slog.Logger) http.Handler {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	h := &httpHandler{r: newReceiver(app, m, log), cfg: cfg}
	// The token check every HTTP front door wraps itself in.
	return auth.New(cfg.Tokens).HTTP(h, h.unauthorized)
}

type httpHandler struct {
	r   *receiver
	cfg HTTPConfig
}

// httpError is a failed request: its status code, the google.rpc.Status
// message for the body, and an optional Retry-After.
type httpError struct {
	code       int
	msg        string
	badRequest bool
	retryAfter time.Duration
	header     http.Header // more headers of the answer
}

func (h *httpHandler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	ct := ContentTypeProtobuf // encoding of error bodies until the request's is known
	code := http.StatusOK
	if herr := h.serve(w, req, &ct); herr != nil {
		code = herr.code
		writeStatus(w, ct, herr)
	}
	h.r.mHTTP.Request(code)
}

// unauthorized is the reject function of auth.Tokens.HTTP around the
// handler (which has set WWW-Authenticate): a 401 whose body is a
// google.rpc.Status with code UNAUTHENTICATED, like every other 4xx of
// OTLP/HTTP, in the request's content type (protobuf when it is neither
// OTLP type). It is counted in ingest_requests with front otlp-http and
// code 401, as the handler counts its own answers (and /api/v1/events its
// 401s). The body is not read.
func (h *httpHandler) unauthorized(w http.ResponseWriter, r *http.Request) {
	ct := ContentTypeProtobuf
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err == nil && mt == ContentTypeJSON {
		ct = ContentTypeJSON
	}
	writeStatus(w, ct, &httpError{code: http.StatusUnauthorized, msg: auth.RejectMessage})
	h.r.mHTTP.Request(http.StatusUnauthorized)
}

func (h *httpHandler) serve(w http.ResponseWriter, req *http.Request, ct *string) *httpError {
	var sig *signal
	switch req.URL.Path {
	case logsSignal.path:
		sig = logsSignal
	case metricsSignal.path:
		sig = metricsSignal
	case tracesSignal.path:
		sig = tracesSignal
	default:
		return &httpError{code: http.StatusNotFound, msg: fmt.Sprintf("unknown OTLP path %q (want /v1/logs, /v1/metrics or /v1/traces)", req.URL.Path)}
	}
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return &httpError{code: http.StatusMethodNotAllowed, msg: fmt.Sprintf("method %s not allowed, OTLP/HTTP uses POST", req.Method)}
	}
	mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type"))
	if err != nil || (mt != ContentTypeProtobuf && mt != ContentTypeJSON) {
		return &httpError{code: http.StatusUnsupportedMediaType, msg: fmt.Sprintf("unsupported Content-Type %q (want %s or %s)", req.Header.Get("Content-Type"), ContentTypeProtobuf, ContentTypeJSON)}
	}
	*ct = mt

	rd := reqbody.New(w, req, h.cfg.Budget, h.cfg.BodyLimits)
	defer rd.Release()
	body, herr := h.readBody(rd)
	if herr != nil {
		return herr
	}
	msg := sig.newReq()
	if mt == ContentTypeJSON {
		err = UnmarshalJSON(body, msg)
	} else {
		err = proto.Unmarshal(body, msg)
	}
	if err != nil {
		return &httpError{code: http.StatusBadRequest, badRequest: true, msg: fmt.Sprintf("cannot decode %s body as OTLP %s request: %v", mt, sig.name, err)}
	}

	_, out, err := h.r.store(req.Context(), FrontHTTP, sig, msg)
	switch out {
	case outcomeOK:
	case outcomeBackpressure:
		return &httpError{code: http.StatusTooManyRequests, msg: "bucketq producer memory bound reached, retry later", retryAfter: BackpressureRetryDelay}
	default: // unavailable, or the client went away
		return &httpError{code: http.StatusServiceUnavailable, msg: "the request could not be stored durably, retry it: " + err.Error(), retryAfter: UnavailableRetryDelay}
	}

	resp, err := marshal(mt, sig.newResp())
	if err != nil { // an empty message always marshals
		return &httpError{code: http.StatusInternalServerError, msg: err.Error()}
	}
	w.Header().Set("Content-Type", mt)
	w.Header().Set("Content-Length", strconv.Itoa(len(resp)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(resp)
	return nil
}

// readBody reads the body with the reader shared with /api/v1/events
// (package reqbody: encodings, limits, errors), mapping its errors to an
// OTLP Status.
func (h *httpHandler) readBody(body *reqbody.Reader) ([]byte, *httpError) {
	var data bytes.Buffer
	if err := body.ReadBody(&data, h.cfg.MaxBodyBytes); err != nil {
		f := reqbody.Answer(err)
		return nil, &httpError{code: f.Status, msg: f.Detail, badRequest: f.Status == http.StatusBadRequest, header: f.Header}
	}
	return data.Bytes(), nil
}

func marshal(ct string, m proto.Message) ([]byte, error) {
	if ct == ContentTypeJSON {
		return protojson.Marshal(m)
	}
	return proto.Marshal(m)
}

// writeStatus writes a google.rpc.Status body in the request's content type
// (the OTLP specification requires a Status for every 4xx and 5xx).
func writeStatus(w http.ResponseWriter, ct string, e *httpError) {
	st := &spb.Status{Message: e.msg, Code: int32(grpcCode(e.code))}
	if e.badRequest {
		if a, err := anypb.New(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "body", Description: e.msg}}}); err == nil {
			st.Details = append(st.Details, a)
		}
	}
	if e.retryAfter > 0 {
		secs := int64(math.Ceil(e.retryAfter.Seconds()))
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	maps.Copy(w.Header(), e.header)
	body, err := marshal(ct, st)
	if err != nil {
		body = nil
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(e.code)
	_, _ = w.Write(body)
}

// grpcCode maps the HTTP status to the informative Status.code.
func grpcCode(httpCode int) codes.Code {
	switch httpCode {
	case http.StatusBadRequest:
		return codes.InvalidArgument
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusUnsupportedMediaType:
		return codes.Unimplemented
	case http.StatusRequestEntityTooLarge:
		return codes.InvalidArgument
	case http.StatusRequestTimeout:
		return codes.DeadlineExceeded
	case http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	}
	return codes.Internal
}

// UnmarshalJSON decodes an OTLP/JSON body into m: protojson with unknown
// fields ignored, after rewriting hex trace/span ids to the base64 protojson
// wants.
func UnmarshalJSON(body []byte, m proto.Message) error {
	b, err := HexIDsToBase64(body)
	if err != nil {
		return err
	}
	return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(b, m)
}

var idKeys = [][]byte{[]byte(`"traceId"`), []byte(`"spanId"`), []byte(`"parentSpanId"`), []byte(`"trace_id"`), []byte(`"span_id"`), []byte(`"parent_span_id"`)}

func mentionsIDs(body []byte) bool {
	for _, k := range idKeys {
		if bytes.Contains(body, k) {
			return true
		}
	}
	return false
}
