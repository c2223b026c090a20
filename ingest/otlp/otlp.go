// Package otlp is the OTLP front door of the producer: it receives OTLP
// logs, metrics and traces over gRPC and HTTP (protobuf or JSON, optionally
// gzip) and appends each Export request as ONE durable record, answering
// success only once the producer has committed it.
//
// Each stored record is the Export*ServiceRequest re-marshalled as binary
// OTLP protobuf (JSON bodies are re-encoded), under the metadata header
// signal 1 metrics / 2 logs / 3 traces, encoding 1 (otlp-protobuf), exactly
// as the opendata OTLP exporter writes them: package otlprecord's encoding,
// which the collector exporter (exporter/bucketqexporter) shares. Requests that carry no log
// record, data point or span are answered with success and not stored
// (the OTLP specification lets receivers ignore empty envelopes).
//
// Error mapping (OTLP specification, "Failures" and "Throttling"):
//
//	producer.ErrBackpressure      gRPC RESOURCE_EXHAUSTED + RetryInfo   HTTP 429 + Retry-After
//	producer.ErrClosed, any other gRPC UNAVAILABLE + RetryInfo          HTTP 503 + Retry-After
//	undecodable body              gRPC INVALID_ARGUMENT + BadRequest    HTTP 400 + google.rpc.Status{BadRequest}
//	body above the size limit     gRPC RESOURCE_EXHAUSTED (grpc-go)     HTTP 413
//	missing or wrong bearer token gRPC UNAUTHENTICATED                  HTTP 401 + google.rpc.Status{UNAUTHENTICATED}
//
// Partial success is never used: a request is stored whole or not at all.
package otlp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/bucketq/bucketq/ingest/ingestmetrics"
	"github.com/bucketq/bucketq/ingest/otlprecord"
	"github.com/bucketq/bucketq/producer"
)

// Front door names used as the "front" label of the ingest metrics.
const (
	FrontGRPC = "otlp-grpc"
	FrontHTTP = "otlp-http"
)

// Retry delays suggested to clients (RetryInfo / Retry-After).
const (
	// BackpressureRetryDelay is suggested when the producer's memory bound
	// is reached: the bound frees up as soon as the next batch commits.
	BackpressureRetryDelay = 1 * time.Second
	// UnavailableRetryDelay is suggested when the producer is shutting down
	// or the object store / manifest write failed.
	UnavailableRetryDelay = 5 * time.Second
)

// signal describes one OTLP signal: its HTTP path and how to make its
// messages. Its records and their header are otlprecord's.
type signal struct {
	name    string
	path    string
	newReq  func() proto.Message
	newResp func() proto.Message
}

var (
	logsSignal = &signal{
		name: "logs", path: "/v1/logs",
		newReq:  func() proto.Message { return &collogspb.ExportLogsServiceRequest{} },
		newResp: func() proto.Message { return &collogspb.ExportLogsServiceResponse{} },
	}
	metricsSignal = &signal{
		name: "metrics", path: "/v1/metrics",
		newReq:  func() proto.Message { return &colmetricspb.ExportMetricsServiceRequest{} },
		newResp: func() proto.Message { return &colmetricspb.ExportMetricsServiceResponse{} },
	}
	tracesSignal = &signal{
		name: "traces", path: "/v1/traces",
		newReq:  func() proto.Message { return &coltracepb.ExportTraceServiceRequest{} },
		newResp: func() proto.Message { return &coltracepb.ExportTraceServiceResponse{} },
	}
)

// CountLogRecords, CountSpans and CountDataPoints count the items of a
// request (otlprecord's, kept here for callers of this package).
var (
	CountLogRecords = otlprecord.CountLogRecords
	CountSpans      = otlprecord.CountSpans
	CountDataPoints = otlprecord.CountDataPoints
)

// outcome classifies the result of storing one request.
type outcome int

const (
	outcomeOK outcome = iota
	outcomeBackpressure
	outcomeUnavailable
	outcomeCanceled
)

// receiver holds what both transports share.
type receiver struct {
	app producer.Appender
	m   *ingestmetrics.Metrics
	log *slog.Logger
	// The counters of each transport, their children resolved once.
	mHTTP, mGRPC *ingestmetrics.Front
}

// front returns the counters of the transport named front.
func (r *receiver) front(front string) *ingestmetrics.Front {
	if front == FrontGRPC {
		return r.mGRPC
	}
	return r.mHTTP
}

func newReceiver(app producer.Appender, m *ingestmetrics.Metrics, log *slog.Logger) *receiver {
	if m == nil {
		m = ingestmetrics.New(nil)
	}
	if log == nil {
		log = slog.Default()
	}
	return &receiver{app: app, m: m, log: log, mHTTP: m.Front(FrontHTTP), mGRPC: m.Front(FrontGRPC)}
}

// store appends one decoded request as one record. It returns the number of
// items (log records, data points, spans) it holds.
func (r *receiver) store(ctx context.Context, front string, sig *signal, req proto.Message) (int, outcome, error) {
	// The one record encoding of OTLP requests, shared with the
	// collector exporter (deterministic: a retried export stores the same
	// bytes, and the event ids derive from them, RFC 0006).
	rec, h, n, err := otlprecord.Encode(req)
	if err != nil {
		// Cannot happen for a message that was just decoded; answer as
		// retryable rather than dropping the client's data.
		return n, outcomeUnavailable, fmt.Errorf("re-marshal %s request: %w", sig.name, err)
	}
	if n == 0 {
		return 0, outcomeOK, nil
	}
	err = r.app.Append(ctx, h, [][]byte{rec})
	switch {
	case err == nil:
		r.front(front).Events(n)
		return n, outcomeOK, nil
	case errors.Is(err, producer.ErrBackpressure):
		return n, outcomeBackpressure, err
	case ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		return n, outcomeCanceled, err
	default:
		r.log.Warn("otlp: append failed", "front", front, "signal", sig.name, "items", n, "bytes", len(rec), "err", err)
		return n, outcomeUnavailable, err
	}
}
