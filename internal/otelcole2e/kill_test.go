package otelcole2e

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"gopkg.in/yaml.v3"

	"github.com/bucketq/bucketq/bucket"
	"github.com/bucketq/bucketq/consumer"
	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/consumer/convert/otlpconv"
	"github.com/bucketq/bucketq/consumer/sink"
	"github.com/bucketq/bucketq/internal/openmetertest"
	"github.com/bucketq/bucketq/internal/storetest"
	"github.com/bucketq/bucketq/manifest"
)

// BinEnv names a built collector; unset, the tests build (or reuse) the
// cached bin/otelcol-bucketq with scripts/otelcol.sh path.
const BinEnv = "BUCKETQ_OTELCOL_BIN"

const (
	workers        = 8
	logsPerExport  = 10
	loadBeforeKill = 2 * time.Second
)

// TestSIGKILLLosesNoAcknowledgedExport: 8 clients export logs to the built
// collector (bucketq exporter, default sending_queue, on the S3 test
// server) as fast as they are answered; after 2 s the collector is killed
// with SIGKILL. Every export the collector answered with success must then
// be delivered by the consumer to the fake OpenMeter, each log record as
// one otel.log event with its subject.
func TestSIGKILLLosesNoAcknowledgedExport(t *testing.T) {
	storeYAML := storetest.S3BucketYAML(t)
	bin := collectorBin(t)
	var objectStore map[string]any
	if err := yaml.Unmarshal(storeYAML, &objectStore); err != nil {
		t.Fatal(err)
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	cfg := map[string]any{
		"receivers": map[string]any{"otlp": map[string]any{"protocols": map[string]any{"grpc": map[string]any{"endpoint": addr}}}},
		"exporters": map[string]any{"bucketq": map[string]any{"object_store": objectStore,
			// A slow seal (the cost cap) keeps exports waiting at the
			// kill; with sending_queue.wait_for_result: false this test
			// fails (acknowledged exports queued in memory are lost).
			"min_seal_interval": "500ms"}},
		"service": map[string]any{
			"telemetry": map[string]any{"metrics": map[string]any{"level": "none"}},
			"pipelines": map[string]any{"logs": map[string]any{"receivers": []string{"otlp"}, "exporters": []string{"bucketq"}}},
		},
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "otelcol.yaml")
	b, _ := yaml.Marshal(cfg)
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "otelcol.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			out, _ := os.ReadFile(logf.Name())
			t.Logf("collector log:\n%s", out)
		}
	}()

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := collogspb.NewLogsServiceClient(conn)
	// Wait for the collector to answer.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := client.Export(ctx, &collogspb.ExportLogsServiceRequest{})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("collector not answering after 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Load, then SIGKILL.
	var (
		mu    sync.Mutex
		acked = map[string]string{} // body -> subject
		sent  int
		wg    sync.WaitGroup
	)
	stop := make(chan struct{})
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			subject := fmt.Sprintf("customer-%d", w)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				req, bodies := exportRequest(subject, w, i)
				mu.Lock()
				sent++
				mu.Unlock()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := client.Export(ctx, req)
				cancel()
				if err != nil {
					return // killed (or failing): stop this client
				}
				mu.Lock()
				for _, b := range bodies {
					acked[b] = subject
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(loadBeforeKill)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	close(stop)
	wg.Wait()
	if len(acked) == 0 {
		t.Fatal("no export was acknowledged before the kill")
	}
	t.Logf("%d exports sent, %d log records acknowledged before SIGKILL", sent, len(acked))

	// Consume everything in the bucket.
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
	defer om.Close()
	log := slog.New(slog.DiscardHandler)
	c, err := consumer.New(bkt, manifest.NewQueue(store, "ingest/manifest", manifest.Options{}), reg,
		sink.NewHTTP(om.Endpoint, "", sink.HTTPOptions{}), consumer.Config{PollInterval: 50 * time.Millisecond}, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stopRun := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	var missing int
	for {
		delivered := map[string]string{}
		for _, ev := range om.Events() {
			var d struct {
				Data struct {
					Body string `json:"body"`
				} `json:"data"`
			}
			if err := json.Unmarshal(ev.Raw, &d); err != nil {
				t.Fatal(err)
			}
			if ev.Type != "otel.log" {
				t.Fatalf("event type %q, want otel.log", ev.Type)
			}
			delivered[d.Data.Body] = ev.Subject
		}
		missing = 0
		for body, subject := range acked {
			if got, ok := delivered[body]; !ok {
				missing++
			} else if got != subject {
				t.Fatalf("%s delivered with subject %q, want %q", body, got, subject)
			}
		}
		if missing == 0 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("consumer stopped (%v); %d of %d acknowledged log records not delivered", err, missing, len(acked))
		case <-ctx.Done():
			t.Fatalf("%d of %d acknowledged log records never delivered", missing, len(acked))
		case <-time.After(200 * time.Millisecond):
		}
	}
	stopRun()
	<-done
	t.Logf("all %d acknowledged log records delivered (%d events accepted, %d distinct)", len(acked), om.Accepted(), om.Distinct())
}

// exportRequest is one export of logsPerExport records whose bodies are
// unique ("w<worker>-<export>-<record>").
func exportRequest(subject string, w, i int) (*collogspb.ExportLogsServiceRequest, []string) {
	sl := &logspb.ScopeLogs{}
	bodies := make([]string, logsPerExport)
	now := uint64(time.Now().UnixNano())
	for r := range logsPerExport {
		bodies[r] = fmt.Sprintf("w%d-%d-%d", w, i, r)
		sl.LogRecords = append(sl.LogRecords, &logspb.LogRecord{
			TimeUnixNano: now,
			Body:         &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: bodies[r]}},
			Attributes:   []*commonpb.KeyValue{{Key: "subject", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: subject}}}},
		})
	}
	return &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{ScopeLogs: []*logspb.ScopeLogs{sl}}}}, bodies
}
