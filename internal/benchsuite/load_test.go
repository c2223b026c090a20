package benchsuite

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/thanos-io/objstore"
	collogs "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/protobuf/proto"

	"github.com/bucketq/bucketq/internal/openmetertest"
)

// The generated events are what the benchmarks claim: valid OpenMeter
// CloudEvents of about 250 bytes, all different, ids as asked, and the
// body is exactly the array of the returned events.
func TestEventBatch(t *testing.T) {
	body, evs := EventBatch("c7-r3", 500, 42)
	if len(evs) != 500 {
		t.Fatalf("%d events, want 500", len(evs))
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(body, &raws); err != nil {
		t.Fatalf("body is not a JSON array: %v", err)
	}
	total, seen := 0, map[string]bool{}
	for i, ev := range evs {
		if !bytes.Equal(bytes.TrimSpace(raws[i]), ev) {
			t.Fatalf("event %d is not the body's element %d:\n%s\n%s", i, i, ev, raws[i])
		}
		got, err := openmetertest.Validate(ev)
		if err != nil {
			t.Fatalf("event %d is not a valid OpenMeter event: %v\n%s", i, err, ev)
		}
		if want := fmt.Sprintf("c7-r3-%d", i); got.ID != want {
			t.Fatalf("event %d id %q, want %q", i, got.ID, want)
		}
		total += len(ev)
		seen[string(ev)] = true
	}
	if avg := total / len(evs); avg < 220 || avg > 290 {
		t.Errorf("average event %d bytes, want about 250", avg)
	}
	if len(seen) != len(evs) {
		t.Errorf("%d distinct events of %d", len(seen), len(evs))
	}
	again, _ := EventBatch("c7-r3", 500, 42)
	if !bytes.Equal(again, body) {
		t.Error("EventBatch is not deterministic")
	}
}

func TestOTLPLogsRequest(t *testing.T) {
	b := OTLPLogsRequest(500, 1)
	var req collogs.ExportLogsServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		t.Fatal(err)
	}
	if n := len(req.ResourceLogs[0].ScopeLogs[0].LogRecords); n != 500 {
		t.Fatalf("%d log records, want 500", n)
	}
	if per := len(b) / 500; per < 100 || per > 400 {
		t.Errorf("%d bytes per log record, want a realistic 100..400", per)
	}
}

func TestCountObjects(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		bad  bool
	}{
		{`[]`, 0, false},
		{` [{"a":1}] `, 1, false},
		{`[{"a":{"b":[{},{}]}},{"s":"}{\"{"}]`, 2, false},
		{`[{"a":1},{"b":[1,2,{"c":3}]},{}]`, 3, false},
		{`{"a":1}`, 0, true},
		{`[{"a":1]`, 0, true},
		{`[{"a":1}}]`, 0, true},
	} {
		got, err := CountObjects([]byte(tc.in))
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("CountObjects(%s) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func TestCountingSink(t *testing.T) {
	s := NewCountingSink()
	defer s.Close()
	body, _ := EventBatch("x", 37, 3)
	resp, err := http.Post(s.Endpoint, "application/cloudevents-batch+json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if !s.WaitEvents(37, time.Second) || s.Events.Load() != 37 {
		t.Fatalf("counted %d events, want 37", s.Events.Load())
	}
	if s.WaitEvents(38, 50*time.Millisecond) {
		t.Fatal("WaitEvents(38) reported success after 37 events")
	}
	resp, err = http.Post(s.Endpoint, "application/json", strings.NewReader(`{"not":"an array"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("non-array body answered %d, want 400", resp.StatusCode)
	}
}

func TestRSS(t *testing.T) {
	if err := ResetPeakRSS(); err != nil {
		t.Skipf("cannot reset VmHWM here: %v", err)
	}
	before, err := PeakRSS()
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 64<<20)
	for i := range big {
		big[i] = byte(i)
	}
	cur, err := RSS()
	if err != nil {
		t.Fatal(err)
	}
	after, err := PeakRSS()
	if err != nil {
		t.Fatal(err)
	}
	if after-before < 60<<20 {
		t.Errorf("peak RSS grew %d bytes after touching 64 MiB", after-before)
	}
	if cur <= 0 || cur > after {
		t.Errorf("RSS %d (%v) not in (0, peak %d]", cur, err, after)
	}
	_ = big[len(big)-1]
}

func TestQuantile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50}, {0.99, 99}, {1, 100}, {0.001, 1}} {
		if got := Quantile(d, tc.q); got != tc.want {
			t.Errorf("Quantile(%v) = %d, want %d", tc.q, got, tc.want)
		}
	}
	if Quantile(nil, 0.5) != 0 {
		t.Error("Quantile of nothing is not 0")
	}
}

// The counting bucket must hand the provider the reader it got: a wrapped
// reader loses its size, and minio-go then buffers a huge part per upload.
func TestCountingBucketKeepsReader(t *testing.T) {
	inner := &readerTypeBucket{Bucket: objstore.NewInMemBucket()}
	c := &CountingBucket{Bucket: inner}
	if err := c.Upload(context.Background(), "a", bytes.NewReader(make([]byte, 1234))); err != nil {
		t.Fatal(err)
	}
	if inner.got != "*bytes.Reader" {
		t.Errorf("provider got a %s, want the *bytes.Reader", inner.got)
	}
	if c.Uploads.Load() != 1 || c.UploadBytes.Load() != 1234 {
		t.Errorf("counted %d uploads of %d bytes, want 1 of 1234", c.Uploads.Load(), c.UploadBytes.Load())
	}
	if err := c.Upload(context.Background(), "b", io.MultiReader()); err == nil {
		t.Error("a reader of unknown size was accepted")
	}
}

type readerTypeBucket struct {
	objstore.Bucket
	got string
}

func (b *readerTypeBucket) Upload(ctx context.Context, name string, r io.Reader, opts ...objstore.ObjectUploadOption) error {
	b.got = fmt.Sprintf("%T", r)
	return b.Bucket.Upload(ctx, name, r, opts...)
}

// TestOtherProcessUsage: PeakRSSOf and ProcessCPUOf read another process
// (here a child that touches 64 MiB and burns CPU) from /proc/<pid>.
func TestOtherProcessUsage(t *testing.T) {
	if os.Getenv("BENCHSUITE_CHILD") == "1" {
		big := make([]byte, 64<<20)
		for i := range big {
			big[i] = byte(i)
		}
		for processCPU() < 300*time.Millisecond { // CPU time, not wall time: robust under load
		}
		fmt.Println("ready", big[len(big)-1])
		_, _ = io.ReadAll(os.Stdin) // until the parent closes stdin
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestOtherProcessUsage$")
	cmd.Env = append(os.Environ(), "BENCHSUITE_CHILD=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready") {
		t.Fatalf("child said %q (%v)", line, err)
	}
	peak, err := PeakRSSOf(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if peak < 64<<20 {
		t.Errorf("child peak RSS %d bytes, it touched 64 MiB", peak)
	}
	if self, err := PeakRSSOf(os.Getpid()); err != nil || self <= 0 {
		t.Errorf("own peak RSS %d (%v)", self, err)
	}
	cpu, err := ProcessCPUOf(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if cpu < 290*time.Millisecond {
		t.Errorf("child CPU %v, it spun until it had used 300ms", cpu)
	}
	if _, err := PeakRSSOf(-1); err == nil {
		t.Error("PeakRSSOf(-1): no error")
	}
}
