package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bucketq/bucketq/bucket"
	"github.com/bucketq/bucketq/internal/openmetertest"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/partition"
)

// The partitioned chaos test (issue 15, RFC 0005): 4 partitions, 3
// producers and 2 consumer processes sharing the partitions through the
// lease table, consumers SIGKILLed and restarted while clients send.
const (
	partPartitions = 4
	partConsumers  = 2
	// partLeaseTimeout is the consumers' lease_timeout: short, so that a
	// killed consumer's partitions move within the run.
	partLeaseTimeout = 2 * time.Second
	// partKillEvery is the mean time between consumer kills: longer than
	// the lease timeout, so the survivor takes the partitions of the dead
	// before the next kill.
	partKillEvery = 4 * time.Second
	partClients   = 6
	// partSinkConcurrency is the consumers' sink_concurrency, fixed so
	// that the redelivery bound (sink requests answered behind an
	// unfinished one) is finite: adaptive would allow 32.
	partSinkConcurrency = 4
	// partDequeueInterval is the consumers' dequeue_interval (the
	// default), the other term of the redelivery bound.
	partDequeueInterval = time.Second
	partDrain           = 2 * time.Minute
)

// leaseTable is the part of the lease table object (package partition,
// "{manifest}.leases") the test reads.
type leaseTable struct {
	Members map[string]struct{ Beat uint64 } `json:"members"`
	Owners  []string                         `json:"owners"`
}

// TestChaosPartitions runs partitions: 4 with 3 producer processes (homes
// 0, 1 and 2; producer 2 is moved to partition 3 halfway, as RFC 0005 moves
// a producer) and 2 `bucketq consume` processes that share the partitions
// through the lease table, on the real S3 server behind the fault proxy.
// Consumers are SIGKILLed and restarted every few seconds while clients
// send for BUCKETQ_CHAOS_PART_SECONDS (default 15). It checks that every
// acked event reaches the sink (or, if poison, the dead letters of some
// partition), that every partition changed owner in the lease table, that
// the final table gives the partitions to the two live consumers only,
// that every partition's manifest, data prefix and journal drain to empty,
// and that duplicates stay within the redelivery bound of RFC 0005, per
// kill and in total (redeliveryBound; each consumer sends through a
// sinkRecorder, so every duplicate is attributed to the kill or handover
// that caused it).
func TestChaosPartitions(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test skipped in -short mode")
	}
	sendFor := 15 * time.Second
	if v := os.Getenv("BUCKETQ_CHAOS_PART_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("BUCKETQ_CHAOS_PART_SECONDS=%q is not a positive number", v)
		}
		sendFor = time.Duration(n) * time.Second
	}
	endpoint, access, secret, bktName := s3Env(t)
	testStart := time.Now()
	bin := buildBinary(t)
	dir := t.TempDir()

	proxy := startS3Faults(t, endpoint)
	sink := openmetertest.New(openmetertest.Options{Poison: openmetertest.PoisonFlag})
	defer sink.Close()
	rec := newSinkRecorder(sink.Endpoint, partConsumers)
	defer rec.close()

	run := fmt.Sprintf("chaos-part-%d", time.Now().UnixNano())
	bucketYAML := func(ep string) string { return s3YAML(bktName, ep, access, secret) }
	cfgPath := writeChaosConfig(t, dir, bucketYAML(proxy.Addr()), run, fmt.Sprintf(`partitions: %d
lease_timeout: %s
sink_concurrency: %d
dequeue_interval: %s
`, partPartitions, partLeaseTimeout, partSinkConcurrency, partDequeueInterval))
	logName := filepath.Join(dir, "processes.log")
	if v := os.Getenv("BUCKETQ_CHAOS_PART_LOG"); v != "" { // keep every process's log there
		logName = v
	}
	logf, err := os.Create(logName)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			if len(b) > 20000 {
				b = b[len(b)-20000:]
			}
			t.Logf("last process output:\n%s", b)
		}
	}()

	prodArgs := func(addr string, home int) []string {
		return []string{"produce", "--config", cfgPath, "--listen", addr, "--partition", strconv.Itoa(home)}
	}
	var prods, cons []*proc
	for i := 0; i < producers; i++ {
		addr := freePort(t)
		prods = append(prods, &proc{name: fmt.Sprintf("producer-%d", i), bin: bin, log: logf, addr: addr, args: prodArgs(addr, i)})
	}
	for i := 0; i < partConsumers; i++ {
		addr := freePort(t)
		cons = append(cons, &proc{name: fmt.Sprintf("consumer-%d", i), bin: bin, log: logf, addr: addr,
			args: []string{"consume", "--config", cfgPath, "--listen", addr, "--sink", rec.endpoint(i)}})
	}
	all := append(append([]*proc{}, prods...), cons...)
	for _, p := range all {
		p.start(t)
	}
	for _, p := range all {
		if !waitHealthy(p.addr, 90*time.Second) {
			t.Fatalf("%s did not become healthy", p.name)
		}
	}
	defer func() {
		for _, p := range all {
			p.stop()
		}
	}()

	checkBkt, checkStore, err := bucket.Open(context.Background(), []byte(bucketYAML(endpoint)), nil)
	if err != nil {
		t.Fatal(err)
	}
	leasePath := partition.LeasePath(run + "/manifest")
	readTable := func(ctx context.Context) (*leaseTable, error) {
		b, _, err := checkStore.Read(ctx, leasePath)
		if err != nil {
			return nil, err
		}
		var lt leaseTable
		if err := json.Unmarshal(b, &lt); err != nil {
			return nil, fmt.Errorf("%s: %w", leasePath, err)
		}
		return &lt, nil
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var bg sync.WaitGroup

	// The lease watcher: every owner each partition had, in order.
	var (
		ownersMu sync.Mutex
		owners   = make([][]string, partPartitions)
		moveLog  []ownerChange // every owner change, in order
	)
	bg.Add(1)
	go func() {
		defer bg.Done()
		for ctx.Err() == nil {
			if lt, err := readTable(ctx); err == nil {
				ownersMu.Lock()
				for p := 0; p < partPartitions && p < len(lt.Owners); p++ {
					if o := lt.Owners[p]; o != "" && (len(owners[p]) == 0 || owners[p][len(owners[p])-1] != o) {
						owners[p] = append(owners[p], o)
						moveLog = append(moveLog, ownerChange{at: time.Now(), p: p, owner: o})
					}
				}
				ownersMu.Unlock()
			} else if !errors.Is(err, cas.ErrNotExist) && ctx.Err() == nil {
				t.Errorf("reading the lease table: %v", err)
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	proxy.Enable(true)

	// The metering API misbehaves on and off while clients send.
	faultCtx, stopFaults := context.WithCancel(ctx)
	var faults sync.WaitGroup
	faults.Add(1)
	go func() {
		defer faults.Done()
		sinkFaults(faultCtx, sink, rand.New(rand.NewPCG(5, 6)), 200*time.Millisecond)
	}()

	// The killer: SIGKILLs the consumers in turn, so each partition is
	// freed by a lease timeout and taken by the other consumer; halfway it
	// moves producer 2 to partition 3 with a clean restart.
	var kills atomic.Int64
	var (
		killMu  sync.Mutex
		killLog []killRec
		consPid = map[int]int{} // consumer process id → consumer index
	)
	for i, c := range cons {
		consPid[c.pid()] = i
	}
	killCtx, stopKiller := context.WithCancel(ctx)
	var killer sync.WaitGroup
	killer.Add(1)
	go func() {
		defer killer.Done()
		rnd := rand.New(rand.NewPCG(7, 8))
		wait := time.Second
		moved := false
		start := time.Now()
		for i := 0; ; i++ {
			select {
			case <-killCtx.Done():
				return
			case <-time.After(wait):
			}
			if !moved && time.Since(start) > sendFor/2 {
				moved = true
				p := prods[2]
				p.stop()
				p.mu.Lock()
				p.args = prodArgs(p.addr, 3)
				p.mu.Unlock()
				p.start(t)
			}
			wait = partKillEvery/2 + time.Duration(rnd.Int64N(int64(partKillEvery)))
			c := cons[i%len(cons)]
			pid := c.pid()
			c.kill()
			killMu.Lock()
			killLog = append(killLog, killRec{at: time.Now(), cons: i % len(cons), pid: pid})
			killMu.Unlock()
			kills.Add(1)
			time.Sleep(time.Duration(300+rnd.IntN(700)) * time.Millisecond)
			c.start(t)
			killMu.Lock()
			consPid[c.pid()] = i % len(cons)
			killMu.Unlock()
		}
	}()

	// Clients send for sendFor; every request is retried, against any
	// producer, until acked.
	var (
		acked   sync.Map // id -> poison bool
		ackedN  atomic.Int64
		retries atomic.Int64
		nextReq atomic.Int64
	)
	httpc := &http.Client{Timeout: requestTimeout}
	var cw sync.WaitGroup
	start := time.Now()
	for c := 0; c < partClients; c++ {
		cw.Add(1)
		go func(c int) {
			defer cw.Done()
			rnd := rand.New(rand.NewPCG(uint64(c), 77))
			for time.Since(start) < sendFor && !t.Failed() {
				r := int(nextReq.Add(1)) - 1
				body, ids, poison := chaosRequest(r, eventsPerReq)
				if !postUntilAcked(t, httpc, prods, rnd, r, body, &retries) {
					return
				}
				for i, id := range ids {
					acked.Store(id, poison[i])
				}
				ackedN.Add(eventsPerReq)
				time.Sleep(20 * time.Millisecond)
			}
		}(c)
	}
	cw.Wait()
	sendTime := time.Since(start)
	stopKiller()
	killer.Wait() // no restart races the one below
	// Every process up again, faults off, so the drain can finish.
	startStopped(t, all, func(p *proc) {
		if i := slices.Index(cons, p); i >= 0 {
			killMu.Lock()
			consPid[p.pid()] = i
			killMu.Unlock()
		}
	})
	proxy.Enable(false)
	stopFaults()
	faults.Wait() // it clears the sink's faults as it returns
	if t.Failed() {
		return
	}

	// Drain: every acked event delivered or dead-lettered, every
	// partition's manifest, data prefix and journal empty.
	var poisonWant, lost, poisonFound int
	entriesLeft := make([]int, partPartitions)
	filesLeft := make([]int, partPartitions)
	deadline := time.Now().Add(partDrain)
	for {
		delivered := map[string]bool{}
		for _, ev := range sink.Events() {
			delivered[ev.ID] = true
		}
		dead := map[string]bool{}
		for p := range partPartitions {
			d, err := deadLettered(checkBkt, partition.Suffix(run+"/dead-letter", p))
			if err != nil {
				t.Fatal(err)
			}
			for id := range d {
				dead[id] = true
			}
		}
		lost, poisonWant, poisonFound = countLost(&acked, delivered, dead)
		left := 0
		for p := range partPartitions {
			m, err := manifest.NewQueue(checkStore, partition.Suffix(run+"/manifest", p), manifest.Options{}).Read(context.Background())
			if err != nil {
				t.Fatalf("partition %d manifest: %v", p, err)
			}
			entriesLeft[p] = len(m.Entries)
			filesLeft[p] = 0
			count := func(string) error { filesLeft[p]++; return nil }
			checkBkt.Iter(context.Background(), partition.Suffix(run+"/data", p)+"/", count)
			checkBkt.Iter(context.Background(), partition.Suffix(run+"/journal", p)+"/", count)
			left += entriesLeft[p] + filesLeft[p]
		}
		if (lost == 0 && left == 0) || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	drainTime := time.Since(start) - sendTime
	// The final table: dead members expired, the partitions shared by the
	// two live consumers. Give the lease manager a few renewals to settle.
	var final *leaseTable
	for end := time.Now().Add(4 * partLeaseTimeout); ; {
		final, err = readTable(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if settled(final) || time.Now().After(end) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	cancel()
	bg.Wait()

	ownersMu.Lock()
	moves := 0
	for p := range owners {
		moves += max(len(owners[p])-1, 0)
	}
	ownersMu.Unlock()
	st := proxy.Stats()
	summary := fmt.Sprintf("chaos partitions: %d partitions, events acked %d, delivered distinct %d, lost %d, duplicates delivered %d, poison dead-lettered %d/%d, manifest entries left %v, batch and journal files left %v, lease owner changes %d, final owners %q (consumer kills %d, client retries %d, s3 faults %d errors %d lost replies %d drops, send %.1fs, drain %.1fs, total %.1fs)",
		partPartitions, ackedN.Load(), sink.Distinct(), lost, sink.Duplicates(), poisonFound, poisonWant, entriesLeft, filesLeft,
		moves, final.Owners, kills.Load(), retries.Load(), st.Errors, st.LostReplies, st.Dropped, sendTime.Seconds(), drainTime.Seconds(), time.Since(testStart).Seconds())
	t.Log(summary)
	fmt.Println(summary)
	// Redelivery stays within the bound of RFC 0005 / README "When
	// duplicates happen": see redeliveryBound.
	killMu.Lock()
	ownersMu.Lock()
	rb := redeliveryBound(queueConfig{
		partitions: partPartitions, dequeueInterval: partDequeueInterval, windowIntervals: 3,
		sinkConcurrency: partSinkConcurrency, sinkBatchSize: sinkBatchSize, clients: partClients, eventsPerReq: eventsPerReq,
	}, observed{deliveries: rec.deliveries(), kills: killLog, moves: moveLog, consPid: consPid, clientDups: int(retries.Load()) * eventsPerReq})
	ownersMu.Unlock()
	killMu.Unlock()
	checkRedelivery(t, sink, rb)
	if ackedN.Load() == 0 {
		t.Errorf("no event acked")
	}
	if lost != 0 {
		t.Errorf("%d acked events lost", lost)
	}
	if poisonFound != poisonWant {
		t.Errorf("poison events in dead-letter prefixes: %d, want %d", poisonFound, poisonWant)
	}
	for p := range partPartitions {
		if entriesLeft[p] != 0 || filesLeft[p] != 0 {
			t.Errorf("partition %d: manifest entries left %d, batch and journal files left %d; want 0 and 0", p, entriesLeft[p], filesLeft[p])
		}
	}
	if kills.Load() < 2 {
		t.Errorf("the killer killed %d consumers; the test proved nothing about lease moves", kills.Load())
	}
	ownersMu.Lock()
	for p := range owners {
		if len(owners[p]) < 2 {
			t.Errorf("partition %d never changed owner in the lease table (owners seen %q)", p, owners[p])
		}
	}
	ownersMu.Unlock()
	if !settled(final) {
		t.Errorf("final lease table %+v: want %d live members sharing all %d partitions", final, partConsumers, partPartitions)
	}
}

// settled reports whether the lease table lists exactly the live consumers
// and gives every partition to one of them, balanced.
func settled(lt *leaseTable) bool {
	if len(lt.Members) != partConsumers || len(lt.Owners) != partPartitions {
		return false
	}
	held := map[string]int{}
	for _, o := range lt.Owners {
		if _, ok := lt.Members[o]; !ok {
			return false
		}
		held[o]++
	}
	counts := make([]int, 0, len(held))
	for _, n := range held {
		counts = append(counts, n)
	}
	slices.Sort(counts)
	return len(counts) == partConsumers && counts[len(counts)-1]-counts[0] <= 1
}

// pid is the process id of p's last start, -1 before.
func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return -1
	}
	return p.cmd.Process.Pid
}
