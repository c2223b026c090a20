package main

import (
	"bytes"
	"context"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/protobuf/proto"
)

// TestRunExportsNoValuePoints: `bucketq run` converting an OTLP metrics
// request with one valued point and two without a value (a NoRecordedValue
// staleness marker and a NaN gauge) delivers one event and reports the two
// skipped points as buffer_points_skipped_no_value on /metrics, not as dead
// letters.
func TestRunExportsNoValuePoints(t *testing.T) {
	dir := t.TempDir()
	addr, otlpAddr := freeAddr(t), freeAddr(t)
	sinkFile := filepath.Join(dir, "events.ndjson")
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runMain(ctx, []string{"run", "--create-bucket-dir", "--bucket-dir", filepath.Join(dir, "bucket"), "--listen", addr,
			"--otlp-grpc=", "--otlp-http", otlpAddr, "--sink", "file:" + sinkFile, "--flush-interval", "20ms", "--poll-interval", "20ms"},
			io.Discard, &stderr, func(string) string { return "" })
	}()
	defer func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("exit %d:\n%s", code, stderr.String())
			}
		case <-time.After(60 * time.Second):
			t.Errorf("bucketq run did not stop within 60s of the signal")
		}
	}()
	base := "http://" + addr
	waitServing(t, base, &stderr)
	waitServing(t, "http://"+otlpAddr, &stderr)

	const name = "buffer_points_skipped_no_value"
	skipped := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`)
	scrape := func() string {
		t.Helper()
		_, body := get(t, base+"/metrics")
		m := skipped.FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("/metrics lacks %s:\n%s", name, body)
		}
		return m[1]
	}
	if v := scrape(); v != "0" {
		t.Fatalf("%s = %s before any request, want 0", name, v)
	}

	sub := []*commonpb.KeyValue{{Key: "subject", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "c1"}}}}
	point := func(f float64, flags metricspb.DataPointFlags) *metricspb.NumberDataPoint {
		return &metricspb.NumberDataPoint{TimeUnixNano: uint64(time.Now().UnixNano()), Flags: uint32(flags), Attributes: sub,
			Value: &metricspb.NumberDataPoint_AsDouble{AsDouble: f}}
	}
	body, err := proto.Marshal(&colmetricspb.ExportMetricsServiceRequest{ResourceMetrics: []*metricspb.ResourceMetrics{{ScopeMetrics: []*metricspb.ScopeMetrics{{Metrics: []*metricspb.Metric{
		{Name: "tokens", Data: &metricspb.Metric_Sum{Sum: &metricspb.Sum{AggregationTemporality: metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_DELTA, DataPoints: []*metricspb.NumberDataPoint{
			point(3, 0),
			point(math.NaN(), metricspb.DataPointFlags_DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK),
		}}}},
		{Name: "load", Data: &metricspb.Metric_Gauge{Gauge: &metricspb.Gauge{DataPoints: []*metricspb.NumberDataPoint{
			point(math.NaN(), 0),
		}}}},
	}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+otlpAddr+"/v1/metrics", "application/x-protobuf", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/metrics: %d", resp.StatusCode)
	}

	// The valued point reaches the sink; the counter is added in the same
	// conversion, before the event is handed to the sink.
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(sinkFile)
		if n := strings.Count(string(b), "\n"); n >= 1 {
			if n != 1 || !strings.Contains(string(b), "tokens") {
				t.Fatalf("sink got %d lines, want the one event of the valued point:\n%s", n, b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the event never reached the file sink:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if v := scrape(); v != "2" {
		t.Fatalf("%s = %s after a request with two points without a value, want 2", name, v)
	}
	_, all := get(t, base+"/metrics")
	if strings.Contains(all, "buffer_entries_skipped{") {
		t.Errorf("points without a value counted as dead letters:\n%s", all)
	}
}
