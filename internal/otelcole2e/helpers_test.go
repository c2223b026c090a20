package otelcole2e

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bucketq/bucketq/bucket"
	"github.com/bucketq/bucketq/consumer"
	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/consumer/convert/otlpconv"
	"github.com/bucketq/bucketq/consumer/sink"
	"github.com/bucketq/bucketq/internal/openmetertest"
	"github.com/bucketq/bucketq/manifest"
)

// TelemetrygenEnv names a telemetrygen binary (scripts/otelcol.sh
// telemetrygen installs and prints one).
const TelemetrygenEnv = "BUCKETQ_TELEMETRYGEN_BIN"

var toolMu sync.Mutex

// tool returns the binary named by env, else builds it on first use with
// `scripts/otelcol.sh <sub>` (cached in the tool directory and bin/; the
// first build of the collector takes minutes) and returns its path. Call
// it after the S3 check, so a run without the test services skips without
// building anything.
func tool(t *testing.T, env, sub string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	toolMu.Lock()
	defer toolMu.Unlock()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cmd := exec.Command(filepath.Join(root, "scripts", "otelcol.sh"), sub)
	cmd.Dir = root
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/otelcol.sh %s: %v\n%s", sub, err, stderr.String())
	}
	p := strings.TrimSpace(string(out))
	if d := time.Since(start); d > 5*time.Second {
		t.Logf("scripts/otelcol.sh %s built %s in %s", sub, p, d.Round(time.Second))
	}
	os.Setenv(env, p) // the next test reuses it without running the script
	return p
}

func collectorBin(t *testing.T) string    { return tool(t, BinEnv, "path") }
func telemetrygenBin(t *testing.T) string { return tool(t, TelemetrygenEnv, "telemetrygen") }

// consumeAll runs bucketq's consumer (default OTLP conversion) on the
// queue in storeYAML into a fresh fake OpenMeter until done(events) holds,
// and returns the server. It fails t after a minute or if the consumer stops.
func consumeAll(t *testing.T, storeYAML []byte, done func([]openmetertest.Event) bool) *openmetertest.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bkt, store, err := bucket.Open(ctx, storeYAML, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bkt.Close()
	convs, err := otlpconv.Compile(otlpconv.Config{})
	if err != nil {
		t.Fatal(err)
	}
	reg := convert.NewRegistry()
	convs.Register(reg)
	om := openmetertest.New(openmetertest.Options{})
	t.Cleanup(om.Close)
	c, err := consumer.New(bkt, manifest.NewQueue(store, "ingest/manifest", manifest.Options{}), reg,
		sink.NewHTTP(om.Endpoint, "", sink.HTTPOptions{}), consumer.Config{PollInterval: 50 * time.Millisecond}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stopRun := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- c.Run(runCtx) }()
	defer func() { stopRun(); <-errc }()
	for !done(om.Events()) {
		select {
		case err := <-errc:
			errc <- err
			t.Fatalf("consumer stopped: %v", err)
		case <-ctx.Done():
			t.Fatalf("not all events delivered within a minute (%d delivered)", len(om.Events()))
		case <-time.After(100 * time.Millisecond):
		}
	}
	return om
}
