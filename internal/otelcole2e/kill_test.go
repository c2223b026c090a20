package otelcole2e

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/bucketq/bucketq/internal/openmetertest"
	"github.com/bucketq/bucketq/internal/storetest"
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
	// A slow seal (the cost cap) keeps exports waiting at the kill; with
	// sending_queue.wait_for_result: false this test fails (acknowledged
	// exports queued in memory are lost).
	coll := startCollector(t, bin, storeYAML, []string{"logs"}, map[string]any{"min_seal_interval": "500ms"})
	addr := coll.addr

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
	coll.kill(t)
	close(stop)
	wg.Wait()
	if len(acked) == 0 {
		t.Fatal("no export was acknowledged before the kill")
	}
	t.Logf("%d exports sent, %d log records acknowledged before SIGKILL", sent, len(acked))

	// Consume everything in the bucket.
	om := consumeAll(t, storeYAML, func(events []openmetertest.Event) bool {
		delivered := map[string]string{}
		for _, ev := range events {
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
		for body, subject := range acked {
			if got, ok := delivered[body]; !ok {
				return false
			} else if got != subject {
				t.Fatalf("%s delivered with subject %q, want %q", body, got, subject)
			}
		}
		return true
	})
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
