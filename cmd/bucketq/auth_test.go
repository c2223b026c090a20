package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	collogs "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	logs "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/bucketq/bucketq/cmd/bucketq/internal/config"
)

// TestTokensProtectEveryFrontDoor: with --token, the CloudEvents endpoint,
// OTLP/HTTP and OTLP/gRPC all refuse requests without the token and accept
// requests with it.
func TestTokensProtectEveryFrontDoor(t *testing.T) {
	dir := t.TempDir()
	addr, otlpHTTP, otlpGRPC := freeAddr(t), freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runMain(ctx, []string{"produce", "--create-bucket-dir", "--bucket-dir", filepath.Join(dir, "bucket"), "--listen", addr,
			"--otlp-http", otlpHTTP, "--otlp-grpc", otlpGRPC, "--token", "s3cret", "--flush-interval", "10ms"},
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
	deadline := time.Now().Add(10 * time.Second)
	for {
		if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not serving after 10s:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}

	otlpBody, _ := proto.Marshal(&collogs.ExportLogsServiceRequest{ResourceLogs: []*logs.ResourceLogs{{
		ScopeLogs: []*logs.ScopeLogs{{LogRecords: []*logs.LogRecord{{TimeUnixNano: 1}}}}}}})
	event := `{"specversion":"1.0","id":"a-1","source":"t","type":"t","subject":"c"}`
	post := func(url, ctype string, body []byte, auth string) int {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", url, err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized && !strings.EqualFold(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("POST %s: 401 without WWW-Authenticate: Bearer", url)
		}
		return resp.StatusCode
	}
	for _, c := range []struct {
		name, url, ctype string
		body             []byte
	}{
		{"cloudevents", "http://" + addr + "/api/v1/events", "application/cloudevents+json", []byte(event)},
		{"otlp-http", "http://" + otlpHTTP + "/v1/logs", "application/x-protobuf", otlpBody},
	} {
		for _, a := range []struct {
			header string
			ok     bool
		}{{"", false}, {"Bearer wrong", false}, {"Basic czNjcmV0", false}, {"Bearer s3cret", true}} {
			code := post(c.url, c.ctype, c.body, a.header)
			if a.ok && code/100 != 2 || !a.ok && code != http.StatusUnauthorized {
				t.Errorf("%s with Authorization %q: status %d", c.name, a.header, code)
			}
		}
	}

	conn, err := grpc.NewClient(otlpGRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := collogs.NewLogsServiceClient(conn)
	req := &collogs.ExportLogsServiceRequest{}
	proto.Unmarshal(otlpBody, req)
	for _, a := range []struct {
		md   string
		want codes.Code
	}{{"", codes.Unauthenticated}, {"Bearer wrong", codes.Unauthenticated}, {"Bearer s3cret", codes.OK}} {
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		if a.md != "" {
			cctx = metadata.AppendToOutgoingContext(cctx, "authorization", a.md)
		}
		_, err := client.Export(cctx, req)
		ccancel()
		if got := status.Code(err); got != a.want {
			t.Errorf("otlp-grpc with authorization %q: %v, want %v", a.md, err, a.want)
		}
	}
	// The start-up log says so, naming every front door.
	want := `msg="authentication enabled" tokens=1 front_doors=http-events,otlp-grpc,otlp-http`
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(stderr.String(), want); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("start-up log lacks %q:\n%s", want, stderr.String())
			break
		}
	}
}

// TestStartupLogSaysWhetherAuthenticationIsOn: the start-up log names the
// open front doors and whether they check tokens, and warns when they do
// not (no tokens used to mean no authentication without a word), and when
// an http(s) sink gets no token.
func TestStartupLogSaysWhetherAuthenticationIsOn(t *testing.T) {
	for _, tc := range []struct {
		name  string
		roles config.Role
		cfg   config.Config
		want  []string // lines, in order; none = no output
	}{
		{"tokens, every door", config.RolesProduce, config.Config{Listen: "a:1", OTLPGRPC: "a:2", OTLPHTTP: "a:3", Tokens: []string{"x", "y"}},
			[]string{`level=INFO msg="authentication enabled" tokens=2 front_doors=http-events,otlp-grpc,otlp-http`}},
		{"no tokens", config.RolesProduce, config.Config{Listen: "a:1", OTLPGRPC: "a:2", OTLPHTTP: "a:3"},
			[]string{`level=WARN msg="authentication disabled: no tokens configured (--token, key tokens); every request is accepted" front_doors=http-events,otlp-grpc,otlp-http`}},
		{"no tokens, OTLP only", config.RolesProduce, config.Config{OTLPGRPC: "a:2"},
			[]string{`level=WARN msg="authentication disabled: no tokens configured (--token, key tokens); every request is accepted" front_doors=otlp-grpc`}},
		{"tokens, no listener", config.RolesProduce, config.Config{Tokens: []string{"x"}}, nil},
		{"run, http sink without token", config.RolesRun, config.Config{Listen: "a:1", Tokens: []string{"x"}, Sink: "https://om.example/api/v1/events"},
			[]string{`level=INFO msg="authentication enabled" tokens=1 front_doors=http-events`,
				`level=WARN msg="sink authentication disabled: no sink_token configured (--sink-token, key sink_token, env BUCKETQ_SINK_TOKEN); requests carry no Authorization header" sink=https://om.example/api/v1/events`}},
		{"consume, http sink with token", config.RolesConsume, config.Config{Listen: "a:1", Sink: "http://om/api/v1/events", SinkToken: "t"}, nil},
		{"consume, stdout sink", config.RolesConsume, config.Config{Listen: "a:1", Sink: "stdout"}, nil},
	} {
		var buf bytes.Buffer
		log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}))
		logAuthentication(log, tc.roles, &tc.cfg)
		var got []string
		if s := strings.TrimSpace(buf.String()); s != "" {
			got = strings.Split(s, "\n")
		}
		if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}
