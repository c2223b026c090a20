package main

import (
	"context"
	"fmt"
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
	base, waitUntil, _ := startReadyzProducer(t, bucket, "--readiness-failure-threshold", "200ms")
	if code, body := get(t, base+"/readyz"); code != 200 {
		t.Fatalf("before any failure: /readyz = %d %q", code, body)
	}

	posted := make(chan int, 1)
	go postEventAsync(base, "r-1", posted)
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

// TestReadyzPartitions runs `bucketq produce` with partitions: 2 on a
// directory bucket whose data prefixes can be blocked (a file where the
// directory must be) and checks the rule of partition.Spreader.Ready:
// /readyz fails only when every partition fails, naming each, while a
// request finds a partition that works (the spreader leaves a home failing
// for readiness_failure_threshold); a damaged manifest of one partition
// does not make the process unready.
func TestReadyzPartitions(t *testing.T) {
	const threshold = 200 * time.Millisecond
	for _, tc := range []struct {
		name    string
		home    string
		block   []string // data prefixes blocked at the start
		damage  string   // a manifest overwritten with garbage
		posts   int      // requests posted, one after the other, threshold apart
		answers int      // of them answered 2xx while blocked
		want503 string   // /readyz body once they were posted; "" for 200
	}{
		{name: "one partition failing", home: "0", block: []string{"ingest/data"}, posts: 2, answers: 1},
		{name: "every partition failing", home: "0", block: []string{"ingest/data", "ingest/data-0001"}, posts: 2,
			want503: "producer not ready: every partition failing (0, 1): partition 0: no batch committed for"},
		{name: "partition 0's manifest damaged", home: "1", damage: "ingest/manifest", posts: 1, answers: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bucket := filepath.Join(t.TempDir(), "bucket")
			if err := os.MkdirAll(filepath.Join(bucket, "ingest"), 0o755); err != nil {
				t.Fatal(err)
			}
			for _, b := range append(append([]string(nil), tc.block...), tc.damage) {
				if b != "" {
					if err := os.WriteFile(filepath.Join(bucket, filepath.FromSlash(b)), []byte("not a directory, not a manifest"), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			base, waitUntil, stderr := startReadyzProducer(t, bucket,
				"--partitions", "2", "--partition", tc.home, "--readiness-failure-threshold", threshold.String())
			if code, body := get(t, base+"/readyz"); code != 200 {
				t.Fatalf("before any request: /readyz = %d %q", code, body)
			}
			answered := make(chan int, tc.posts)
			for i := range tc.posts {
				go postEventAsync(base, fmt.Sprintf("r-%d", i), answered)
				time.Sleep(2 * threshold) // its partition, if blocked, is failing for the threshold
			}
			ok := 0
			// A generous bound: a loaded CI machine may take seconds to
			// commit; what is tested is which requests are answered.
			for collect := time.After(20 * time.Second); ok < tc.answers; {
				select {
				case code := <-answered:
					if code/100 != 2 {
						t.Fatalf("POST answered %d while blocked", code)
					}
					ok++
				case <-collect:
					t.Fatalf("%d of %d requests answered while blocked, want %d:\n%s", ok, tc.posts, tc.answers, stderr.String())
				}
			}
			if tc.want503 != "" {
				var body string
				waitUntil("/readyz 503", func() bool {
					var code int
					code, body = get(t, base+"/readyz")
					return code == http.StatusServiceUnavailable
				})
				if !strings.Contains(body, tc.want503) || !strings.Contains(body, "partition 1: no batch committed") {
					t.Errorf("/readyz body %q, want %q and partition 1 named", body, tc.want503)
				}
			} else {
				for range 5 {
					if code, body := get(t, base+"/readyz"); code != 200 {
						t.Fatalf("/readyz = %d %q, want 200: a partition still takes commits", code, body)
					}
					time.Sleep(threshold / 2)
				}
			}
			// The bucket recovers: every request is answered 2xx, and the
			// process is ready.
			for _, b := range tc.block {
				if err := os.Remove(filepath.Join(bucket, filepath.FromSlash(b))); err != nil {
					t.Fatal(err)
				}
			}
			for ; ok < tc.posts; ok++ {
				select {
				case code := <-answered:
					if code/100 != 2 {
						t.Fatalf("POST answered %d after the bucket recovered", code)
					}
				case <-time.After(30 * time.Second):
					t.Fatal("POST not answered after the bucket recovered")
				}
			}
			waitUntil("/readyz 200 after recovery", func() bool {
				code, _ := get(t, base+"/readyz")
				return code == 200
			})
		})
	}
}

// startReadyzProducer runs `bucketq produce` on the directory bucket with
// a 10ms flush interval and args, until the test ends (when it must have
// exited 0), and waits until it serves. It returns its base URL, a
// waitUntil that fails the test, with the producer's log, after 20 s, and
// the log.
func startReadyzProducer(t *testing.T, bucket string, args ...string) (string, func(what string, cond func() bool), *syncBuffer) {
	t.Helper()
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	stderr := &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- runMain(ctx, append([]string{"produce", "--bucket-dir", bucket, "--listen", addr, "--otlp-grpc=", "--otlp-http=",
			"--flush-interval", "10ms"}, args...), io.Discard, stderr, func(string) string { return "" })
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("exit %d:\n%s", code, stderr.String())
		}
	})
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
	return base, waitUntil, stderr
}

// postEventAsync posts one CloudEvent with id to base and sends the status
// code (-1: no answer) to answered.
func postEventAsync(base, id string, answered chan<- int) {
	ev := fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"test","type":"t","subject":"c","time":"2025-01-01T00:00:00Z","data":{}}`, id)
	resp, err := http.Post(base+"/api/v1/events", "application/cloudevents+json", strings.NewReader(ev))
	if err != nil {
		answered <- -1
		return
	}
	resp.Body.Close()
	answered <- resp.StatusCode
}
