package benchsuite

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bucketq/bucketq/internal/childproc"
	"github.com/bucketq/bucketq/internal/keptdir"
	"github.com/bucketq/bucketq/internal/storetest"
)

// BenchmarkIngestProcess: the ingest target as users run it. A freshly
// built `bucketq produce` runs in its own process with its defaults
// (memory_limit 256 MiB, max_buffered_bytes 128 MiB, zstd, flush 250 ms /
// 4 MiB), and this process drives it over loopback with 256 closed-loop
// clients posting 500-event CloudEvents batches (durable acks). Its peak
// RSS is the producer process's VmHWM (/proc/<pid>/status) over its whole
// life, and its CPU comes from /proc/<pid>/stat. Baseline, same op: the
// same binary and load with --memory-limit 0 (no Go soft limit), started
// fresh too, alternating which runs first. One op is one round of
// requestsPerRound(256) requests to each.
func BenchmarkIngestProcess(b *testing.B) {
	bin := buildBucketq(b)
	bodies := make([][]byte, 64)
	for i := range bodies {
		bodies[i], _ = EventBatch(fmt.Sprintf("process-%d", i), eventsPerRequest, uint64(i))
	}
	for _, bc := range bucketCases {
		b.Run("bucket="+bc.name, func(b *testing.B) {
			processBench(b, bin, bc.name, bodies)
		})
	}
}

// buildBucketq builds cmd/bucketq (fresh, from this checkout) into a
// temporary directory of b.
func buildBucketq(b *testing.B) string {
	bin := filepath.Join(b.TempDir(), "bucketq")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/bucketq/bucketq/cmd/bucketq").CombinedOutput()
	if err != nil {
		b.Fatalf("go build ./cmd/bucketq: %v\n%s", err, out)
	}
	return bin
}

// producerProc is one `bucketq produce` process.
type producerProc struct {
	cmd    *exec.Cmd
	addr   string
	out    bytes.Buffer
	exited chan struct{}
}

// startProducer starts `bucketq produce` on a fresh bucket (a temp
// directory, or a fresh prefix of the S3 server) with extra flags.
func startProducer(b *testing.B, bin, bucket string, extra ...string) *producerProc {
	b.Helper()
	dir := keptdir.New(b)
	args := []string{"produce", "--listen", freeAddr(b), "--otlp-grpc=", "--otlp-http=", "--log-level", "warn"}
	switch bucket {
	case "fs":
		args = append(args, "--create-bucket-dir", "--bucket-dir", filepath.Join(dir, "bucket"))
	case "s3":
		for _, k := range []string{storetest.S3EnvEndpoint, storetest.S3EnvAccessKey, storetest.S3EnvSecretKey, storetest.S3EnvBucket} {
			if os.Getenv(k) == "" {
				b.Skipf("S3 server not configured (%s unset); run `make bench` with the services (scripts/with-services.sh)", k)
			}
		}
		conf := "object_store:\n  " + strings.ReplaceAll(strings.TrimSpace(string(storetest.S3BucketYAML(b))), "\n", "\n  ") + "\n"
		path := filepath.Join(dir, "bucketq.yaml")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			b.Fatal(err)
		}
		args = append(args, "--config", path)
	default:
		b.Fatalf("unknown bucket %q", bucket)
	}
	args = append(args, extra...)
	p := &producerProc{cmd: exec.Command(bin, args...), addr: args[2], exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := childproc.Start(p.cmd); err != nil {
		b.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	b.Cleanup(func() { p.stop(b) })
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-p.exited:
			b.Fatalf("bucketq %s exited while starting: %v\n%s", strings.Join(args, " "), p.cmd.ProcessState, p.out.String())
		default:
		}
		if resp, err := http.Get("http://" + p.addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("bucketq produce not ready within 60s\n%s", p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM (the producer flushes and commits what it holds) and
// waits; a non-zero exit fails b.
func (p *producerProc) stop(b *testing.B) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(2 * time.Minute):
		_ = p.cmd.Process.Kill()
		<-p.exited
		b.Errorf("bucketq produce did not stop within 2 minutes of SIGTERM\n%s", p.out.String())
		return
	}
	if !p.cmd.ProcessState.Success() {
		b.Errorf("bucketq produce: %v\n%s", p.cmd.ProcessState, p.out.String())
	}
}

// usage returns the process's peak RSS (VmHWM) and CPU time so far.
func (p *producerProc) usage(b *testing.B) (peak int64, cpu time.Duration) {
	b.Helper()
	pid := p.cmd.Process.Pid
	peak, err := PeakRSSOf(pid)
	if err != nil {
		b.Fatal(err)
	}
	cpu, err = ProcessCPUOf(pid)
	if err != nil {
		b.Fatal(err)
	}
	return peak, cpu
}

func freeAddr(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func processBench(b *testing.B, bin, bucket string, bodies [][]byte) {
	const clients = 256
	requests := requestsPerRound(clients)
	var roundBytes int64
	for i := range requests {
		roundBytes += int64(len(bodies[i%len(bodies)]))
	}
	b.SetBytes(roundBytes)
	client := newClient(clients)
	defer client.CloseIdleConnections()
	const path = "/api/v1/events"
	const ctype = "application/cloudevents-batch+json"

	limited := startProducer(b, bin, bucket)
	nolimit := startProducer(b, bin, bucket, "--memory-limit", "0")
	var lim, base loadResult
	var lat []time.Duration
	b.ResetTimer()
	b.StopTimer()
	for i := range b.N {
		for phase := range 2 {
			if (phase+i)%2 == 0 {
				_, cpu0 := limited.usage(b)
				r := drive(b, true, client, "http://"+limited.addr+path, ctype, bodies, eventsPerRequest, clients, requests)
				_, cpu1 := limited.usage(b)
				r.cpu = cpu1 - cpu0
				lim.add(r)
				lat = append(lat, r.ackLatency...)
			} else {
				_, cpu0 := nolimit.usage(b)
				r := drive(b, false, client, "http://"+nolimit.addr+path, ctype, bodies, eventsPerRequest, clients, requests)
				_, cpu1 := nolimit.usage(b)
				r.cpu = cpu1 - cpu0
				base.add(r)
			}
		}
	}
	limPeak, _ := limited.usage(b)
	basePeak, _ := nolimit.usage(b)
	limited.stop(b)
	nolimit.stop(b)

	b.ReportMetric(lim.eventsPerSec(), "events/s")
	b.ReportMetric(base.eventsPerSec(), "nolimit-events/s")
	b.ReportMetric(lim.eventsPerSec()/base.eventsPerSec(), "x-nolimit")
	b.ReportMetric(float64(limPeak)/mib, "producer-peak-RSS-MiB")
	b.ReportMetric(float64(basePeak)/mib, "nolimit-producer-peak-RSS-MiB")
	b.ReportMetric(float64(limPeak)/float64(basePeak), "rss-x-nolimit")
	b.ReportMetric(lim.cpuPerEvent(), "producer-cpu-µs/event")
	b.ReportMetric(base.cpuPerEvent(), "nolimit-producer-cpu-µs/event")
	slices.Sort(lat)
	b.ReportMetric(Quantile(lat, 0.50).Seconds()*1000, "ack-p50-ms")
	b.ReportMetric(Quantile(lat, 0.99).Seconds()*1000, "ack-p99-ms")
	b.ReportMetric(targetIngestEventsPerSec, "target-events/s")
	b.ReportMetric(targetIngestPeakRSSMiB, "target-peak-RSS-MiB")
}
