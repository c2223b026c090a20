package auth

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	collogs "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func TestAllow(t *testing.T) {
	two := New([]string{"alpha", "beta", ""})
	off := New(nil)
	cases := []struct {
		name   string
		tokens Tokens
		header string
		want   bool
	}{
		{"off allows anything", off, "", true},
		{"first token", two, "Bearer alpha", true},
		{"second token", two, "Bearer beta", true},
		{"scheme is case-insensitive", two, "bearer alpha", true},
		{"surrounding space trimmed", two, "Bearer  alpha ", true},
		{"missing header", two, "", false},
		{"wrong token", two, "Bearer gamma", false},
		{"prefix of a token", two, "Bearer alph", false},
		{"empty token", two, "Bearer ", false},
		{"empty configured token is ignored", two, "Bearer", false},
		{"other scheme", two, "Basic YWxwaGE=", false},
		{"token without scheme", two, "alpha", false},
	}
	for _, c := range cases {
		if got := c.tokens.Allow(c.header); got != c.want {
			t.Errorf("%s: Allow(%q) = %v, want %v", c.name, c.header, got, c.want)
		}
	}
	if off.Enabled() || !two.Enabled() {
		t.Errorf("Enabled: off %v, two %v", off.Enabled(), two.Enabled())
	}
}

func TestHTTPWrapper(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	h := New([]string{"k"}).HTTP(next, nil)
	for _, c := range []struct {
		header string
		want   int
	}{{"", 401}, {"Bearer x", 401}, {"Bearer k", http.StatusTeapot}} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/v1/logs", nil)
		if c.header != "" {
			req.Header.Set("Authorization", c.header)
		}
		h.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("Authorization %q: %d, want %d", c.header, rec.Code, c.want)
		}
		if c.want == 401 && rec.Header().Get("WWW-Authenticate") != "Bearer" {
			t.Errorf("401 without WWW-Authenticate: Bearer")
		}
	}
	if New(nil).HTTP(next, nil) == nil || len(New(nil).GRPC(nil)) != 0 {
		t.Error("auth off must pass requests through and add no gRPC options")
	}
}

// acceptLogs is an OTLP logs service that accepts every export.
type acceptLogs struct {
	collogs.UnimplementedLogsServiceServer
	calls atomic.Int64
}

func (a *acceptLogs) Export(context.Context, *collogs.ExportLogsServiceRequest) (*collogs.ExportLogsServiceResponse, error) {
	a.calls.Add(1)
	return &collogs.ExportLogsServiceResponse{}, nil
}

// TestGRPCChecksTokenBeforeMessage: on a real gRPC server with a 1 KiB
// receive limit, a call without the token is refused Unauthenticated
// whatever its size (the check reads the headers, not the message), one
// with the token is held to the size limit, and rejected is called once per
// refused call.
func TestGRPCChecksTokenBeforeMessage(t *testing.T) {
	var rejected atomic.Int64
	srv := grpc.NewServer(append([]grpc.ServerOption{grpc.MaxRecvMsgSize(1 << 10)}, New([]string{"k"}).GRPC(func() { rejected.Add(1) })...)...)
	svc := &acceptLogs{}
	collogs.RegisterLogsServiceServer(srv, svc)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := collogs.NewLogsServiceClient(conn)
	req := func(size int) *collogs.ExportLogsServiceRequest {
		return &collogs.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{SchemaUrl: strings.Repeat("x", size)}}}
	}
	for _, c := range []struct {
		authz string
		size  int
		want  codes.Code
	}{
		{"", 4 << 10, codes.Unauthenticated},
		{"Bearer x", 4 << 10, codes.Unauthenticated},
		{"", 10, codes.Unauthenticated},
		{"Bearer k", 4 << 10, codes.ResourceExhausted},
		{"Bearer k", 10, codes.OK},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if c.authz != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", c.authz)
		}
		_, err := client.Export(ctx, req(c.size))
		cancel()
		if got := status.Code(err); got != c.want {
			t.Errorf("authorization %q, %d bytes: %v, want %v", c.authz, c.size, err, c.want)
		}
	}
	if n := rejected.Load(); n != 3 {
		t.Errorf("rejected called %d times, want 3", n)
	}
	if n := svc.calls.Load(); n != 1 {
		t.Errorf("the service ran %d times, want 1", n)
	}
}
