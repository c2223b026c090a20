package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	collogs "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logs "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TestTokenCheckedBeforeMessageSize: on OTLP/gRPC the token is checked
// before the message is received, so an unauthenticated export larger
// than max_body_bytes is refused Unauthenticated (not ResourceExhausted,
// which tells the client to shrink and retry), while an authenticated one
// still hits the size limit; and the refused tokens of OTLP/gRPC and
// OTLP/HTTP are counted in ingest_requests like the CloudEvents 401s.
func TestTokenCheckedBeforeMessageSize(t *testing.T) {
	dir := t.TempDir()
	addr, otlpHTTP, otlpGRPC := freeAddr(t), freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runMain(ctx, []string{"produce", "--create-bucket-dir", "--bucket-dir", filepath.Join(dir, "bucket"), "--listen", addr,
			"--otlp-http", otlpHTTP, "--otlp-grpc", otlpGRPC, "--token", "s3cret", "--max-body-bytes", "1MiB", "--flush-interval", "10ms"},
			io.Discard, &stderr, func(string) string { return "" })
	}()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("produce did not stop")
		}
	}()
	base := "http://" + addr
	waitServing(t, base, &stderr)

	conn, err := grpc.NewClient(otlpGRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := collogs.NewLogsServiceClient(conn)
	big := &collogs.ExportLogsServiceRequest{ResourceLogs: []*logs.ResourceLogs{{ScopeLogs: []*logs.ScopeLogs{{LogRecords: []*logs.LogRecord{{
		TimeUnixNano: 1, Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: strings.Repeat("x", 2<<20)}},
	}}}}}}}
	export := func(authz string) error {
		cctx, ccancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer ccancel()
		if authz != "" {
			cctx = metadata.AppendToOutgoingContext(cctx, "authorization", authz)
		}
		_, err := client.Export(cctx, big)
		return err
	}
	for _, c := range []struct {
		authz string
		want  codes.Code
	}{{"", codes.Unauthenticated}, {"Bearer wrong", codes.Unauthenticated}, {"Bearer s3cret", codes.ResourceExhausted}} {
		if err := export(c.authz); status.Code(err) != c.want {
			t.Errorf("otlp-grpc 2 MiB export with authorization %q: %v, want %v", c.authz, err, c.want)
		}
	}

	for _, authz := range []string{"", "Bearer wrong", "Basic czNjcmV0"} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+otlpHTTP+"/v1/logs", bytes.NewReader([]byte{}))
		req.Header.Set("Content-Type", "application/x-protobuf")
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("otlp-http with Authorization %q: %d, want 401", authz, resp.StatusCode)
		}
	}

	_, body := get(t, base+"/metrics")
	for _, want := range []string{
		`ingest_requests{code="Unauthenticated",front="otlp-grpc"} 2`,
		`ingest_requests{code="401",front="otlp-http"} 3`,
	} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want) + `( |$)`).MatchString(body) {
			t.Errorf("/metrics lacks %s:\n%s", want, grepLines(body, "ingest_requests"))
		}
	}
}

// grepLines is the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
