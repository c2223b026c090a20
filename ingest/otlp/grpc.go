package otlp

import (
	"context"
	"log/slog"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	_ "google.golang.org/grpc/encoding/gzip" // OTLP servers MUST accept gzip-compressed requests
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/bucketq/bucketq/internal/metrics"
	"github.com/bucketq/bucketq/producer"
)

// RegisterGRPC registers the OTLP logs, metrics and trace collector services
// on s. Each Export call is stored as one record and answered only once the
// producer committed it. The server's own receive limit (grpc.MaxRecvMsgSize,
// 4 MiB by default) bounds request size.
func RegisterGRPC(s *grpc.Server, app producer.Appender, m *metrics.Metrics, log *slog.Logger) {
	r := newReceiver(app, m, log)
	collogspb.RegisterLogsServiceServer(s, &grpcLogs{r: r})
	colmetricspb.RegisterMetricsServiceServer(s, &grpcMetrics{r: r})
	coltracepb.RegisterTraceServiceServer(s, &grpcTraces{r: r})
}

type grpcLogs struct {
	collogspb.UnimplementedLogsServiceServer
	r *receiver
}

func (g *grpcLogs) Export(ctx context.Context, req *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
	if err := g.r.exportGRPC(ctx, logsSignal, req); err != nil {
		return nil, err
	}
	return &collogspb.ExportLogsServiceResponse{}, nil
}

type grpcMetrics struct {
	colmetricspb.UnimplementedMetricsServiceServer
	r *receiver
}

func (g *grpcMetrics) Export(ctx context.Context, req *colmetricspb.ExportMetricsServiceRequest) (*colmetricspb.ExportMetricsServiceResponse, error) {
	if err := g.r.exportGRPC(ctx, metricsSignal, req); err != nil {
		return nil, err
	}
	return &colmetricspb.ExportMetricsServiceResponse{}, nil
}

type grpcTraces struct {
	coltracepb.UnimplementedTraceServiceServer
	r *receiver
}

func (g *grpcTraces) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	if err := g.r.exportGRPC(ctx, tracesSignal, req); err != nil {
		return nil, err
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (r *receiver) exportGRPC(ctx context.Context, sig *signal, req proto.Message) error {
	_, out, err := r.store(ctx, FrontGRPC, sig, req)
	var st *status.Status
	switch out {
	case outcomeOK:
		r.m.IngestRequests.WithLabelValues(FrontGRPC, codes.OK.String()).Inc()
		return nil
	case outcomeBackpressure:
		st = retryStatus(codes.ResourceExhausted, "bucketq producer memory bound reached, retry later", BackpressureRetryDelay)
	case outcomeCanceled:
		st = status.FromContextError(ctx.Err())
	default:
		st = retryStatus(codes.Unavailable, "bucketq producer could not store the request: "+err.Error(), UnavailableRetryDelay)
	}
	r.m.IngestRequests.WithLabelValues(FrontGRPC, st.Code().String()).Inc()
	return st.Err()
}

// retryStatus returns a status with a RetryInfo detail, which makes
// RESOURCE_EXHAUSTED retryable for OTLP clients and gives UNAVAILABLE a delay.
func retryStatus(c codes.Code, msg string, delay time.Duration) *status.Status {
	st := status.New(c, msg)
	d := durationpb.New(delay)
	if withInfo, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: d}); err == nil {
		return withInfo
	}
	return st
}
