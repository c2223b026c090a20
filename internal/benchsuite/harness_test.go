package benchsuite

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/thanos-io/objstore"

	"github.com/bucketq/bucketq/bucket"
	"github.com/bucketq/bucketq/internal/keptdir"
	"github.com/bucketq/bucketq/internal/storetest"
	"github.com/bucketq/bucketq/manifest/cas"
)

// manifestPath is where the CLI keeps the manifest.
const manifestPath = "ingest/manifest"

// eventsPerRequest is the OpenMeter batch size the clients send.
const eventsPerRequest = 500

var quiet = slog.New(slog.DiscardHandler)

// TestMain removes the benchmarks' bucket directories once every benchmark
// has run, not after each (keptdir: deleting one benchmark's thousands of
// batch files slows the next ones on this project's CI file system).
func TestMain(m *testing.M) {
	code := m.Run()
	keptdir.RemoveAll()
	os.Exit(code)
}

// bucketCase opens a fresh, empty bucket and its manifest store.
type bucketCase struct {
	name string
	open func(b *testing.B) (objstore.Bucket, cas.Store)
	// objectStore: the producer takes an object store's defaults
	// (producer.AutoPipelineDepth), as the bucketq command would.
	objectStore bool
}

var bucketCases = []bucketCase{
	{"fs", openFS, false},
	{"s3", openS3, true},
}

func openFS(b *testing.B) (objstore.Bucket, cas.Store) {
	bkt, store, err := bucket.OpenDir(keptdir.New(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = bkt.Close() })
	return bkt, store
}

// openS3 opens the real S3 server named by BUCKETQ_TEST_S3_* under a unique
// prefix. Without it the benchmark skips, also under CI=true: `make bench`
// is not CI, and the S3 tests already fail CI when the server is missing.
func openS3(b *testing.B) (objstore.Bucket, cas.Store) {
	for _, k := range []string{storetest.S3EnvEndpoint, storetest.S3EnvAccessKey, storetest.S3EnvSecretKey, storetest.S3EnvBucket} {
		if os.Getenv(k) == "" {
			b.Skipf("S3 server not configured (%s unset); run `make bench` with the services (scripts/with-services.sh)", k)
		}
	}
	bkt, store, err := bucket.Open(context.Background(), storetest.S3BucketYAML(b), quiet)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = bkt.Close()
		if c, ok := store.(io.Closer); ok {
			_ = c.Close()
		}
	})
	return bkt, store
}

// histSum returns the sample sum of a histogram (e.g. records committed).
func histSum(b testing.TB, h prometheus.Histogram) float64 {
	var pb dto.Metric
	if err := h.Write(&pb); err != nil {
		b.Fatal(err)
	}
	return pb.GetHistogram().GetSampleSum()
}

// counterValue returns a counter's value.
func counterValue(b testing.TB, c prometheus.Counter) float64 {
	var pb dto.Metric
	if err := c.Write(&pb); err != nil {
		b.Fatal(err)
	}
	return pb.GetCounter().GetValue()
}

// newClient is an HTTP client keeping one connection per load client.
func newClient(clients int) *http.Client {
	return &http.Client{
		Timeout: 2 * time.Minute,
		Transport: &http.Transport{
			MaxIdleConns:        clients,
			MaxIdleConnsPerHost: clients,
			MaxConnsPerHost:     clients,
			DisableCompression:  true,
		},
	}
}

// loadResult is one closed-loop load phase.
type loadResult struct {
	requests, events, bytes int64
	elapsed                 time.Duration
	cpu                     time.Duration // process user+system CPU during the phase
	peakRSS                 int64         // VmHWM during the phase (0 if unknown)
	ackLatency              []time.Duration
}

func (r loadResult) eventsPerSec() float64 { return float64(r.events) / r.elapsed.Seconds() }

// cpuPerEvent is the process's CPU time per event, in microseconds.
func (r loadResult) cpuPerEvent() float64 {
	return float64(r.cpu.Microseconds()) / float64(r.events)
}

// drive posts requests bodies (round robin) to url from clients concurrent
// closed-loop clients and fails b on any non-2xx answer. It resets the peak
// RSS first (after returning free memory to the OS) and reads it after.
// If timed, the load alone runs with b's timer on.
func drive(b *testing.B, timed bool, client *http.Client, url, ctype string, bodies [][]byte, eventsPerBody, clients, requests int) loadResult {
	b.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	rssOK := ResetPeakRSS() == nil
	var next atomic.Int64
	var failed atomic.Value
	lats := make([][]time.Duration, clients)
	var wg sync.WaitGroup
	if timed {
		b.StartTimer()
	}
	cpu0 := processCPU()
	start := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(requests) || failed.Load() != nil {
					return
				}
				body := bodies[int(i)%len(bodies)]
				t0 := time.Now()
				if err := post(client, url, ctype, body); err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
				lats[c] = append(lats[c], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	res := loadResult{elapsed: time.Since(start), cpu: processCPU() - cpu0}
	if timed {
		b.StopTimer()
	}
	if err, _ := failed.Load().(error); err != nil {
		b.Fatalf("POST %s: %v", url, err)
	}
	if rssOK {
		res.peakRSS, _ = PeakRSS()
	}
	for _, l := range lats {
		res.ackLatency = append(res.ackLatency, l...)
	}
	slices.Sort(res.ackLatency)
	res.requests = int64(requests)
	res.events = int64(requests) * int64(eventsPerBody)
	for i := range requests {
		res.bytes += int64(len(bodies[i%len(bodies)]))
	}
	return res
}

func post(client *http.Client, url, ctype string, body []byte) error {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", ctype)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("status %d: %s", resp.StatusCode, msg)
	}
	return nil
}

// prep collects garbage before a measured phase, so the phases before it
// do not leave their collection to it.
func prep() { runtime.GC() }

// processCPU is the user+system CPU time of the whole process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

const mib = 1 << 20
