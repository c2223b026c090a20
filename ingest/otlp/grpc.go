package otlp

import (
	"context"
	"fmt"
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

	"github.com/bucketq/bucketq/ingest/ingestmetrics"
	"github.com/bucketq/bucketq/producer"
)

// RegisterGRPC registers the OTLP logs, metrics and trace collector services
// on s. Each Export call is stored as one record and answered only once the
// producer committed it. The server's own receive limit (grpc.MaxRecvMsgSize,
// 4 MiB by default) bounds request size.
func RegisterGRPC(s *grpc.Server, app producer.Appender, m *ingestmetrics.Metrics, log *slog.Logger) {
	r := newReceiver(app, m, log)
	s.RegisterService(withDecodeErrors(&collogspb.LogsService_ServiceDesc, r, logsSignal,
		func() proto.Message { return new(collogspb.ExportLogsServiceRequest) },
		func(srv any, ctx context.Context, req proto.Message) (any, error) {
			return srv.(collogspb.LogsServiceServer).Export(ctx, req.(*collogspb.ExportLogsServiceRequest))
		}), &grpcLogs{r: r})
	s.RegisterService(withDecodeErrors(&colmetricspb.MetricsService_ServiceDesc, r, metricsSignal,
		func() proto.Message { return new(colmetricspb.ExportMetricsServiceRequest) },
		func(srv any, ctx context.Context, req proto.Message) (any, error) {
			return srv.(colmetricspb.MetricsServiceServer).Export(ctx, req.(*colmetricspb.ExportMetricsServiceRequest))
		}), &grpcMetrics{r: r})
	s.RegisterService(withDecodeErrors(&coltracepb.TraceService_ServiceDesc, r, tracesSignal,
		func() proto.Message { return new(coltracepb.ExportTraceServiceRequest) },
		func(srv any, ctx context.Context, req proto.Message) (any, error) {
			return srv.(coltracepb.TraceServiceServer).Export(ctx, req.(*coltracepb.ExportTraceServiceRequest))
		}), &grpcTraces{r: r})
}

// UnauthenticatedGRPC is the rejected callback of auth.Tokens.GRPC for the
// OTLP/gRPC server: it counts each call refused for its token in
// ingest_requests with front otlp-grpc and code Unauthenticated, as the
// server's other answers are counted by their gRPC code.
func UnauthenticatedGRPC(m *ingestmetrics.Metrics) func() {
	return func() { m.Requests.WithLabelValues(FrontGRPC, codes.Unauthenticated.String()).Inc() }
}

// withDecodeErrors returns a copy of the generated service description
// whose Export handler answers a request body that cannot be decoded with
// INVALID_ARGUMENT and a BadRequest detail (the OTLP specification's code
// for bad data, not retryable). grpc-go itself answers INTERNAL when its
// codec fails to unmarshal, and writes that status before the handler can
// change it; so the handler hands grpc a rawRequest, which cannot fail,
// and unmarshals the request itself. Everything else is what the generated
// handler does.
func withDecodeErrors(desc *grpc.ServiceDesc, r *receiver, sig *signal, newReq func() proto.Message,
	export func(srv any, ctx context.Context, req proto.Message) (any, error)) *grpc.ServiceDesc {
	d := *desc
	d.Methods = make([]grpc.MethodDesc, len(desc.Methods))
	copy(d.Methods, desc.Methods)
	for i := range d.Methods {
		if d.Methods[i].MethodName != "Export" {
			continue
		}
		fullMethod := "/" + d.ServiceName + "/" + d.Methods[i].MethodName
		d.Methods[i].Handler = func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := &rawRequest{msg: newReq()}
			if err := dec(in); err != nil {
				return nil, err // size limit, decompression, cancelled stream: grpc-go's status
			}
			if in.err != nil {
				return nil, r.decodeError(sig, in.err)
			}
			if interceptor == nil {
				return export(srv, ctx, in.msg)
			}
			info := &grpc.UnaryServerInfo{Server: srv, FullMethod: fullMethod}
			return interceptor(ctx, in.msg, info, func(ctx context.Context, req any) (any, error) {
				return export(srv, ctx, req.(proto.Message))
			})
		}
	}
	return &d
}

// rawRequest is what the Export handlers give grpc-go's proto codec: a
// (legacy-API) message whose Unmarshal decodes the wire bytes into msg and
// keeps the error for the handler instead of failing the codec. proto
// copies what it keeps, so msg does not alias grpc's receive buffer.
type rawRequest struct {
	msg proto.Message
	err error
}

func (q *rawRequest) Reset()         {}
func (q *rawRequest) String() string { return "OTLP export request" }
func (q *rawRequest) ProtoMessage()  {}

// Unmarshal is called by the protobuf runtime with the request bytes.
func (q *rawRequest) Unmarshal(b []byte) error {
	q.err = proto.Unmarshal(b, q.msg)
	return nil
}

// decodeError is the INVALID_ARGUMENT answer to a request that does not
// decode.
func (r *receiver) decodeError(sig *signal, err error) error {
	msg := fmt.Sprintf("cannot decode OTLP %s request: %v", sig.name, err)
	bad := status.New(codes.InvalidArgument, msg)
	if withDetail, derr := bad.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "body", Description: msg}}}); derr == nil {
		bad = withDetail
	}
	r.mGRPC.RequestCode(codes.InvalidArgument.String())
	return bad.Err()
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
		r.mGRPC.RequestCode(codes.OK.String())
		return nil
	case outcomeBackpressure:
		st = retryStatus(codes.ResourceExhausted, "bucketq producer memory bound reached, retry later", BackpressureRetryDelay)
	case outcomeCanceled:
		st = status.FromContextError(ctx.Err())
	default:
		st = retryStatus(codes.Unavailable, "the request could not be stored durably, retry it: "+err.Error(), UnavailableRetryDelay)
	}
	r.mGRPC.RequestCode(st.Code().String())
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
