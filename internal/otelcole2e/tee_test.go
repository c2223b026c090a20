package otelcole2e

import (
	"context"
	"errors"
	"fmt"
	"sync"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

// tee is an OTLP/gRPC server that forwards each export request, unchanged,
// to every target in turn, and answers success only if all of them did.
// Failures are kept for failed.
type tee struct {
	targets []*grpc.ClientConn

	mu  sync.Mutex
	err error
}

func (t *tee) register(s *grpc.Server) {
	collogspb.RegisterLogsServiceServer(s, teeLogs{tee: t})
	colmetricspb.RegisterMetricsServiceServer(s, teeMetrics{tee: t})
	coltracepb.RegisterTraceServiceServer(s, teeTraces{tee: t})
}

func (t *tee) note(signal string, i int, err error) error {
	err = fmt.Errorf("%s export to target %d: %w", signal, i, err)
	t.mu.Lock()
	t.err = errors.Join(t.err, err)
	t.mu.Unlock()
	return err
}

func (t *tee) failed() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

type teeLogs struct {
	*tee
	collogspb.UnimplementedLogsServiceServer
}

func (t teeLogs) Export(ctx context.Context, req *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
	for i, c := range t.targets {
		if _, err := collogspb.NewLogsServiceClient(c).Export(ctx, req); err != nil {
			return nil, t.note("logs", i, err)
		}
	}
	return &collogspb.ExportLogsServiceResponse{}, nil
}

type teeMetrics struct {
	*tee
	colmetricspb.UnimplementedMetricsServiceServer
}

func (t teeMetrics) Export(ctx context.Context, req *colmetricspb.ExportMetricsServiceRequest) (*colmetricspb.ExportMetricsServiceResponse, error) {
	for i, c := range t.targets {
		if _, err := colmetricspb.NewMetricsServiceClient(c).Export(ctx, req); err != nil {
			return nil, t.note("metrics", i, err)
		}
	}
	return &colmetricspb.ExportMetricsServiceResponse{}, nil
}

type teeTraces struct {
	*tee
	coltracepb.UnimplementedTraceServiceServer
}

func (t teeTraces) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	for i, c := range t.targets {
		if _, err := coltracepb.NewTraceServiceClient(c).Export(ctx, req); err != nil {
			return nil, t.note("traces", i, err)
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}
