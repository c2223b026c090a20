package chaos

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
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
	sinkConcurrency int           // sink_concurrency, fixed (adaptive would be up to 32)
	sinkBatchSize   int           // sink_batch_size
	clients         int           // client goroutines, one request in flight each
	eventsPerReq    int           // events per client request
}

// redeliveryBound is the at-least-once bound of README "When duplicates
// happen" (one queue) and RFC 0005 (per partition) for one run: a
// partition's runner that stops — SIGKILLed, or handing the partition
// over — leaves queued what it delivered since its last successful dequeue,
// and the next owner re-sends it. With qc's configuration that is at most
//
//   - the events delivered in the last dequeue_interval (a window of 3
//     intervals, as internal/e2e, for a dequeue write that failed and was
//     retried at the next interval), counted over the whole process,
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
func redeliveryBound(qc queueConfig, ds []delivery, kills []killRec, moves []ownerChange, consPid map[int]int, clientDups int) bound {
	window := 3 * qc.dequeueInterval // as internal/e2e: a failed dequeue is retried an interval later
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
	for i, k := range kills {
		h := held(k.pid, k.at)
		inInterval, inWindow := deliveredBefore(ds, k.cons, k.at, qc.dequeueInterval), deliveredBefore(ds, k.cons, k.at, window)
		kb := max(3*inInterval, inWindow) + h*perPartition
		b.total += kb
		lines = append(lines, fmt.Sprintf("kill %d (consumer-%d, held %d partitions): bound %d = max(3 × %d delivered in the last %v, %d in the last %v) + %d × %d; duplicates after it %d",
			i+1, k.cons, h, kb, inInterval, qc.dequeueInterval, inWindow, window, h, perPartition, rep.perKill[i]))
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
		if c, ok := consPid[memberPid(h.from)]; ok {
			hb += deliveredBefore(ds, c, h.at, window)
		} else {
			hb += qc.sinkConcurrency * qc.sinkBatchSize * qc.partitions // unknown member: should not happen
		}
	}
	b.total += hb + clientDups
	lines = append(lines, fmt.Sprintf("handovers %d: bound %d; client retries: bound %d", len(handovers), hb, clientDups))
	if rep.other > hb+clientDups {
		b.errs = append(b.errs, fmt.Sprintf("%d duplicates follow no kill of the consumer that delivered them first, above the bound %d of %d handovers and client retries", rep.other, hb+clientDups, len(handovers)))
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
