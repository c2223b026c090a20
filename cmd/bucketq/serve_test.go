package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// syncBuffer is a bytes.Buffer safe for the logger and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRunServesAndShutsDown runs `bucketq run` in-process on a directory
// bucket with a file sink: an event posted over HTTP reaches the sink, the
// metrics count manifest writes per role, health and readiness answer, and
// cancelling (the signal) shuts down with exit code 0.
func TestRunServesAndShutsDown(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	sinkFile := filepath.Join(dir, "events.ndjson")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runMain(ctx, []string{"run", "--bucket-dir", filepath.Join(dir, "bucket"), "--listen", addr,
			"--otlp-grpc=", "--otlp-http=", "--sink", "file:" + sinkFile, "--flush-interval", "20ms", "--poll-interval", "20ms"},
			io.Discard, &stderr, func(string) string { return "" })
	}()
	base := "http://" + addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		if resp, err := http.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not serving after 10s:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz = %d %q", code, body)
	}
	ev := `{"specversion":"1.0","id":"run-1","source":"test","type":"t","subject":"c","time":"2025-01-01T00:00:00Z","data":{"n":1}}`
	resp, err := http.Post(base+"/api/v1/events", "application/cloudevents+json", strings.NewReader(ev))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("POST event: %d", resp.StatusCode)
	}
	for {
		b, _ := os.ReadFile(sinkFile)
		if strings.Contains(string(b), `"id":"run-1"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("event never reached the file sink:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, metrics := get(t, base+"/metrics")
	for _, want := range []string{`buffer_manifest_writes{role="producer"}`, `buffer_manifest_writes{role="consumer"}`, "go_goroutines", "process_", `ingest_requests{`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// A corrupt manifest makes the process unready, with the reason.
	manifestFile := filepath.Join(dir, "bucket", "ingest", "manifest")
	good, err := os.ReadFile(manifestFile)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(manifestFile, []byte("garbage"), 0o644)
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "manifest unreadable") {
		t.Errorf("/readyz with a corrupt manifest = %d %q", code, body)
	}
	os.WriteFile(manifestFile, good, 0o644)

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d after the signal:\n%s", code, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no shutdown 15s after the signal:\n%s", stderr.String())
	}
	for _, want := range []string{"shutting down", "producer flushed and committed", "shutdown complete"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, stderr.String())
		}
	}
}

func TestPortInUseExit1(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	code, _, errOut := run(t, nil, "produce", "--bucket-dir", t.TempDir(), "--listen", ln.Addr().String(), "--otlp-grpc=", "--otlp-http=")
	if code != 1 || !strings.Contains(errOut, "bucketq: listen: ") || !strings.Contains(errOut, "address already in use") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}
