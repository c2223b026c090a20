package otelcole2e

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"gopkg.in/yaml.v3"

	"github.com/bucketq/bucketq/bucket"
	"github.com/bucketq/bucketq/ingest/otlp"
	"github.com/bucketq/bucketq/internal/openmetertest"
	"github.com/bucketq/bucketq/internal/storetest"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/producer"
)

// Each telemetrygen run: how many items, with which subject.
const (
	tgLogs    = 40
	tgMetrics = 20
	tgTraces  = 10 // one parent and one child span each
)

// TestTelemetrygenThroughCollectorAndProduce: telemetrygen sends logs,
// metrics (a `subject` data-point attribute) and traces over OTLP/gRPC to a
// tee, which forwards every request unchanged to the built collector
// (otlp receiver -> bucketq exporter -> bucket A on the S3 test server)
// and to bucketq produce's OTLP/gRPC receiver (ingest/otlp on a producer
// -> bucket B). The consumer then delivers each bucket to its own fake
// OpenMeter: every generated item arrives as one CloudEvent with the
// expected type (otel.log, the metric name "gen", otel.span) and subject,
// and both buckets give the same set of event ids.
func TestTelemetrygenThroughCollectorAndProduce(t *testing.T) {
	yamlA, yamlB := storetest.S3BucketYAML(t), storetest.S3BucketYAML(t)
	bin, tg := collectorBin(t), telemetrygenBin(t)
	ctx := context.Background()

	// The collector on bucket A, all three signals.
	collAddr := startCollector(t, bin, yamlA, []string{"logs", "metrics", "traces"}, nil).addr
	collConn, err := grpc.NewClient(collAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer collConn.Close()

	// bucketq produce's OTLP/gRPC receiver on bucket B.
	bktB, storeB, err := bucket.Open(ctx, yamlB, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bktB.Close()
	prod, err := producer.New(bktB, manifest.NewQueue(storeB, producer.DefaultManifestPath, manifest.Options{}),
		producer.Config{MinSealInterval: producer.AutoMinSealInterval(true)}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	prodAddr := serve(t, func(s *grpc.Server) { otlp.RegisterGRPC(s, prod, nil, slog.New(slog.DiscardHandler)) })
	prodConn, err := grpc.NewClient(prodAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer prodConn.Close()

	// The tee telemetrygen talks to: the collector first, then produce.
	tee := &tee{targets: []*grpc.ClientConn{collConn, prodConn}}
	teeAddr := serve(t, tee.register)

	common := []string{"--otlp-endpoint", teeAddr, "--otlp-insecure", "--workers", "1", "--rate", "0"}
	runTelemetrygen(t, tg, append([]string{"logs", "--logs", fmt.Sprint(tgLogs), "--telemetry-attributes", `subject="tg-logs"`}, common...)...)
	runTelemetrygen(t, tg, append([]string{"metrics", "--metrics", fmt.Sprint(tgMetrics), "--metric-type", "Sum", "--telemetry-attributes", `subject="tg-metrics"`}, common...)...)
	runTelemetrygen(t, tg, append([]string{"traces", "--traces", fmt.Sprint(tgTraces), "--child-spans", "1", "--telemetry-attributes", `subject="tg-traces"`}, common...)...)
	if err := tee.failed(); err != nil {
		t.Fatalf("an export failed: %v", err)
	}
	if err := prod.Close(ctx); err != nil {
		t.Fatal(err)
	}

	want := map[string]int{"otel.log/tg-logs": tgLogs, "gen/tg-metrics": tgMetrics, "otel.span/tg-traces": 2 * tgTraces}
	total := tgLogs + tgMetrics + 2*tgTraces
	enough := func(evs []openmetertest.Event) bool { return len(distinct(evs)) >= total }
	omA := consumeAll(t, yamlA, enough)
	omB := consumeAll(t, yamlB, enough)
	idsA, idsB := distinct(omA.Events()), distinct(omB.Events())
	if got := countByTypeSubject(idsA); !equalCounts(got, want) {
		t.Errorf("collector bucket: events by type/subject %v, want %v", got, want)
	}
	if got := countByTypeSubject(idsB); !equalCounts(got, want) {
		t.Errorf("bucketq produce bucket: events by type/subject %v, want %v", got, want)
	}
	var onlyA, onlyB []string
	for id, ts := range idsA {
		if tsB, ok := idsB[id]; !ok || tsB != ts {
			onlyA = append(onlyA, id+" "+ts)
		}
	}
	for id, ts := range idsB {
		if _, ok := idsA[id]; !ok {
			onlyB = append(onlyB, id+" "+ts)
		}
	}
	sort.Strings(onlyA)
	sort.Strings(onlyB)
	if len(onlyA)+len(onlyB) > 0 {
		t.Errorf("event ids differ: %d only (or differently) from the collector %v, %d only from bucketq produce %v",
			len(onlyA), head(onlyA), len(onlyB), head(onlyB))
	}
	t.Logf("%d events from each bucket, same ids: %v", len(idsA), countByTypeSubject(idsA))
}

// distinct maps each event id to "type/subject".
func distinct(evs []openmetertest.Event) map[string]string {
	m := make(map[string]string, len(evs))
	for _, ev := range evs {
		m[ev.ID] = ev.Type + "/" + ev.Subject
	}
	return m
}

func countByTypeSubject(ids map[string]string) map[string]int {
	m := map[string]int{}
	for _, ts := range ids {
		m[ts]++
	}
	return m
}

func equalCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func head(s []string) []string {
	if len(s) > 5 {
		return s[:5]
	}
	return s
}

func runTelemetrygen(t *testing.T, tg string, args ...string) {
	t.Helper()
	out, err := exec.Command(tg, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("telemetrygen %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// serve starts a gRPC server on a free loopback port, stopped at cleanup.
func serve(t *testing.T, register func(*grpc.Server)) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	register(s)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

// collectorProc is a collector started by startCollector.
type collectorProc struct {
	addr   string // its OTLP/gRPC address
	cmd    *exec.Cmd
	done   chan struct{} // closed when it has exited
	err    error         // cmd.Wait's result, once done is closed
	killed bool
}

// kill sends SIGKILL and waits for the process to end; the cleanup then
// expects no clean exit.
func (c *collectorProc) kill(t *testing.T) {
	t.Helper()
	c.killed = true
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-c.done
}

// startCollector runs bin with the bucketq exporter on the bucket of
// storeYAML for the given pipelines (otlp receiver, no processors) and
// extra exporter keys, and waits until its OTLP/gRPC port answers. At
// cleanup a collector that was not killed gets SIGTERM and must exit
// cleanly; its log is printed when t failed.
func startCollector(t *testing.T, bin string, storeYAML []byte, signals []string, extra map[string]any) *collectorProc {
	t.Helper()
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
	exp := map[string]any{"object_store": objectStore}
	for k, v := range extra {
		exp[k] = v
	}
	pipelines := map[string]any{}
	for _, s := range signals {
		pipelines[s] = map[string]any{"receivers": []string{"otlp"}, "exporters": []string{"bucketq"}}
	}
	cfg := map[string]any{
		"receivers": map[string]any{"otlp": map[string]any{"protocols": map[string]any{"grpc": map[string]any{"endpoint": addr}}}},
		"exporters": map[string]any{"bucketq": exp},
		"service": map[string]any{
			"telemetry": map[string]any{"metrics": map[string]any{"level": "none"}},
			"pipelines": pipelines,
		},
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "otelcol.yaml")
	b, _ := yaml.Marshal(cfg)
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "otelcol.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	c := &collectorProc{addr: addr, cmd: exec.Command(bin, "--config", cfgPath), done: make(chan struct{})}
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.err = c.cmd.Wait(); logf.Close(); close(c.done) }()
	t.Cleanup(func() {
		if !c.killed {
			_ = c.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-c.done:
				if c.err != nil {
					t.Errorf("collector exit after SIGTERM: %v", c.err)
				}
			case <-time.After(time.Minute):
				_ = c.cmd.Process.Kill()
				t.Error("collector did not stop within a minute of SIGTERM")
			}
		}
		if t.Failed() {
			out, _ := os.ReadFile(logPath)
			t.Logf("collector log:\n%s", out)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return c
		}
		select {
		case <-c.done:
			t.Fatalf("collector exited at start: %v", c.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("collector not listening after 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
