package chaos

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bucketq/bucketq/internal/openmetertest"
)

// sinkRecorder stands between each consumer process and the metering API
// fake: consumer i sends to endpoint(i), which forwards the request
// unchanged (cancelled when the consumer abandons it) and records every
// request the API accepted, with its time and consumer. It is how the
// chaos tests know who delivered what when, so that they can attribute
// every duplicate to a kill and check the redelivery bound.
type sinkRecorder struct {
	target string
	srvs   []*httptest.Server

	mu  sync.Mutex
	log []delivery
}

// delivery is one request the metering API accepted.
type delivery struct {
	at   time.Time // when the API's answer arrived
	cons int       // consumer process index
	ids  []string
}

func newSinkRecorder(target string, consumers int) *sinkRecorder {
	r := &sinkRecorder{target: target}
	for i := range consumers {
		r.srvs = append(r.srvs, httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { r.forward(i, w, req) })))
	}
	return r
}

func (r *sinkRecorder) endpoint(cons int) string { return r.srvs[cons].URL + req0Path(r.target) }

// req0Path is the path part of the sink's endpoint.
func req0Path(endpoint string) string {
	for i, n := 0, 0; i < len(endpoint); i++ {
		if endpoint[i] == '/' {
			if n++; n == 3 {
				return endpoint[i:]
			}
		}
	}
	return "/"
}

func (r *sinkRecorder) close() {
	for _, s := range r.srvs {
		s.Close()
	}
}

func (r *sinkRecorder) forward(cons int, w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	out, err := http.NewRequestWithContext(req.Context(), req.Method, r.target, bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	for _, h := range []string{"Content-Type", "Authorization", "User-Agent"} {
		if v := req.Header.Get(h); v != "" {
			out.Header.Set(h, v)
		}
	}
	resp, err := http.DefaultClient.Do(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		d := delivery{at: time.Now(), cons: cons}
		if evs, err := openmetertest.ValidateBatch(body); err == nil {
			for _, ev := range evs {
				d.ids = append(d.ids, ev.ID)
			}
		}
		r.mu.Lock()
		r.log = append(r.log, d)
		r.mu.Unlock()
	}
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

// deliveries returns the accepted requests in the order they were
// recorded.
func (r *sinkRecorder) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.log...)
}

// killRec is one SIGKILL of a consumer process.
type killRec struct {
	at   time.Time
	cons int // consumer index
	pid  int // the killed process
}

// ownerChange is a new owner of a partition seen in the lease table.
type ownerChange struct {
	at    time.Time
	p     int
	owner string // member id: host/pid/random
}

// memberPid is the process id in a lease table member id (host/pid/hex).
func memberPid(id string) int {
	parts := strings.Split(id, "/")
	if len(parts) < 3 {
		return -1
	}
	pid, err := strconv.Atoi(parts[len(parts)-2])
	if err != nil {
		return -1
	}
	return pid
}

// dupReport attributes every duplicate delivery: for an event delivered
// more than once, each delivery after the first is a duplicate, caused by
// the kill of the consumer that made the previous delivery if that
// consumer was killed in between ("crash"), else by something else
// ("other": a client retry queued the events twice, or a runner stopped or
// fenced without a kill). For crash duplicates it also returns how long
// before the kill the earlier delivery was answered.
type dupReport struct {
	total, crash, other int
	perKill             []int           // crash duplicates per kill
	gaps                []time.Duration // kill time minus the earlier delivery, crash duplicates
	otherSameCons       int             // "other" duplicates where both deliveries came from one consumer index
}

func attributeDups(ds []delivery, kills []killRec) dupReport {
	byID := map[string][]delivery{}
	for _, d := range ds {
		for _, id := range d.ids {
			byID[id] = append(byID[id], delivery{at: d.at, cons: d.cons})
		}
	}
	rep := dupReport{perKill: make([]int, len(kills))}
	for _, l := range byID {
		for i := 1; i < len(l); i++ {
			rep.total++
			prev, cur := l[i-1], l[i]
			k := -1
			for j, kr := range kills {
				if kr.cons == prev.cons && !kr.at.Before(prev.at) && kr.at.Before(cur.at) {
					k = j
					break
				}
			}
			if k < 0 {
				rep.other++
				if prev.cons == cur.cons {
					rep.otherSameCons++
				}
				continue
			}
			rep.crash++
			rep.perKill[k]++
			rep.gaps = append(rep.gaps, kills[k].at.Sub(prev.at))
		}
	}
	return rep
}

// deliveredBefore counts the events consumer cons had accepted in the
// window before at.
func deliveredBefore(ds []delivery, cons int, at time.Time, window time.Duration) int {
	n := 0
	for _, d := range ds {
		if d.cons == cons && !d.at.After(at) && at.Sub(d.at) <= window {
			n += len(d.ids)
		}
	}
	return n
}

// bound is the redelivery bound of one run and how it was reached.
type bound struct {
	total int
	text  string
	errs  []string
}

// queueConfig is what the redelivery bound of a run depends on: the
// consumers' configuration and the clients' requests.
type queueConfig struct {
	partitions      int           // partitions; 1 is the single manifest of TestChaos, which no lease table moves
	dequeueInterval time.Duration // dequeue_interval
	// windowIntervals is how many dequeue intervals of deliveries before a
	// kill count as "delivered in the last dequeue_interval": 1 is the
	// bound as documented; internal/e2e and TestChaosPartitions allow 3, for
	// a dequeue write that failed unseen and a slow machine.
	windowIntervals int
	sinkConcurrency int // sink_concurrency, fixed (adaptive would be up to 32)
	sinkBatchSize   int // sink_batch_size
	clients         int // client goroutines, one request in flight each
	eventsPerReq    int // events per client request
}

// observed is what a chaos run recorded for its redelivery bound.
type observed struct {
	deliveries []delivery    // the sinkRecorder's
	kills      []killRec     // consumer SIGKILLs, in order
	moves      []ownerChange // lease table owner changes (partitions only)
	consPid    map[int]int   // consumer process id → consumer index (partitions only)
	clientDups int           // events of client retries (one request's each)
	// failedDequeues are the times the consumers logged a failed dequeue
	// or journal write (dequeueFailures), if the test read them: each
	// widens the window of a kill it falls in by one dequeue interval.
	failedDequeues []time.Time
}

// redeliveryBound is the at-least-once bound of README "When duplicates
// happen" (one queue) and RFC 0005 (per partition) for one run: a
// partition's runner that stops — SIGKILLed, or handing the partition
// over — leaves queued what it delivered since its last successful dequeue,
// and the next owner re-sends it. With qc's configuration that is at most
//
//   - the events delivered in the last dequeue_interval (over
//     qc.windowIntervals of them), counted over the whole process: what the
//     recorder saw delivered in it, not a rate extrapolated from a burst;
//     "if dequeue writes were failing, everything delivered since the last
//     one that succeeded": one interval more per failure the consumer
//     logged in the window (obs.failedDequeues),
//   - per partition it ran (the one manifest when qc.partitions is 1): the
//     sink requests answered behind an unfinished earlier one (a poison
//     batch being bisected, a 429 wait) — the consumer starts none more
//     than sink_concurrency past the oldest unfinished one, sink_batch_size
//     events each — plus the delivered part of one manifest entry (at most
//     two requests per client),
//
// plus the client retries of requests the producer may have committed
// (one request's events each). A handover is a runner stop like a kill,
// except that the final dequeue removes what was complete.
//
// It also attributes the duplicates the recorder saw: each must follow a
// kill of the consumer that delivered the earlier copy (checked against
// that kill's share of the bound) or be one of the other causes (a
// handover, a client retry), whose sum is bounded in turn.
func redeliveryBound(qc queueConfig, obs observed) bound {
	ds, kills, moves := obs.deliveries, obs.kills, obs.moves
	window := time.Duration(qc.windowIntervals) * qc.dequeueInterval
	perPartition := qc.sinkConcurrency*qc.sinkBatchSize + 2*qc.clients*qc.eventsPerReq
	var b bound
	var lines []string
	rep := attributeDups(ds, kills)
	killedAt := map[int]time.Time{}
	for _, k := range kills {
		killedAt[k.pid] = k.at
	}
	// held: the partitions a member held just before t. A single queue's
	// consumer holds its manifest from its start (it fences it).
	held := func(pid int, t time.Time) int {
		if qc.partitions == 1 {
			return 1
		}
		last := map[int]string{}
		for _, m := range moves {
			if m.at.Before(t) {
				last[m.p] = m.owner
			}
		}
		n := 0
		for _, o := range last {
			if memberPid(o) == pid {
				n++
			}
		}
		return n
	}
	// killWindow widens the window before a kill at by one interval per
	// failed dequeue logged in it, until no further failure falls in.
	killWindow := func(at time.Time) (time.Duration, int) {
		w, n := window, 0
		for {
			m := 0
			for _, f := range obs.failedDequeues {
				if !f.After(at) && at.Sub(f) <= w {
					m++
				}
			}
			if m == n {
				return w, n
			}
			n, w = m, window+time.Duration(m)*qc.dequeueInterval
		}
	}
	for i, k := range kills {
		h := held(k.pid, k.at)
		w, failed := killWindow(k.at)
		inWindow := deliveredBefore(ds, k.cons, k.at, w)
		kb := inWindow + h*perPartition
		b.total += kb
		lines = append(lines, fmt.Sprintf("kill %d (consumer-%d, held %d partitions): bound %d = %d delivered in the last %v (%d failed dequeues in it) + %d × %d; duplicates after it %d",
			i+1, k.cons, h, kb, inWindow, w, failed, h, perPartition, rep.perKill[i]))
		if rep.perKill[i] > kb {
			b.errs = append(b.errs, fmt.Sprintf("kill %d of consumer-%d: %d duplicates, above its bound %d", i+1, k.cons, rep.perKill[i], kb))
		}
	}
	// Handovers: a partition moving away from a member that was not
	// killed before the move.
	prev := map[int]string{}
	type handover struct {
		at   time.Time
		from string
	}
	var handovers []handover
	for _, m := range moves {
		if o, ok := prev[m.p]; ok && o != m.owner {
			if at, killed := killedAt[memberPid(o)]; !killed || at.After(m.at) {
				handovers = append(handovers, handover{m.at, o})
			}
		}
		prev[m.p] = m.owner
	}
	hb := 0
	for _, h := range handovers {
		hb += perPartition
		if c, ok := obs.consPid[memberPid(h.from)]; ok {
			hb += deliveredBefore(ds, c, h.at, window)
		} else {
			hb += qc.sinkConcurrency * qc.sinkBatchSize * qc.partitions // unknown member: should not happen
		}
	}
	b.total += hb + obs.clientDups
	lines = append(lines, fmt.Sprintf("handovers %d: bound %d; client retries: bound %d", len(handovers), hb, obs.clientDups))
	if rep.other > hb+obs.clientDups {
		b.errs = append(b.errs, fmt.Sprintf("%d duplicates follow no kill of the consumer that delivered them first, above the bound %d of %d handovers and client retries", rep.other, hb+obs.clientDups, len(handovers)))
	}
	slices.Sort(rep.gaps)
	q := func(f float64) time.Duration {
		if len(rep.gaps) == 0 {
			return 0
		}
		return rep.gaps[int(f*float64(len(rep.gaps)-1))]
	}
	lines = append(lines, fmt.Sprintf("recorded duplicates %d: after a kill %d (delivered before the kill by p50 %v, p90 %v, max %v), other %d; bound %d",
		rep.total, rep.crash, q(0.5).Round(time.Millisecond), q(0.9).Round(time.Millisecond), q(1).Round(time.Millisecond), rep.other, b.total))
	b.text = "redelivery:\n" + strings.Join(lines, "\n")
	return b
}

// checkRedelivery fails t if the duplicates the sink counted exceed the
// bound, or if the bound's own checks (per kill, other causes) failed.
func checkRedelivery(t *testing.T, sink *openmetertest.Server, rb bound) {
	t.Helper()
	t.Log(rb.text)
	if d := sink.Duplicates(); d > rb.total {
		t.Errorf("%d duplicates delivered, above the redelivery bound %d", d, rb.total)
	}
	for _, e := range rb.errs {
		t.Error(e)
	}
}

// dequeueFailures returns the times of the consumer's log lines (slog text,
// as the chaos processes write them) saying a dequeue or the journal write
// before it failed and will be retried at the next interval.
func dequeueFailures(log string) ([]time.Time, error) {
	b, err := os.ReadFile(log)
	if err != nil {
		return nil, err
	}
	var out []time.Time
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, `msg="dequeue failed; will retry"`) &&
			!strings.Contains(line, `msg="journal write failed; the dequeue waits and will retry"`) {
			continue
		}
		ts, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			return nil, fmt.Errorf("%s: a failed dequeue logged without a time: %q", log, line)
		}
		out = append(out, at)
	}
	return out, nil
}

// TestRedeliveryWindow checks, without services, that dequeueFailures reads
// the consumer's warnings as it writes them and that each failure in a
// kill's window widens it by one dequeue interval.
func TestRedeliveryWindow(t *testing.T) {
	// The consumer's wording, which dequeueFailures matches.
	src, err := os.ReadFile(filepath.Join("..", "..", "consumer", "run.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range []string{`"dequeue failed; will retry"`, `"journal write failed; the dequeue waits and will retry"`} {
		if !strings.Contains(string(src), msg) {
			t.Errorf("consumer/run.go no longer logs %s: update dequeueFailures", msg)
		}
	}
	kill := time.Date(2026, 12, 5, 10, 0, 10, 0, time.UTC)
	log := filepath.Join(t.TempDir(), "processes.log")
	lines := []string{
		`time=2026-12-05T10:00:08.700Z level=WARN msg="dequeue failed; will retry" manifest=m through=7 error="boom"`,
		`time=2026-12-05T10:00:09.600Z level=WARN msg="journal write failed; the dequeue waits and will retry" manifest=m through=9 error="boom"`,
		`time=2026-12-05T10:00:09.650Z level=INFO msg="sink throttled or unavailable; waiting"`,
		`time=2026-12-05T10:00:05.000Z level=WARN msg="dequeue failed; will retry" manifest=m through=3 error="boom"`,
	}
	if err := os.WriteFile(log, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	failed, err := dequeueFailures(log)
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) != 3 {
		t.Fatalf("dequeueFailures found %v, want the 3 failures", failed)
	}
	// 100 events a second delivered from 10:00:00 to the kill.
	var ds []delivery
	for s := 0; s < 10; s++ {
		ds = append(ds, delivery{at: kill.Add(-time.Duration(s)*time.Second - 500*time.Millisecond), ids: make([]string, 100)})
	}
	qc := queueConfig{partitions: 1, dequeueInterval: time.Second, windowIntervals: 1, sinkConcurrency: 2, sinkBatchSize: 10, clients: 1, eventsPerReq: 5}
	for _, c := range []struct {
		failed []time.Time
		want   int
	}{
		{nil, 100 + 30},    // 1s: one second of deliveries, 2 × 10 + 2 × 1 × 5
		{failed, 300 + 30}, // 10:00:09.6 widens to 2s, which takes in 10:00:08.7: 3s; 10:00:05 stays out
	} {
		rb := redeliveryBound(qc, observed{deliveries: ds, kills: []killRec{{at: kill}}, failedDequeues: c.failed})
		if rb.total != c.want {
			t.Errorf("failed dequeues %v: bound %d, want %d\n%s", c.failed, rb.total, c.want, rb.text)
		}
	}
}
