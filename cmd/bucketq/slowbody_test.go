package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bucketq/bucketq/internal/childproc"
)

// TestSlowBodiesProcess is the slow-body attack against a real `bucketq
// produce` process: 64 connections to POST /api/v1/events and 16 to
// OTLP/HTTP declare an 8 MiB body each and trickle it at ~300 B/s, far
// below body_min_rate. The process must not reserve the declared lengths
// (its peak RSS, VmHWM from /proc/<pid>/status, stays far below the
// 64 x 8 MiB = 512 MiB declared; before the fix it was ~540 MB), it must
// close every slow connection soon after body_read_timeout (before the
// fix they stayed open for ever), answer the events ones 408, count them,
// and keep serving a normal client throughout. Loopback only; it stops by
// itself within about 40 seconds.
func TestSlowBodiesProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a bucketq process")
	}
	const (
		eventsConns = 64
		otlpConns   = 16
		declared    = 8 << 20
		timeout     = 2 * time.Second
		// closeBy is the hang guard: a slow connection still open this long
		// after its headers counts as never closed.
		closeBy = 20 * time.Second
		// rssBound is well below what the attack declares (512 MiB) and
		// above an idle producer plus the connections' buffers.
		rssBound = 150 << 20
	)
	dir := t.TempDir()
	bin := filepath.Join(dir, "bucketq")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/bucketq/bucketq/cmd/bucketq").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/bucketq: %v\n%s", err, out)
	}
	addr, otlpAddr := freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin, "produce", "--create-bucket-dir", "--bucket-dir", filepath.Join(dir, "bucket"), "--listen", addr,
		"--otlp-grpc=", "--otlp-http", otlpAddr, "--log-level", "warn",
		"--body-read-timeout", timeout.String(), "--body-min-rate", "64KiB")
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := childproc.Start(cmd); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("bucketq produce did not stop within 30s of SIGTERM\n%s", out.String())
		}
	}()
	base := "http://" + addr
	for deadline := time.Now().Add(30 * time.Second); ; {
		select {
		case <-exited:
			t.Fatalf("bucketq produce exited while starting: %v\n%s", cmd.ProcessState, out.String())
		default:
		}
		if resp, err := http.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("bucketq produce not ready within 30s\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	pid := cmd.Process.Pid
	rssBefore := procStatusBytes(t, pid, "VmRSS")

	type result struct {
		open   time.Duration // from the headers to the server's close
		status string        // the answer's status line, if any
		err    error
	}
	results := make(chan result, eventsConns+otlpConns)
	var wg sync.WaitGroup
	slow := func(addr, path, ct string) {
		defer wg.Done()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			results <- result{err: err}
			return
		}
		defer c.Close()
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n[", path, addr, ct, declared)
		start := time.Now()
		closed := make(chan result, 1)
		go func() {
			// The server's answer, if any, then its close.
			status, _ := bufio.NewReader(c).ReadString('\n')
			buf := make([]byte, 4096)
			for {
				if _, err := c.Read(buf); err != nil {
					break
				}
			}
			closed <- result{open: time.Since(start), status: strings.TrimSpace(status)}
		}()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		chunk := []byte(strings.Repeat(" ", 30)) // ~300 B/s
		for {
			select {
			case r := <-closed:
				results <- r
				return
			case <-tick.C:
				if time.Since(start) > closeBy {
					results <- result{open: time.Since(start), err: fmt.Errorf("still open after %v", closeBy)}
					return
				}
				_, _ = c.Write(chunk) // fails once the server closed: the reader reports it
			}
		}
	}
	wg.Add(eventsConns + otlpConns)
	for range eventsConns {
		go slow(addr, "/api/v1/events", "application/cloudevents-batch+json")
	}
	for range otlpConns {
		go slow(otlpAddr, "/v1/logs", "application/json")
	}

	// A normal client is served while the slow ones hang on.
	time.Sleep(500 * time.Millisecond)
	postEvent(t, base, "during")

	var peakRSS int64
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(50 * time.Millisecond)
sample:
	for {
		select {
		case <-done:
			break sample
		case <-tick.C:
			peakRSS = max(peakRSS, procStatusBytes(t, pid, "VmRSS"))
		}
	}
	tick.Stop()
	close(results)
	hwm := procStatusBytes(t, pid, "VmHWM")
	t.Logf("RSS before %d MiB, peak sampled %d MiB, VmHWM %d MiB", rssBefore>>20, peakRSS>>20, hwm>>20)
	if hwm > rssBound {
		t.Errorf("peak RSS (VmHWM) %d MiB above %d MiB: declared body lengths are reserved up front", hwm>>20, rssBound>>20)
	}

	var longest time.Duration
	n408 := 0
	for r := range results {
		if r.err != nil {
			t.Errorf("slow connection: %v", r.err)
			continue
		}
		longest = max(longest, r.open)
		if strings.Contains(r.status, " 408 ") {
			n408++
		}
	}
	t.Logf("slow connections closed within %v of their headers (body_read_timeout %v); %d answered 408", longest.Round(time.Millisecond), timeout, n408)
	if n408 < eventsConns {
		t.Errorf("%d slow connections answered 408, want at least the %d to /api/v1/events", n408, eventsConns)
	}
	// The answers are counted.
	code, metrics := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	want := fmt.Sprintf(`ingest_requests{code="408",front="http-events"} %d`, eventsConns)
	if !strings.Contains(metrics, want) {
		t.Errorf("/metrics lacks %s", want)
	}
	// And a normal client is still served afterwards.
	postEvent(t, base, "after")
}

// postEvent posts one event and wants 204.
func postEvent(t *testing.T, base, id string) {
	t.Helper()
	body := `{"specversion":"1.0","id":"` + id + `","source":"slow-test","type":"t","subject":"s"}`
	resp, err := http.Post(base+"/api/v1/events", "application/cloudevents+json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", id, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST %s: status %d, want 204", id, resp.StatusCode)
	}
}

// procStatusBytes returns a "kB" field of /proc/<pid>/status in bytes.
func procStatusBytes(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for line := range bytes.Lines(b) {
		if rest, ok := bytes.CutPrefix(line, []byte(field+":")); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(string(rest)), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("/proc/%d/status has no %s", pid, field)
	return 0
}
