package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thanos-io/objstore"

	"github.com/bucketq/bucketq/cmd/bucketq/internal/config"
	"github.com/bucketq/bucketq/consumer"
	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/internal/childproc"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/producer"
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

// readBatch reads and decodes the batch object name, failing the test
// if it cannot.
func readBatch(t *testing.T, bkt objstore.BucketReader, name string) *format.Batch {
	t.Helper()
	rc, err := bkt.Get(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	batch, err := format.DecodeBatch(b)
	if err != nil {
		t.Fatalf("batch %s: %v", name, err)
	}
	return batch
}

// syncBuffer is a bytes.Buffer safe for the logger and the test.
// startChild starts bin with args in a child that dies with the test
// (childproc), its stdout and stderr in one buffer; exited closes once it
// has been waited for.
func startChild(t *testing.T, bin string, args ...string) (*exec.Cmd, *syncBuffer, chan struct{}) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	buf := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = buf, buf
	if err := childproc.Start(cmd); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	return cmd, buf, exited
}

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
		done <- runMain(ctx, []string{"run", "--create-bucket-dir", "--bucket-dir", filepath.Join(dir, "bucket"), "--listen", addr,
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
	// Ready once the consumer holds the queue's lease (it fences after
	// the server starts).
	for {
		code, body := get(t, base+"/readyz")
		if code == 200 {
			break
		}
		if code != 503 || !strings.Contains(body, "consumer not ready: fencing the queue") || time.Now().After(deadline) {
			t.Fatalf("/readyz = %d %q", code, body)
		}
		time.Sleep(10 * time.Millisecond)
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
	// A corrupt manifest makes the process unready, with the reason. The
	// producer and consumer read the manifest meanwhile, so it is replaced
	// by rename: a truncated file would read as an empty manifest (epoch 0)
	// and fence the consumer. The consumer may also rewrite the manifest (a
	// dequeue) just before the garbage lands and replace it: then the probe
	// saw a good manifest, and the check is tried again.
	manifestFile := filepath.Join(dir, "bucket", "ingest", "manifest")
	replace := func(b []byte) {
		t.Helper()
		tmp := filepath.Join(dir, "manifest.tmp")
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, manifestFile); err != nil {
			t.Fatal(err)
		}
	}
	for retryUntil := time.Now().Add(10 * time.Second); ; {
		good, err := os.ReadFile(manifestFile)
		if err != nil {
			t.Fatal(err)
		}
		replace([]byte("garbage"))
		code, body := get(t, base+"/readyz")
		now, _ := os.ReadFile(manifestFile)
		if string(now) != "garbage" && time.Now().Before(retryUntil) {
			continue // overwritten by the consumer; do not restore a stale copy
		}
		if code != 503 || !strings.Contains(body, "manifest unreadable") {
			t.Errorf("/readyz with a corrupt manifest = %d %q", code, body)
		}
		replace(good)
		break
	}

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

// waitServing polls /healthz until the server answers.
func waitServing(t *testing.T, base string, stderr *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if resp, err := http.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not serving after 20s:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestShutdownFlushesInFlightRequest: with a 30s flush interval, a request
// waiting on the open batch when the signal comes is answered 204 and
// committed, and the process exits 0, long before the interval would have
// sealed the batch (shutdown seals it at once). Run for both compressions,
// which also checks that --compression reaches the batch file.
func TestShutdownFlushesInFlightRequest(t *testing.T) {
	const flushInterval = 30 * time.Second
	for _, tc := range []struct {
		name string
		args []string
		want format.Compression
	}{
		{"default zstd", nil, format.CompressionZstd},
		{"none", []string{"--compression", "none"}, format.CompressionNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			bucketDir := filepath.Join(dir, "bucket")
			addr := freeAddr(t)
			base := "http://" + addr
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var stderr syncBuffer
			done := make(chan int, 1)
			args := append([]string{"produce", "--create-bucket-dir", "--bucket-dir", bucketDir, "--listen", addr, "--otlp-grpc=", "--otlp-http=",
				"--flush-interval", flushInterval.String(), "--min-seal-interval", "1h", "--shutdown-timeout", "40s"}, tc.args...)
			go func() { done <- runMain(ctx, args, io.Discard, &stderr, func(string) string { return "" }) }()
			waitServing(t, base, &stderr)

			type result struct {
				code int
				err  error
			}
			answered := make(chan result, 1)
			ev := `{"specversion":"1.0","id":"shutdown-1","source":"test","type":"t","subject":"c","time":"2025-01-01T00:00:00Z","data":{"n":1}}`
			go func() {
				resp, err := http.Post(base+"/api/v1/events", "application/cloudevents+json", strings.NewReader(ev))
				if err != nil {
					answered <- result{err: err}
					return
				}
				resp.Body.Close()
				answered <- result{code: resp.StatusCode}
			}()
			// In flight: the producer holds its bytes in the open batch.
			deadline := time.Now().Add(20 * time.Second)
			for {
				_, m := get(t, base+"/metrics")
				if strings.Contains(m, "\nproducer_buffered_bytes ") && !strings.Contains(m, "\nproducer_buffered_bytes 0\n") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the request never reached the producer:\n%s", stderr.String())
				}
				time.Sleep(10 * time.Millisecond)
			}
			select {
			case r := <-answered:
				t.Fatalf("request answered (%d, %v) before the signal, with a %s flush interval", r.code, r.err, flushInterval)
			default:
			}

			signalled := time.Now()
			cancel()
			// Half the flush interval: generous for a slow machine, and
			// far below what waiting for the interval would take.
			limit := flushInterval / 2
			select {
			case r := <-answered:
				if r.err != nil || r.code != http.StatusNoContent {
					t.Fatalf("in-flight request got %d, %v; want 204:\n%s", r.code, r.err, stderr.String())
				}
			case <-time.After(limit):
				t.Fatalf("in-flight request not answered %s after the signal:\n%s", limit, stderr.String())
			}
			select {
			case code := <-done:
				if code != 0 {
					t.Fatalf("exit code %d after the signal:\n%s", code, stderr.String())
				}
			case <-time.After(limit - time.Since(signalled)):
				t.Fatalf("no exit %s after the signal:\n%s", limit, stderr.String())
			}

			// The answered event is committed.
			mb, err := os.ReadFile(filepath.Join(bucketDir, filepath.FromSlash(producer.DefaultManifestPath)))
			if err != nil {
				t.Fatal(err)
			}
			man, err := manifest.Decode(mb)
			if err != nil {
				t.Fatal(err)
			}
			var found bool
			for _, e := range man.Entries {
				bb, err := os.ReadFile(filepath.Join(bucketDir, filepath.FromSlash(e.Location)))
				if err != nil {
					t.Fatal(err)
				}
				batch, err := format.DecodeBatch(bb)
				if err != nil {
					t.Fatalf("%s: %v", e.Location, err)
				}
				if batch.Footer.Compression != tc.want {
					t.Errorf("%s written with %s, want %s", e.Location, batch.Footer.Compression, tc.want)
				}
				for _, r := range batch.Records {
					found = found || strings.Contains(string(r), `"id":"shutdown-1"`)
				}
			}
			if !found {
				t.Fatalf("the 204-answered event is not in the manifest (%d entries):\n%s", len(man.Entries), stderr.String())
			}
		})
	}
}

// TestConsumerConfigCarriesEveryKey: each consumer key of the command
// reaches consumer.Config (a key parsed and then dropped is a silent lie).
func TestConsumerConfigCarriesEveryKey(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		check func(consumer.Config) bool
	}{
		{[]string{"--data-prefix", "x/data"}, func(c consumer.Config) bool { return c.DataPrefix == "x/data" }},
		{[]string{"--dead-letter-prefix", "x/dl"}, func(c consumer.Config) bool { return c.DeadLetterPrefix == "x/dl" }},
		{[]string{"--poll-interval", "7s"}, func(c consumer.Config) bool { return c.PollInterval == 7*time.Second }},
		{[]string{"--dequeue-interval", "3s"}, func(c consumer.Config) bool { return c.DequeueInterval == 3*time.Second }},
		{[]string{"--prefetch", "9"}, func(c consumer.Config) bool { return c.Prefetch == 9 }},
		{[]string{"--sink-batch-size", "77"}, func(c consumer.Config) bool { return c.SinkBatchSize == 77 }},
		{[]string{"--gc-interval", "11m"}, func(c consumer.Config) bool { return c.GCInterval == 11*time.Minute }},
		{[]string{"--gc-grace-period", "13m"}, func(c consumer.Config) bool { return c.GCGracePeriod == 13*time.Minute }},
		{[]string{"--max-consecutive-poison", "5"}, func(c consumer.Config) bool { return c.MaxConsecutivePoison == 5 }},
		// 0 turns the breaker off: the library's "negative", not its "default".
		{[]string{"--max-consecutive-poison", "0"}, func(c consumer.Config) bool { return c.MaxConsecutivePoison < 0 }},
		{nil, func(c consumer.Config) bool { return c.MaxConsecutivePoison == 100 }},
	} {
		fl := config.NewFlags("consume", config.RolesConsume)
		if _, err := fl.Parse(tc.args); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		cfg, err := fl.Load(func(string) string { return "" })
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if c := consumerConfig(cfg); !tc.check(c) {
			t.Errorf("%v: consumer config %+v", tc.args, c)
		}
	}
}
