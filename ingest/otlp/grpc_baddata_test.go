package otlp

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcgzip "google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/status"

	"github.com/bucketq/bucketq/ingest/ingestmetrics"
)

// rawCodec sends the request bytes as they are, so a test can send what
// no generated client would: bytes that are not the request message.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("rawCodec: %T", v)
	}
	return *b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: %T", v)
	}
	*b = append((*b)[:0], data...)
	return nil
}

func (rawCodec) Name() string { return "proto" }

// An Export body that does not decode is answered INVALID_ARGUMENT with a
// BadRequest detail (not grpc-go's INTERNAL), for every signal, plain or
// gzip; nothing is stored and the request is counted under that code.
func TestGRPCRejectsBadDataWithInvalidArgument(t *testing.T) {
	good := mustProto(t, logsReq(2))
	methods := []string{collogspb.LogsService_Export_FullMethodName, colmetricspb.MetricsService_Export_FullMethodName, coltracepb.TraceService_Export_FullMethodName}
	bodies := []struct {
		name string
		body []byte
	}{
		{"garbage", []byte{0xff, 0xff, 0xff}},
		{"truncated", good[:len(good)-3]},
	}
	rec := &recorder{}
	m := ingestmetrics.New(nil)
	cc := startGRPC(t, rec, m)
	want := 0
	for _, method := range methods {
		for _, b := range bodies {
			for _, gz := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/gzip=%v", method, b.name, gz), func(t *testing.T) {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					opts := []grpc.CallOption{grpc.ForceCodec(rawCodec{})}
					if gz {
						opts = append(opts, grpc.UseCompressor(grpcgzip.Name))
					}
					in, out := b.body, []byte(nil)
					err := cc.Invoke(ctx, method, &in, &out, opts...)
					want++
					st := status.Convert(err)
					if st.Code() != codes.InvalidArgument {
						t.Fatalf("code %v (%v), want InvalidArgument", st.Code(), err)
					}
					if !strings.Contains(st.Message(), "cannot decode OTLP") {
						t.Errorf("message %q does not say what failed", st.Message())
					}
					var found bool
					for _, d := range st.Details() {
						if _, ok := d.(*errdetails.BadRequest); ok {
							found = true
						}
					}
					if !found {
						t.Errorf("no BadRequest detail: %v", st.Details())
					}
				})
			}
		}
	}
	if n := len(rec.got()); n != 0 {
		t.Errorf("%d appends for rejected requests", n)
	}
	if got := counterValue(t, m.Requests.WithLabelValues(FrontGRPC, codes.InvalidArgument.String())); got != float64(want) {
		t.Errorf("ingest_requests{code=InvalidArgument} = %v, want %d", got, want)
	}
	// A good request on the same server still works.
	if err := exportGRPC(context.Background(), cc, logsReq(1)); err != nil {
		t.Fatalf("good request after bad ones: %v", err)
	}
}
