package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReadyzFollowsCommits runs `bucketq produce` on a directory bucket
// whose data prefix cannot be written (a file stands where its directory
// must be): while a request waits on a batch that cannot be uploaded,
// /readyz turns 503 once readiness_failure_threshold has passed, naming the
// failure, and /healthz stays 200; once the directory can be written, the
// request is answered 2xx and /readyz is 200 again.
func TestReadyzFollowsCommits(t *testing.T) {
	dir := t.TempDir()
	bucket := filepath.Join(dir, "bucket")
	if err := os.MkdirAll(filepath.Join(bucket, "ingest"), 0o755); err != nil {
		t.Fatal(err)
	}
	blocker := filepath.Join(bucket, "ingest", "data")
	if err := os.WriteFile(blocker, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runMain(ctx, []string{"produce", "--bucket-dir", bucket, "--listen", addr, "--otlp-grpc=", "--otlp-http=",
			"--flush-interval", "10ms", "--readiness-failure-threshold", "200ms"}, io.Discard, &stderr, func(string) string { return "" })
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("exit %d:\n%s", code, stderr.String())
		}
	}()
	base := "http://" + addr
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s:\n%s", what, stderr.String())
			}
		}
	}
	waitUntil("the server", func() bool {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	if code, body := get(t, base+"/readyz"); code != 200 {
		t.Fatalf("before any failure: /readyz = %d %q", code, body)
	}

	posted := make(chan int, 1)
	go func() {
		ev := `{"specversion":"1.0","id":"r-1","source":"test","type":"t","subject":"c","time":"2025-01-01T00:00:00Z","data":{}}`
		resp, err := http.Post(base+"/api/v1/events", "application/cloudevents+json", strings.NewReader(ev))
		if err != nil {
			posted <- -1
			return
		}
		resp.Body.Close()
		posted <- resp.StatusCode
	}()
	var body string
	waitUntil("/readyz 503", func() bool {
		var code int
		code, body = get(t, base+"/readyz")
		return code == http.StatusServiceUnavailable
	})
	if !strings.Contains(body, "no batch committed") || !strings.Contains(body, "upload") {
		t.Errorf("/readyz body %q does not say uploads fail", body)
	}
	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz = %d while the bucket fails; liveness must not follow the store", code)
	}

	// The bucket recovers.
	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-posted:
		if code/100 != 2 {
			t.Fatalf("POST answered %d after the bucket recovered", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("POST not answered after the bucket recovered")
	}
	if code, body := get(t, base+"/readyz"); code != 200 {
		t.Errorf("after a commit: /readyz = %d %q", code, body)
	}
}
