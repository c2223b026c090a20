package benchsuite

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/thanos-io/objstore"
	collogs "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	common "go.opentelemetry.io/proto/otlp/common/v1"
	logs "go.opentelemetry.io/proto/otlp/logs/v1"
	resource "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"

	"github.com/bucketq/bucketq/manifest/cas"
)

var (
	eventTypes = []string{"api-calls", "llm-tokens", "storage", "compute-seconds"}
	methods    = []string{"GET", "POST", "PUT", "DELETE"}
	routes     = []string{"/v1/orders", "/v1/orders/{id}", "/v1/customers/{id}/invoices", "/v2/search"}
	models     = []string{"gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "llama-3.1-70b"}
	regions    = []string{"eu-west-1", "us-east-1", "ap-southeast-2"}
	sources    = []string{"gateway-eu-1", "gateway-eu-2", "gateway-us-1", "billing-agent", "llm-proxy"}
)

// AppendEvent appends one realistic CloudEvent of about 250 bytes with the
// given id to dst: varied type, source, subject, time and data, all drawn
// from r.
func AppendEvent(dst []byte, id string, r *rand.Rand, t time.Time) []byte {
	typ := eventTypes[r.IntN(len(eventTypes))]
	dst = fmt.Appendf(dst, `{"specversion":"1.0","type":"%s","id":"%s","source":"%s","subject":"customer-%05d","time":"%s","data":`,
		typ, id, sources[r.IntN(len(sources))], r.IntN(100_000), t.Add(time.Duration(r.IntN(1000))*time.Millisecond).UTC().Format("2006-01-02T15:04:05.000Z"))
	switch typ {
	case "api-calls":
		dst = fmt.Appendf(dst, `{"method":"%s","route":"%s","status":%d,"duration_ms":%d,"region":"%s","bytes_out":%d}}`,
			methods[r.IntN(len(methods))], routes[r.IntN(len(routes))], []int{200, 200, 200, 201, 404, 500}[r.IntN(6)], r.IntN(2000), regions[r.IntN(len(regions))], r.IntN(1<<20))
	case "llm-tokens":
		dst = fmt.Appendf(dst, `{"model":"%s","type":"%s","tokens":%d,"provider":"p%d","region":"%s","cached":%t}}`,
			models[r.IntN(len(models))], []string{"input", "output"}[r.IntN(2)], r.IntN(20000), r.IntN(4), regions[r.IntN(len(regions))], r.IntN(2) == 0)
	case "storage":
		dst = fmt.Appendf(dst, `{"bucket":"tenant-%04d-assets","bytes":%d,"region":"%s","tier":"standard","op":"put"}}`,
			r.IntN(5000), r.Int64N(1<<34), regions[r.IntN(len(regions))])
	default:
		dst = fmt.Appendf(dst, `{"instance":"i-%016x","cpu_seconds":%.3f,"region":"%s","family":"m7g"}}`,
			r.Uint64(), r.Float64()*3600, regions[r.IntN(len(regions))])
	}
	return dst
}

// EventBatch returns a JSON array of n events with ids prefix-0 .. prefix-(n-1)
// (an OpenMeter batch request body), and the events themselves as slices of
// that body. seed makes it deterministic.
func EventBatch(prefix string, n int, seed uint64) (body []byte, events [][]byte) {
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(seed%86400) * time.Second)
	body = make([]byte, 0, n*270+2)
	starts := make([]int, n+1)
	body = append(body, '[')
	for i := range n {
		if i > 0 {
			body = append(body, ',')
		}
		starts[i] = len(body)
		body = AppendEvent(body, prefix+"-"+strconv.Itoa(i), r, t0)
	}
	starts[n] = len(body) + 1 // past the ']' / ','
	body = append(body, ']')
	events = make([][]byte, n)
	for i := range n {
		end := starts[i+1] - 1
		events[i] = body[starts[i]:end:end]
	}
	return body, events
}

// OTLPLogsRequest returns a protobuf ExportLogsServiceRequest with n log
// records of a metered API gateway (each about 200 bytes on the wire).
func OTLPLogsRequest(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	str := func(k, v string) *common.KeyValue {
		return &common.KeyValue{Key: k, Value: &common.AnyValue{Value: &common.AnyValue_StringValue{StringValue: v}}}
	}
	sl := &logs.ScopeLogs{LogRecords: make([]*logs.LogRecord, 0, n)}
	t0 := uint64(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	for i := range n {
		sl.LogRecords = append(sl.LogRecords, &logs.LogRecord{
			TimeUnixNano:   t0 + uint64(i)*1e6,
			SeverityNumber: logs.SeverityNumber_SEVERITY_NUMBER_INFO,
			Body:           &common.AnyValue{Value: &common.AnyValue_StringValue{StringValue: methods[r.IntN(len(methods))] + " " + routes[r.IntN(len(routes))]}},
			Attributes: []*common.KeyValue{
				str("subject", fmt.Sprintf("customer-%05d", r.IntN(100_000))),
				str("event.type", eventTypes[r.IntN(len(eventTypes))]),
				str("region", regions[r.IntN(len(regions))]),
				{Key: "duration_ms", Value: &common.AnyValue{Value: &common.AnyValue_IntValue{IntValue: int64(r.IntN(2000))}}},
				{Key: "status", Value: &common.AnyValue{Value: &common.AnyValue_IntValue{IntValue: int64([]int{200, 201, 404, 500}[r.IntN(4)])}}},
			},
			TraceId: randBytes(r, 16),
			SpanId:  randBytes(r, 8),
		})
	}
	req := &collogs.ExportLogsServiceRequest{ResourceLogs: []*logs.ResourceLogs{{
		Resource:  &resource.Resource{Attributes: []*common.KeyValue{str("service.name", "api-gateway"), str("host.name", "gw-eu-1")}},
		ScopeLogs: []*logs.ScopeLogs{sl},
	}}}
	b, err := proto.Marshal(req)
	if err != nil {
		panic(err) // a message built here always marshals
	}
	return b
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// PeakRSS returns the process's peak resident set size (VmHWM) in bytes.
func PeakRSS() (int64, error) { return procStatus("/proc/self/status", "VmHWM:") }

// RSS returns the process's current resident set size (VmRSS) in bytes.
func RSS() (int64, error) { return procStatus("/proc/self/status", "VmRSS:") }

// PeakRSSOf returns the peak resident set size (VmHWM) of process pid in
// bytes: its high-water mark since it started.
func PeakRSSOf(pid int) (int64, error) {
	return procStatus(fmt.Sprintf("/proc/%d/status", pid), "VmHWM:")
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times (100 on Linux
// on every architecture Go supports).
const clockTicks = 100

// ProcessCPUOf returns the user+system CPU time process pid used so far
// (/proc/<pid>/stat utime + stime).
func ProcessCPUOf(pid int) (time.Duration, error) {
	path := fmt.Sprintf("/proc/%d/stat", pid)
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may hold spaces) in parentheses:
	// state is field 3, utime 14, stime 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("%s: no ')' in %q", path, b)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("%s: %d fields after the command, want >= 13", path, len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: utime/stime %q: %v", path, s, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// ResetPeakRSS resets VmHWM to the current RSS (Linux: "5" to clear_refs).
func ResetPeakRSS() error {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

func procStatus(path, field string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, field) {
			continue
		}
		fs := strings.Fields(strings.TrimPrefix(line, field))
		if len(fs) != 2 || fs[1] != "kB" {
			return 0, fmt.Errorf("%s: unexpected %q line %q", path, field, line)
		}
		kb, err := strconv.ParseInt(fs[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %q line %q: %v", path, field, line, err)
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s has no %q line", path, field)
}

// Quantile returns the q-quantile (0 < q <= 1, nearest rank) of sorted.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// CountingBucket counts the object uploads (PUTs, retries and re-uploads
// included) and their bytes that go through it.
type CountingBucket struct {
	objstore.Bucket
	Uploads, UploadBytes atomic.Int64
}

// Upload implements objstore.Bucket. It passes r on unwrapped: providers
// look at its concrete type for the size (minio-go buffers a huge part for
// a reader of unknown size).
func (c *CountingBucket) Upload(ctx context.Context, name string, r io.Reader, opts ...objstore.ObjectUploadOption) error {
	size, err := objstore.TryToGetSize(r)
	if err != nil {
		return fmt.Errorf("counting bucket: upload %s: %w", name, err)
	}
	err = c.Bucket.Upload(ctx, name, r, opts...)
	c.Uploads.Add(1)
	c.UploadBytes.Add(size)
	return err
}

// CountingStore counts the manifest store's requests: conditional writes
// (each one a PUT), those refused as conflicts, and reads (GETs).
type CountingStore struct {
	cas.Store
	Writes, Conflicts, Reads atomic.Int64
}

// Read implements cas.Store.
func (c *CountingStore) Read(ctx context.Context, name string) ([]byte, cas.Version, error) {
	c.Reads.Add(1)
	return c.Store.Read(ctx, name)
}

// WriteIf implements cas.Store.
func (c *CountingStore) WriteIf(ctx context.Context, name string, data []byte, v cas.Version) (cas.Version, error) {
	c.Writes.Add(1)
	nv, err := c.Store.WriteIf(ctx, name, data, v)
	if errors.Is(err, cas.ErrConflict) {
		c.Conflicts.Add(1)
	}
	return nv, err
}

// CountingSink is a minimal OpenMeter-compatible endpoint for measuring
// what is upstream of it: it answers POST /api/v1/events with 204 after
// counting the top-level objects of the JSON array (a string-aware brace
// scan, no decoding).
type CountingSink struct {
	URL, Endpoint string
	Events        atomic.Int64
	Requests      atomic.Int64

	srv     *httptest.Server
	mu      sync.Mutex
	waiters []chan struct{}
}

// NewCountingSink starts a CountingSink on 127.0.0.1.
func NewCountingSink() *CountingSink {
	s := &CountingSink{}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	s.Endpoint = s.srv.URL + "/api/v1/events"
	return s
}

// Close stops the server.
func (s *CountingSink) Close() { s.srv.Close() }

func (s *CountingSink) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/api/v1/events" {
		http.Error(w, "POST /api/v1/events only", http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	n, err := CountObjects(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.Requests.Add(1)
	s.Events.Add(int64(n))
	s.mu.Lock()
	for _, c := range s.waiters {
		close(c)
	}
	s.waiters = nil
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// WaitEvents waits until at least n events arrived or timeout passes.
func (s *CountingSink) WaitEvents(n int64, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c := make(chan struct{})
		s.mu.Lock()
		s.waiters = append(s.waiters, c)
		s.mu.Unlock()
		if s.Events.Load() >= n {
			return true
		}
		select {
		case <-c:
		case <-deadline.C:
			return s.Events.Load() >= n
		}
	}
}

// CountObjects counts the objects directly inside a top-level JSON array,
// skipping strings; it checks only that brackets balance.
func CountObjects(b []byte) (int, error) {
	b = bytes.TrimSpace(b)
	if len(b) < 2 || b[0] != '[' || b[len(b)-1] != ']' {
		return 0, errors.New("body is not a JSON array")
	}
	n, depth := 0, 0
	for i := 1; i < len(b)-1; i++ {
		switch b[i] {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		case '{', '[':
			if depth == 0 && b[i] == '{' {
				n++
			}
			depth++
		case '}', ']':
			depth--
			if depth < 0 {
				return 0, fmt.Errorf("unbalanced %q at offset %d", b[i], i)
			}
		}
	}
	if depth != 0 {
		return 0, fmt.Errorf("unbalanced brackets: depth %d at the end", depth)
	}
	return n, nil
}
