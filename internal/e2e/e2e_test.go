package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bucketq/bucketq/bucket"
	"github.com/bucketq/bucketq/deadletter"
	"github.com/bucketq/bucketq/internal/childproc"
	"github.com/bucketq/bucketq/internal/openmetertest"
	"github.com/bucketq/bucketq/manifest"
)

const (
	validRequests    = 200 // of eventsPerRequest each: 100k events
	eventsPerRequest = 500
	invalidRequests  = 12
	clients          = 6
	poisonEvery      = 20 // every 20th request carries one poison event
	consumerKills    = 2
	sinkBatchSize    = 1000        // the consumer's sink_batch_size
	sinkConcurrency  = 4           // the consumer's sink_concurrency: requests in flight
	dequeueInterval  = time.Second // the default, set explicitly
	// redeliverySafety widens the window of the documented redelivery
	// bound (README "Delivery guarantees"), so a slow, loaded CI machine,
	// where a sink request or a dequeue write takes long, does not fail it.
	redeliverySafety = 3
	ingestToken      = "e2e-ingest-token"
	sinkToken        = "e2e-sink-token"
)

// buildBinary compiles cmd/bucketq into dir.
func buildBinary(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "bucketq")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/bucketq")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proc is one bucketq process that can be killed and started again.
type proc struct {
	t      *testing.T
	name   string
	bin    string
	args   []string
	env    []string
	addr   string // its --listen address
	logf   *os.File
	cmd    *exec.Cmd
	exited chan struct{} // closed when the current process has exited
	starts int
}

func (p *proc) start() error {
	p.starts++
	fmt.Fprintf(p.logf, "=== start #%d: %s %s\n", p.starts, p.name, strings.Join(p.args, " "))
	p.cmd = exec.Command(p.bin, p.args...)
	p.cmd.Env = append(os.Environ(), p.env...)
	p.cmd.Stdout, p.cmd.Stderr = p.logf, p.logf
	if err := childproc.Start(p.cmd); err != nil {
		return fmt.Errorf("start %s: %v", p.name, err)
	}
	exited := make(chan struct{})
	p.exited = exited
	go func(c *exec.Cmd) { c.Wait(); close(exited) }(p.cmd)
	return p.waitReady()
}

func (p *proc) waitReady() error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited while starting: %v\n%s", p.name, p.cmd.ProcessState, p.tail())
		default:
		}
		resp, err := http.Get("http://" + p.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after 15s\n%s", p.name, p.tail())
}

// restart kills the process with SIGKILL, waits out the outage and starts
// it again.
func (p *proc) restart(outage time.Duration) error {
	fmt.Fprintf(p.logf, "=== kill -9 %s\n", p.name)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill %s: %v", p.name, err)
	}
	<-p.exited
	time.Sleep(outage)
	return p.start()
}

// killIfRunning kills the process if it was started and has not exited.
func (p *proc) killIfRunning() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	select {
	case <-p.exited:
	default:
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
	}
}

// stop sends SIGTERM and returns the exit code.
func (p *proc) stop() int {
	p.t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(20 * time.Second):
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
		p.t.Errorf("%s did not stop within 20s of SIGTERM\n%s", p.name, p.tail())
		return -1
	}
}

func (p *proc) tail() string {
	b, _ := os.ReadFile(p.logf.Name())
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return string(b)
}

type event struct {
	SpecVersion string         `json:"specversion"`
	ID          string         `json:"id,omitempty"`
	Source      string         `json:"source"`
	Type        string         `json:"type"`
	Subject     string         `json:"subject"`
	Time        string         `json:"time"`
	Data        map[string]any `json:"data"`
}

// request is one ingest request and what must become of its events.
type request struct {
	body    []byte
	ids     []string // events that must reach the sink
	poison  []string // events the sink rejects: must be dead-lettered
	invalid bool     // must be answered 400
}

func makeRequests() []request {
	now := time.Now().UTC().Format(time.RFC3339)
	var reqs []request
	for r := 0; r < validRequests; r++ {
		var req request
		evs := make([]event, eventsPerRequest)
		for i := range evs {
			id := fmt.Sprintf("ev-%03d-%03d", r, i)
			data := map[string]any{"tokens": r*eventsPerRequest + i, "model": "m1"}
			if r%poisonEvery == 7 && i == 123 {
				id = fmt.Sprintf("poison-%03d", r)
				data["poison"] = true
				req.poison = append(req.poison, id)
			} else {
				req.ids = append(req.ids, id)
			}
			evs[i] = event{SpecVersion: "1.0", ID: id, Source: "e2e", Type: "tokens", Subject: fmt.Sprintf("customer-%d", i%7), Time: now, Data: data}
		}
		req.body, _ = json.Marshal(evs)
		reqs = append(reqs, req)
	}
	for r := 0; r < invalidRequests; r++ {
		evs := make([]event, eventsPerRequest)
		for i := range evs {
			evs[i] = event{SpecVersion: "1.0", ID: fmt.Sprintf("bad-%03d-%03d", r, i), Source: "e2e", Type: "tokens", Subject: "c", Time: now, Data: map[string]any{"n": i}}
		}
		// One broken event spoils the whole request.
		switch r % 3 {
		case 0:
			evs[250].ID = "" // id is required
		case 1:
			evs[17].SpecVersion = "0.3"
		case 2:
			evs[499].Type = ""
		}
		body, _ := json.Marshal(evs)
		reqs = append(reqs, request{body: body, invalid: true})
	}
	reqs = append(reqs, request{body: []byte(`[{"specversion":"1.0","id":"bad-json"`), invalid: true})
	// Interleave the invalid requests with the valid ones.
	out := make([]request, 0, len(reqs))
	bad := reqs[validRequests:]
	for i, r := range reqs[:validRequests] {
		out = append(out, r)
		if i%16 == 5 && len(bad) > 0 {
			out, bad = append(out, bad[0]), bad[1:]
		}
	}
	return append(out, bad...)
}

func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds the binary and runs processes; skipped with -short")
	}
	start := time.Now()
	tmp := t.TempDir()
	bin := buildBinary(t, tmp)
	t.Logf("built %s in %v", bin, time.Since(start).Round(time.Millisecond))
	start = time.Now()

	sink := openmetertest.New(openmetertest.Options{Token: sinkToken, Poison: openmetertest.PoisonFlag})
	defer sink.Close()

	bucketDir := filepath.Join(tmp, "bucket")
	if err := os.MkdirAll(bucketDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The consumer reads the bucket through an objstore config file (the
	// producer uses --bucket-dir): both must see the same queue.
	confPath := filepath.Join(tmp, "consumer.yaml")
	conf := "object_store:\n  type: FILESYSTEM\n  config:\n    directory: ${E2E_BUCKET}\n" +
		"sink: ${E2E_SINK}\ngc_interval: 2s\ngc_grace_period: 3s\npoll_interval: 100ms\n" +
		// The journal on, with a retention short enough that GC expires
		// its segments, and then their batch files, within the test.
		"journal_retention: 3s\n" +
		fmt.Sprintf("sink_batch_size: %d\nsink_concurrency: %d\ndequeue_interval: %v\n", sinkBatchSize, sinkConcurrency, dequeueInterval)
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(tmp, "processes.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()

	prodAddr, consAddr := freeAddr(t), freeAddr(t)
	producer := &proc{t: t, name: "producer", bin: bin, addr: prodAddr, logf: logf, args: []string{"produce",
		"--bucket-dir", bucketDir, "--listen", prodAddr, "--otlp-grpc=", "--otlp-http=", "--token", ingestToken,
		"--flush-interval", "50ms", "--gc-grace-period", "3s", "--log-level", "warn"}}
	consumerP := &proc{t: t, name: "consumer", bin: bin, addr: consAddr, logf: logf,
		args: []string{"consume", "--config", confPath, "--listen", consAddr, "--log-level", "warn"},
		env:  []string{"E2E_BUCKET=" + bucketDir, "E2E_SINK=" + sink.Endpoint, "BUCKETQ_SINK_TOKEN=" + sinkToken}}
	// However the test ends, no process outlives it.
	t.Cleanup(func() {
		for _, p := range []*proc{producer, consumerP} {
			p.killIfRunning()
		}
	})
	for _, p := range []*proc{producer, consumerP} {
		if err := p.start(); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		if t.Failed() {
			t.Logf("process log (tail):\n%s", producer.tail())
		}
	}()

	reqs := makeRequests()
	var (
		mu       sync.Mutex
		acked    = map[string]bool{}
		poison   = map[string]bool{}
		rejected int
		retries  atomic.Int64
		// ambiguous counts retries of requests that may have been
		// committed although the client saw no 2xx (connection broken
		// after sending, 5xx): each may queue its events twice.
		ambiguous atomic.Int64
		doneValid atomic.Int64
	)
	work := make(chan request)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Second)
	defer cancel()
	client := &http.Client{Timeout: 20 * time.Second}
	send := func(r request) {
		backoff := 20 * time.Millisecond
		for attempt := 0; ; attempt++ {
			if ctx.Err() != nil {
				t.Errorf("request never answered before the deadline (valid=%v, %d attempts)", !r.invalid, attempt)
				return
			}
			req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+prodAddr+"/api/v1/events", bytes.NewReader(r.body))
			req.Header.Set("Content-Type", "application/cloudevents-batch+json")
			req.Header.Set("Authorization", "Bearer "+ingestToken)
			resp, err := client.Do(req)
			status := 0
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				status = resp.StatusCode
			}
			switch {
			case status >= 200 && status < 300:
				if r.invalid {
					t.Errorf("invalid request answered %d", status)
					return
				}
				mu.Lock()
				for _, id := range r.ids {
					acked[id] = true
				}
				for _, id := range r.poison {
					poison[id] = true
				}
				mu.Unlock()
				doneValid.Add(1)
				return
			case status == 400:
				if !r.invalid {
					t.Errorf("valid request answered 400")
					return
				}
				mu.Lock()
				rejected++
				mu.Unlock()
				return
			}
			// Anything else (connection refused or reset while the
			// producer is down, 429, 503): retry, as a client must.
			retries.Add(1)
			if (err != nil && !errors.Is(err, syscall.ECONNREFUSED)) || (err == nil && status != http.StatusTooManyRequests) {
				ambiguous.Add(1)
			}
			time.Sleep(backoff)
			backoff = min(2*backoff, 500*time.Millisecond)
		}
	}
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range work {
				send(r)
			}
		}()
	}

	// The sink's accepted-event count over time, to know how many events
	// the consumer delivered in the window before each kill.
	deliveries := &deliveryLog{}
	samplerCtx, stopSampler := context.WithCancel(ctx)
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		for samplerCtx.Err() == nil {
			deliveries.add(time.Now(), sink.Distinct()+sink.Duplicates())
			time.Sleep(10 * time.Millisecond)
		}
	}()
	var kills []consumerKill

	// Chaos: kill -9 the consumer twice and the producer once, at fixed
	// points of progress, restarting each after a short outage.
	chaosDone := make(chan struct{})
	go func() {
		defer close(chaosDone)
		waitFor := func(frac float64) {
			for doneValid.Load() < int64(frac*validRequests) && ctx.Err() == nil {
				time.Sleep(5 * time.Millisecond)
			}
		}
		for _, step := range []struct {
			at     float64
			p      *proc
			outage time.Duration
		}{{0.2, consumerP, 300 * time.Millisecond}, {0.45, producer, 500 * time.Millisecond}, {0.7, consumerP, 300 * time.Millisecond}} {
			waitFor(step.at)
			if step.p == consumerP {
				now := time.Now()
				window := redeliverySafety * dequeueInterval
				kills = append(kills, consumerKill{deliveredInWindow: deliveries.since(now.Add(-window), sink.Distinct()+sink.Duplicates()), dupsBefore: sink.Duplicates()})
			}
			if err := step.p.restart(step.outage); err != nil {
				t.Error(err)
				cancel()
				return
			}
		}
	}()
	for _, r := range reqs {
		work <- r
	}
	close(work)
	wg.Wait()
	<-chaosDone
	if t.Failed() {
		t.FailNow()
	}
	ingestDone := time.Since(start)
	stopSampler()
	<-samplerDone

	// Every acked event reaches the sink, every poison event is in the
	// dead-letter prefix.
	deadLettered := func() map[string]bool {
		got := map[string]bool{}
		filepath.WalkDir(filepath.Join(bucketDir, "ingest", "dead-letter"), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".json") {
				return nil
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return nil
			}
			var dl deadletter.Letter
			if json.Unmarshal(b, &dl) != nil || len(dl.Event) == 0 {
				return nil
			}
			var ev struct{ ID string }
			json.Unmarshal(dl.Event, &ev)
			got[ev.ID] = true
			return nil
		})
		return got
	}
	var missing []string
	var dl map[string]bool
	deadline := time.Now().Add(60 * time.Second)
	for {
		seen := map[string]bool{}
		for _, ev := range sink.Events() {
			seen[ev.ID] = true
		}
		missing = missing[:0]
		for id := range acked {
			if !seen[id] {
				missing = append(missing, id)
			}
		}
		dl = deadLettered()
		for id := range poison {
			if !dl[id] {
				missing = append(missing, id+" (dead letter)")
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(missing) > 0 {
		t.Fatalf("%d acked events never reached the sink or the dead-letter prefix, e.g. %q", len(missing), missing[:min(5, len(missing))])
	}
	var leaked []string
	expected := map[string]bool{}
	for id := range acked {
		expected[id] = true
	}
	for _, ev := range sink.Events() {
		if !expected[ev.ID] {
			leaked = append(leaked, ev.ID)
		}
	}
	if len(leaked) > 0 {
		t.Errorf("%d events reached the sink that were never acked as valid (invalid requests or poison), e.g. %q", len(leaked), leaked[:min(5, len(leaked))])
	}
	if got, want := sink.Distinct(), len(acked); got != want {
		t.Errorf("sink holds %d distinct events, want exactly %d", got, want)
	}
	if rejected != invalidRequests+1 {
		t.Errorf("%d invalid requests rejected with 400, want %d", rejected, invalidRequests+1)
	}
	if len(acked)+len(poison) != validRequests*eventsPerRequest {
		t.Errorf("acked %d events (+%d poison), want %d", len(acked), len(poison), validRequests*eventsPerRequest)
	}

	// The manifest ends empty and GC removes every batch file.
	_, store, err := bucket.OpenDir(bucketDir)
	if err != nil {
		t.Fatal(err)
	}
	q := manifest.NewQueue(store, "ingest/manifest", manifest.Options{})
	var m *manifest.Manifest
	var batches, segments []string
	deadline = time.Now().Add(30 * time.Second)
	for {
		m, err = q.Read(context.Background())
		if err != nil {
			t.Fatalf("reading the manifest: %v", err)
		}
		batches = batches[:0]
		filepath.WalkDir(filepath.Join(bucketDir, "ingest", "data"), func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				batches = append(batches, path)
			}
			return nil
		})
		segments = segments[:0]
		filepath.WalkDir(filepath.Join(bucketDir, "ingest", "journal"), func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				segments = append(segments, path)
			}
			return nil
		})
		if (len(m.Entries) == 0 && len(batches) == 0 && len(segments) == 0) || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if len(m.Entries) != 0 {
		t.Errorf("manifest still holds %d entries (first %s)", len(m.Entries), m.Entries[0].Location)
	}
	if len(batches) != 0 {
		t.Errorf("GC left %d batch files behind, e.g. %s", len(batches), batches[0])
	}
	if len(segments) != 0 {
		t.Errorf("GC left %d journal segments past journal_retention, e.g. %s", len(segments), segments[0])
	}
	if m.Epoch < 3 {
		t.Errorf("manifest epoch %d: three consumer starts should have fenced three times", m.Epoch)
	}

	// Both processes shut down cleanly on SIGTERM.
	if code := producer.stop(); code != 0 {
		t.Errorf("producer exited %d after SIGTERM\n%s", code, producer.tail())
	}
	if code := consumerP.stop(); code != 0 {
		t.Errorf("consumer exited %d after SIGTERM\n%s", code, consumerP.tail())
	}

	// Redelivery stays within the documented bound (README "Delivery
	// guarantees"): a killed consumer re-sends at most what it delivered
	// since its last successful dequeue — the events delivered in the last
	// dequeue_interval (here the window is redeliverySafety times that),
	// plus the sink requests in flight or answered behind an unfinished one
	// (sink_concurrency of sink_batch_size each), plus the rest of one batch it had
	// started earlier. A batch holds at most one request per client (a
	// client waits for its answer), two if a retry joins its abandoned
	// first attempt. The other duplicates are client retries of requests
	// that may have been committed: at most one request's events each.
	if len(kills) != consumerKills {
		t.Fatalf("%d consumer kills recorded, want %d", len(kills), consumerKills)
	}
	const maxBatchEvents = 2 * clients * eventsPerRequest
	bound := int(ambiguous.Load()) * eventsPerRequest
	var perKill []string
	for i, k := range kills {
		b := k.deliveredInWindow + sinkConcurrency*sinkBatchSize + maxBatchEvents
		bound += b
		dupsAfter := sink.Duplicates()
		if i+1 < len(kills) {
			dupsAfter = kills[i+1].dupsBefore
		}
		perKill = append(perKill, fmt.Sprintf("kill %d: bound %d = delivered in the %v before it %d + %d sink requests of %d + one batch %d; duplicates until the next kill %d",
			i+1, b, redeliverySafety*dequeueInterval, k.deliveredInWindow, sinkConcurrency, sinkBatchSize, maxBatchEvents, dupsAfter-k.dupsBefore))
	}
	clientDups := fmt.Sprintf("client retries that may have been committed: %d x %d events", ambiguous.Load(), eventsPerRequest)
	if dups := sink.Duplicates(); dups > bound {
		t.Errorf("%d duplicates delivered, above the documented redelivery bound %d:\n%s\n%s", dups, bound, strings.Join(perKill, "\n"), clientDups)
	} else {
		t.Logf("redelivery: %d duplicates <= bound %d\n%s\n%s", dups, bound, strings.Join(perKill, "\n"), clientDups)
	}

	t.Logf("e2e summary: acked=%d delivered_distinct=%d duplicates=%d redelivery_bound=%d dead_lettered=%d invalid_requests_rejected=%d client_retries=%d ambiguous_retries=%d kills=consumer:2,producer:1 ingest=%v total_after_build=%v",
		len(acked)+len(poison), sink.Distinct(), sink.Duplicates(), bound, len(dl), rejected, retries.Load(), ambiguous.Load(),
		ingestDone.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// consumerKill is what the test knew when it killed the consumer.
type consumerKill struct {
	deliveredInWindow int // events the sink accepted in the window before the kill
	dupsBefore        int // sink duplicates at the kill
}

// deliveryLog samples the sink's accepted-event count (duplicates
// included) over time.
type deliveryLog struct {
	mu     sync.Mutex
	times  []time.Time
	counts []int
}

func (d *deliveryLog) add(at time.Time, n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.times = append(d.times, at)
	d.counts = append(d.counts, n)
}

// since returns how many events the sink accepted from `from` until now,
// given the count now: it subtracts the last sample taken at or before
// from (never a later one), so the result never undercounts.
func (d *deliveryLog) since(from time.Time, now int) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	base := 0
	for i, at := range d.times {
		if at.After(from) {
			break
		}
		base = d.counts[i]
	}
	return now - base
}
