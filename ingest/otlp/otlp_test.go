package otlp

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcgzip "google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/ingest/ingestmetrics"
	"github.com/bucketq/bucketq/producer"
)

// recorder is a fake producer.Appender that records every call.
type recorder struct {
	mu      sync.Mutex
	calls   []appendCall
	err     error
	release chan struct{} // when set, Append waits for it before returning
}

type appendCall struct {
	h       format.Header
	records [][]byte
}

func (r *recorder) Append(ctx context.Context, h format.Header, records [][]byte) error {
	if r.release != nil {
		select {
		case <-r.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	cp := make([][]byte, len(records))
	for i, rec := range records {
		cp[i] = append([]byte(nil), rec...)
	}
	r.calls = append(r.calls, appendCall{h: h, records: cp})
	return nil
}

func (r *recorder) got() []appendCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]appendCall(nil), r.calls...)
}

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

var (
	traceID = []byte{0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c}
	spanID  = []byte{0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74}
	res     = &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", "checkout")}}
)

func logsReq(n int) *collogspb.ExportLogsServiceRequest {
	var recs []*logspb.LogRecord
	for i := 0; i < n; i++ {
		recs = append(recs, &logspb.LogRecord{TimeUnixNano: uint64(1700000000000000000 + i), SeverityText: "INFO",
			Body:       &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "api call"}},
			Attributes: []*commonpb.KeyValue{str("subject", "customer-1")}, TraceId: traceID, SpanId: spanID})
	}
	return &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{Resource: res, ScopeLogs: []*logspb.ScopeLogs{{LogRecords: recs}}}}}
}

func metricsReq() *colmetricspb.ExportMetricsServiceRequest {
	return &colmetricspb.ExportMetricsServiceRequest{ResourceMetrics: []*metricspb.ResourceMetrics{{Resource: res, ScopeMetrics: []*metricspb.ScopeMetrics{{Metrics: []*metricspb.Metric{
		{Name: "requests", Data: &metricspb.Metric_Sum{Sum: &metricspb.Sum{AggregationTemporality: metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_DELTA, IsMonotonic: true,
			DataPoints: []*metricspb.NumberDataPoint{{TimeUnixNano: 2, Value: &metricspb.NumberDataPoint_AsInt{AsInt: 7}}, {TimeUnixNano: 3, Value: &metricspb.NumberDataPoint_AsInt{AsInt: 8}}}}}},
		{Name: "latency", Data: &metricspb.Metric_Histogram{Histogram: &metricspb.Histogram{DataPoints: []*metricspb.HistogramDataPoint{{Count: 3, BucketCounts: []uint64{1, 2}, ExplicitBounds: []float64{10}}}}}},
	}}}}}}
}

func tracesReq() *coltracepb.ExportTraceServiceRequest {
	return &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{Resource: res, ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{
		{TraceId: traceID, SpanId: spanID, Name: "GET /", Kind: tracepb.Span_SPAN_KIND_SERVER, StartTimeUnixNano: 1, EndTimeUnixNano: 5},
	}}}}}}
}

func TestCountItems(t *testing.T) {
	if got := CountLogRecords(logsReq(3)); got != 3 {
		t.Errorf("CountLogRecords = %d, want 3", got)
	}
	if got := CountDataPoints(metricsReq()); got != 3 {
		t.Errorf("CountDataPoints = %d, want 3", got)
	}
	if got := CountSpans(tracesReq()); got != 1 {
		t.Errorf("CountSpans = %d, want 1", got)
	}
}

type signalCase struct {
	path   string
	req    proto.Message
	header format.Header
	items  int
	resp   func() proto.Message
}

func signalCases() []signalCase {
	return []signalCase{
		{"/v1/logs", logsReq(2), format.NewHeader(format.SignalLogs, format.EncodingOTLPProtobuf), 2, func() proto.Message { return &collogspb.ExportLogsServiceResponse{} }},
		{"/v1/metrics", metricsReq(), format.NewHeader(format.SignalMetrics, format.EncodingOTLPProtobuf), 3, func() proto.Message { return &colmetricspb.ExportMetricsServiceResponse{} }},
		{"/v1/traces", tracesReq(), format.NewHeader(format.SignalTraces, format.EncodingOTLPProtobuf), 1, func() proto.Message { return &coltracepb.ExportTraceServiceResponse{} }},
	}
}

func post(t *testing.T, h http.Handler, path, ct, enc string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if enc != "" {
		req.Header.Set("Content-Encoding", enc)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Bytes()
}

// checkStored asserts exactly one Append of one record equal to want.
func checkStored(t *testing.T, rec *recorder, header format.Header, want proto.Message) {
	t.Helper()
	calls := rec.got()
	if len(calls) != 1 || len(calls[0].records) != 1 {
		t.Fatalf("appends = %d (records %v), want one append of one record", len(calls), calls)
	}
	if calls[0].h != header {
		t.Errorf("header = %v, want %v", calls[0].h, header)
	}
	got := want.ProtoReflect().New().Interface()
	if err := proto.Unmarshal(calls[0].records[0], got); err != nil {
		t.Fatalf("stored record is not OTLP protobuf: %v", err)
	}
	if !proto.Equal(got, want) {
		t.Errorf("stored request differs:\n got %v\nwant %v", got, want)
	}
}

func TestHTTPStoresEachSignalOnce(t *testing.T) {
	for _, sc := range signalCases() {
		for _, mode := range []string{"protobuf", "json", "protobuf+gzip", "json+gzip"} {
			t.Run(sc.path+"/"+mode, func(t *testing.T) {
				rec := &recorder{}
				m := ingestmetrics.New(nil)
				h := NewHTTPHandler(rec, HTTPConfig{}, m, nil)
				ct, body := ContentTypeProtobuf, mustProto(t, sc.req)
				if strings.HasPrefix(mode, "json") {
					ct = ContentTypeJSON
					body = otlpJSON(t, sc.req)
				}
				enc := ""
				if strings.HasSuffix(mode, "gzip") {
					enc, body = "gzip", gz(body)
				}
				w := post(t, h, sc.path, ct+"; charset=utf-8", enc, body)
				if w.Code != http.StatusOK {
					t.Fatalf("status %d, body %q", w.Code, w.Body.String())
				}
				if got := w.Header().Get("Content-Type"); got != ct {
					t.Errorf("response Content-Type %q, want %q", got, ct)
				}
				resp := sc.resp()
				if ct == ContentTypeJSON {
					if err := protojson.Unmarshal(w.Body.Bytes(), resp); err != nil {
						t.Errorf("response is not a JSON %T: %v", resp, err)
					}
				} else if err := proto.Unmarshal(w.Body.Bytes(), resp); err != nil {
					t.Errorf("response is not a protobuf %T: %v", resp, err)
				}
				checkStored(t, rec, sc.header, sc.req)
				if got := counterValue(t, m.Requests.WithLabelValues(FrontHTTP, "200")); got != 1 {
					t.Errorf("ingest_requests{otlp-http,200} = %v, want 1", got)
				}
				if got := counterValue(t, m.Events.WithLabelValues(FrontHTTP)); got != float64(sc.items) {
					t.Errorf("ingest_events{otlp-http} = %v, want %d", got, sc.items)
				}
			})
		}
	}
}

func mustProto(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// otlpJSON encodes m as OTLP/JSON: protojson with ids rewritten to hex and
// enums as integers, as OTLP/JSON clients send it.
func otlpJSON(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := protojson.MarshalOptions{UseEnumNumbers: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, id := range [][]byte{traceID, spanID} {
		s = strings.ReplaceAll(s, `"`+b64(id)+`"`, `"`+strings.ToUpper(hexs(id))+`"`)
	}
	if strings.Contains(s, b64(traceID)) {
		t.Fatal("trace id still base64")
	}
	return []byte(s)
}

func TestHTTPJSONHexIDs(t *testing.T) {
	body := `{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"x"}}]},
	  "scopeLogs":[{"logRecords":[{"timeUnixNano":"1700000000000000000","severityNumber":9,"unknownField":true,
	  "traceId":"5b8efff798038103D269B633813FC60C","spanId":"eee19b7ec3c1b174","body":{"stringValue":"hi"}}]}]}]}`
	rec := &recorder{}
	w := post(t, NewHTTPHandler(rec, HTTPConfig{}, nil, nil), "/v1/logs", ContentTypeJSON, "", []byte(body))
	if w.Code != http.StatusOK {
		t.Fatalf("status %d %s", w.Code, w.Body)
	}
	calls := rec.got()
	if len(calls) != 1 {
		t.Fatalf("%d appends", len(calls))
	}
	var got collogspb.ExportLogsServiceRequest
	if err := proto.Unmarshal(calls[0].records[0], &got); err != nil {
		t.Fatal(err)
	}
	lr := got.ResourceLogs[0].ScopeLogs[0].LogRecords[0]
	if !bytes.Equal(lr.TraceId, traceID) || !bytes.Equal(lr.SpanId, spanID) {
		t.Errorf("ids = %x/%x, want %x/%x", lr.TraceId, lr.SpanId, traceID, spanID)
	}
	if lr.SeverityNumber != logspb.SeverityNumber_SEVERITY_NUMBER_INFO || lr.TimeUnixNano != 1700000000000000000 {
		t.Errorf("record = %v", lr)
	}
}

func TestHTTPRejectsBadData(t *testing.T) {
	good := mustProto(t, logsReq(1))
	cases := []struct {
		name, path, ct, enc string
		body                []byte
		code                int
		respCT              string
	}{
		{"garbage protobuf", "/v1/logs", ContentTypeProtobuf, "", []byte{0xff, 0xff, 0xff}, 400, ContentTypeProtobuf},
		{"truncated protobuf", "/v1/logs", ContentTypeProtobuf, "", good[:len(good)-3], 400, ContentTypeProtobuf},
		{"invalid JSON", "/v1/traces", ContentTypeJSON, "", []byte(`{"resourceSpans":[`), 400, ContentTypeJSON},
		{"JSON wrong type", "/v1/metrics", ContentTypeJSON, "", []byte(`{"resourceMetrics":"x"}`), 400, ContentTypeJSON},
		{"non-hex trace id", "/v1/traces", ContentTypeJSON, "", []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz","name":"a"}]}]}]}`), 400, ContentTypeJSON},
		{"short span id", "/v1/traces", ContentTypeJSON, "", []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":"abcd","name":"a"}]}]}]}`), 400, ContentTypeJSON},
		{"bad gzip", "/v1/logs", ContentTypeProtobuf, "gzip", good, 400, ContentTypeProtobuf},
		{"unknown encoding", "/v1/logs", ContentTypeProtobuf, "br", good, 415, ContentTypeProtobuf},
		{"unknown content type", "/v1/logs", "text/plain", "", good, 415, ContentTypeProtobuf},
		{"no content type", "/v1/logs", "", "", good, 415, ContentTypeProtobuf},
		{"unknown path", "/v1/profiles", ContentTypeProtobuf, "", good, 404, ContentTypeProtobuf},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			m := ingestmetrics.New(nil)
			w := post(t, NewHTTPHandler(rec, HTTPConfig{}, m, nil), tc.path, tc.ct, tc.enc, tc.body)
			if w.Code != tc.code {
				t.Fatalf("status %d, want %d (body %q)", w.Code, tc.code, w.Body)
			}
			if n := len(rec.got()); n != 0 {
				t.Errorf("%d appends for a rejected request", n)
			}
			st := decodeStatus(t, w, tc.respCT)
			if st.Message == "" {
				t.Error("Status.message is empty")
			}
			if tc.code == 400 {
				var br errdetails.BadRequest
				if len(st.Details) != 1 || st.Details[0].UnmarshalTo(&br) != nil {
					t.Errorf("400 without a BadRequest detail: %v", st.Details)
				}
			}
			if got := counterValue(t, m.Requests.WithLabelValues(FrontHTTP, itoa(tc.code))); got != 1 {
				t.Errorf("ingest_requests{code=%d} = %v", tc.code, got)
			}
		})
	}
}

func TestHTTPMethodNotAllowed(t *testing.T) {
	rec := &recorder{}
	req := httptest.NewRequest(http.MethodGet, "/v1/logs", nil)
	w := httptest.NewRecorder()
	NewHTTPHandler(rec, HTTPConfig{}, nil, nil).ServeHTTP(w, req)
	if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "POST" {
		t.Errorf("GET: status %d Allow %q", w.Code, w.Header().Get("Allow"))
	}
}

func TestHTTPBodyLimit(t *testing.T) {
	body := mustProto(t, logsReq(50))
	limit := int64(len(body) - 1)
	for _, enc := range []string{"", "gzip"} {
		t.Run("enc="+enc, func(t *testing.T) {
			b := body
			if enc == "gzip" {
				b = gz(body) // compresses below the limit; the decompressed size is over it
				if int64(len(b)) > limit {
					t.Fatalf("gzip body %d not below limit %d", len(b), limit)
				}
			}
			rec := &recorder{}
			w := post(t, NewHTTPHandler(rec, HTTPConfig{MaxBodyBytes: limit}, nil, nil), "/v1/logs", ContentTypeProtobuf, enc, b)
			if w.Code != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d, want 413", w.Code)
			}
			if len(rec.got()) != 0 {
				t.Error("oversized request was stored")
			}
		})
	}
	// Exactly at the limit passes.
	rec := &recorder{}
	if w := post(t, NewHTTPHandler(rec, HTTPConfig{MaxBodyBytes: int64(len(body))}, nil, nil), "/v1/logs", ContentTypeProtobuf, "", body); w.Code != 200 {
		t.Fatalf("at-limit body: status %d", w.Code)
	}
}

func TestHTTPEmptyRequestIsSuccessWithoutRecord(t *testing.T) {
	for _, body := range [][]byte{nil, mustProto(t, &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{Resource: res}}})} {
		rec := &recorder{}
		w := post(t, NewHTTPHandler(rec, HTTPConfig{}, nil, nil), "/v1/logs", ContentTypeProtobuf, "", body)
		if w.Code != 200 {
			t.Fatalf("status %d", w.Code)
		}
		if len(rec.got()) != 0 {
			t.Error("empty request was stored")
		}
	}
}

func TestHTTPDurabilityErrors(t *testing.T) {
	cases := []struct {
		err        error
		code       int
		retryAfter string
	}{
		{producer.ErrBackpressure, http.StatusTooManyRequests, "1"},
		{producer.ErrClosed, http.StatusServiceUnavailable, "5"},
		{errors.New("s3: connection reset"), http.StatusServiceUnavailable, "5"},
		{errors.Join(errors.New("commit"), producer.ErrBackpressure), http.StatusTooManyRequests, "1"},
	}
	for _, tc := range cases {
		for _, ct := range []string{ContentTypeProtobuf, ContentTypeJSON} {
			t.Run(tc.err.Error()+"/"+ct, func(t *testing.T) {
				rec := &recorder{err: tc.err}
				m := ingestmetrics.New(nil)
				body := mustProto(t, tracesReq())
				if ct == ContentTypeJSON {
					body = otlpJSON(t, tracesReq())
				}
				w := post(t, NewHTTPHandler(rec, HTTPConfig{}, m, nil), "/v1/traces", ct, "", body)
				if w.Code != tc.code {
					t.Fatalf("status %d, want %d", w.Code, tc.code)
				}
				if got := w.Header().Get("Retry-After"); got != tc.retryAfter {
					t.Errorf("Retry-After %q, want %q", got, tc.retryAfter)
				}
				decodeStatus(t, w, ct)
				if got := counterValue(t, m.Events.WithLabelValues(FrontHTTP)); got != 0 {
					t.Errorf("ingest_events counted %v for a failed request", got)
				}
				if got := counterValue(t, m.Requests.WithLabelValues(FrontHTTP, itoa(tc.code))); got != 1 {
					t.Errorf("ingest_requests{code=%d} = %v", tc.code, got)
				}
			})
		}
	}
}

func decodeStatus(t *testing.T, w *httptest.ResponseRecorder, ct string) *spb.Status {
	t.Helper()
	if got := w.Header().Get("Content-Type"); got != ct {
		t.Errorf("error Content-Type %q, want %q", got, ct)
	}
	st := &spb.Status{}
	var err error
	if ct == ContentTypeJSON {
		err = protojson.Unmarshal(w.Body.Bytes(), st)
	} else {
		err = proto.Unmarshal(w.Body.Bytes(), st)
	}
	if err != nil {
		t.Fatalf("error body is not a google.rpc.Status (%s): %v: %q", ct, err, w.Body)
	}
	return st
}

// TestHTTPAnswersOnlyAfterAppend: the response waits for Append.
func TestHTTPAnswersOnlyAfterAppend(t *testing.T) {
	rec := &recorder{release: make(chan struct{})}
	srv := httptest.NewServer(NewHTTPHandler(rec, HTTPConfig{}, nil, nil))
	defer srv.Close()
	done := make(chan int, 1)
	go func() {
		resp, err := http.Post(srv.URL+"/v1/logs", ContentTypeProtobuf, bytes.NewReader(mustProto(t, logsReq(1))))
		if err != nil {
			done <- -1
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	select {
	case c := <-done:
		t.Fatalf("answered %d before Append returned", c)
	case <-time.After(150 * time.Millisecond):
	}
	close(rec.release)
	select {
	case c := <-done:
		if c != 200 {
			t.Fatalf("status %d", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no answer after Append returned")
	}
}

func startGRPC(t *testing.T, app producer.Appender, m *ingestmetrics.Metrics, opts ...grpc.ServerOption) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(opts...)
	RegisterGRPC(s, app, m, nil)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func exportGRPC(ctx context.Context, cc *grpc.ClientConn, req proto.Message) error {
	var err error
	switch r := req.(type) {
	case *collogspb.ExportLogsServiceRequest:
		_, err = collogspb.NewLogsServiceClient(cc).Export(ctx, r)
	case *colmetricspb.ExportMetricsServiceRequest:
		_, err = colmetricspb.NewMetricsServiceClient(cc).Export(ctx, r)
	case *coltracepb.ExportTraceServiceRequest:
		_, err = coltracepb.NewTraceServiceClient(cc).Export(ctx, r)
	}
	return err
}

func TestGRPCStoresEachSignalOnce(t *testing.T) {
	for _, sc := range signalCases() {
		t.Run(sc.path, func(t *testing.T) {
			rec := &recorder{}
			m := ingestmetrics.New(nil)
			cc := startGRPC(t, rec, m)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := exportGRPC(ctx, cc, sc.req); err != nil {
				t.Fatal(err)
			}
			checkStored(t, rec, sc.header, sc.req)
			if got := counterValue(t, m.Requests.WithLabelValues(FrontGRPC, "OK")); got != 1 {
				t.Errorf("ingest_requests{otlp-grpc,OK} = %v", got)
			}
			if got := counterValue(t, m.Events.WithLabelValues(FrontGRPC)); got != float64(sc.items) {
				t.Errorf("ingest_events{otlp-grpc} = %v, want %d", got, sc.items)
			}
		})
	}
}

func TestGRPCAcceptsGzip(t *testing.T) {
	rec := &recorder{}
	cc := startGRPC(t, rec, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := collogspb.NewLogsServiceClient(cc).Export(ctx, logsReq(3), grpc.UseCompressor(grpcgzip.Name)); err != nil {
		t.Fatal(err)
	}
	checkStored(t, rec, format.NewHeader(format.SignalLogs, format.EncodingOTLPProtobuf), logsReq(3))
}

func TestGRPCDurabilityErrors(t *testing.T) {
	cases := []struct {
		err   error
		code  codes.Code
		delay time.Duration
	}{
		{producer.ErrBackpressure, codes.ResourceExhausted, BackpressureRetryDelay},
		{producer.ErrClosed, codes.Unavailable, UnavailableRetryDelay},
		{errors.New("manifest: cas store down"), codes.Unavailable, UnavailableRetryDelay},
	}
	for _, tc := range cases {
		t.Run(tc.err.Error(), func(t *testing.T) {
			m := ingestmetrics.New(nil)
			cc := startGRPC(t, &recorder{err: tc.err}, m)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := exportGRPC(ctx, cc, logsReq(1))
			st := status.Convert(err)
			if st.Code() != tc.code {
				t.Fatalf("code %v, want %v (%v)", st.Code(), tc.code, err)
			}
			var ri *errdetails.RetryInfo
			for _, d := range st.Details() {
				if r, ok := d.(*errdetails.RetryInfo); ok {
					ri = r
				}
			}
			if ri == nil || ri.RetryDelay.AsDuration() != tc.delay {
				t.Errorf("RetryInfo = %v, want delay %v", ri, tc.delay)
			}
			if got := counterValue(t, m.Requests.WithLabelValues(FrontGRPC, tc.code.String())); got != 1 {
				t.Errorf("ingest_requests{otlp-grpc,%v} = %v", tc.code, got)
			}
		})
	}
}

func TestGRPCAnswersOnlyAfterAppend(t *testing.T) {
	rec := &recorder{release: make(chan struct{})}
	cc := startGRPC(t, rec, nil)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- exportGRPC(ctx, cc, metricsReq())
	}()
	select {
	case err := <-done:
		t.Fatalf("answered (%v) before Append returned", err)
	case <-time.After(150 * time.Millisecond):
	}
	close(rec.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(rec.got()) != 1 {
		t.Fatal("not stored")
	}
}

// TestRetriedExportStoresTheSameBytes: the ids of events converted from an
// OTLP record derive from the record's bytes (RFC 0006), so a client that
// retries an export, in any encoding or over either transport, must get
// byte-identical records stored.
func TestRetriedExportStoresTheSameBytes(t *testing.T) {
	for _, sc := range signalCases() {
		t.Run(sc.path, func(t *testing.T) {
			rec := &recorder{}
			h := NewHTTPHandler(rec, HTTPConfig{}, ingestmetrics.New(nil), nil)
			for _, mode := range []string{"protobuf", "json", "protobuf+gzip", "protobuf"} {
				ct, body := ContentTypeProtobuf, mustProto(t, sc.req)
				if strings.HasPrefix(mode, "json") {
					ct, body = ContentTypeJSON, otlpJSON(t, sc.req)
				}
				enc := ""
				if strings.HasSuffix(mode, "gzip") {
					enc, body = "gzip", gz(body)
				}
				if w := post(t, h, sc.path, ct, enc, body); w.Code != http.StatusOK {
					t.Fatalf("%s: status %d, body %q", mode, w.Code, w.Body.String())
				}
			}
			cc := startGRPC(t, rec, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := exportGRPC(ctx, cc, sc.req); err != nil {
				t.Fatal(err)
			}
			calls := rec.got()
			if len(calls) != 5 {
				t.Fatalf("%d records stored, want 5", len(calls))
			}
			for i, c := range calls[1:] {
				if !bytes.Equal(c.records[0], calls[0].records[0]) {
					t.Fatalf("attempt %d stored different bytes than attempt 0:\n%x\n%x", i+1, c.records[0], calls[0].records[0])
				}
			}
		})
	}
}

// TestHTTPGzipVariants: x-gzip is gzip; a gzip stream whose deflate data is
// corrupt is a 400 that says so, and nothing is stored.
func TestHTTPGzipVariants(t *testing.T) {
	good := gz(mustProto(t, logsReq(2)))
	bad := append([]byte(nil), good...)
	for i := 10; i < len(bad)-8; i++ {
		bad[i] = 0xff // wreck the deflate stream, keep the gzip header
	}
	for _, tc := range []struct {
		name, enc string
		body      []byte
		code      int
		msg       string
	}{
		{"x-gzip", "x-gzip", good, http.StatusOK, ""},
		{"GZIP", "GZIP", good, http.StatusOK, ""},
		{"corrupt deflate", "gzip", bad, http.StatusBadRequest, "cannot decompress gzip body"},
		{"br", "br", good, http.StatusUnsupportedMediaType, "unsupported Content-Encoding"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			h := NewHTTPHandler(rec, HTTPConfig{}, ingestmetrics.New(nil), nil)
			w := post(t, h, "/v1/logs", ContentTypeProtobuf, tc.enc, tc.body)
			if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.msg) {
				t.Fatalf("status %d body %q, want %d containing %q", w.Code, w.Body.String(), tc.code, tc.msg)
			}
			if n := len(rec.got()); (tc.code == http.StatusOK) != (n == 1) {
				t.Fatalf("%d records stored", n)
			}
		})
	}
}
