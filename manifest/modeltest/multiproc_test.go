package modeltest

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bucketq/bucketq/internal/storetest"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/manifest/cas/fsstore"
	"github.com/bucketq/bucketq/manifest/cas/s3store"
)

// Environment of a helper process (a re-exec of this test binary).
const (
	envRole  = "BUCKETQ_MODEL_HELPER" // "producer" or "consumer"
	envStore = "BUCKETQ_MODEL_STORE"  // "fs:<dir>" or "s3:<base64 bucket YAML>"
	envDir   = "BUCKETQ_MODEL_DIR"    // where logs go
	envID    = "BUCKETQ_MODEL_ID"
	envN     = "BUCKETQ_MODEL_N" // appends per producer
	envSeed  = "BUCKETQ_MODEL_SEED"
)

// openStore opens the store a spec names, in the parent or in a helper.
func openStore(spec string) (cas.Store, error) {
	kind, arg, _ := strings.Cut(spec, ":")
	switch kind {
	case "fs":
		return fsstore.New(arg)
	case "s3":
		y, err := base64.StdEncoding.DecodeString(arg)
		if err != nil {
			return nil, err
		}
		return s3store.NewFromYAML(y)
	}
	return nil, fmt.Errorf("unknown store spec %q", spec)
}

func TestMultiProcessFS(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	runMultiProcess(t, "fs:"+filepath.Join(t.TempDir(), "bucket"), 4, 150)
}

func TestMultiProcessS3(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	cfg := storetest.S3Config(t)
	runMultiProcess(t, "s3:"+base64.StdEncoding.EncodeToString(cfg.YAML()), 3, 60)
}

// TestHelperProcess is the producer or consumer process body; it does
// nothing unless started by runMultiProcess.
func TestHelperProcess(t *testing.T) {
	role := os.Getenv(envRole)
	if role == "" {
		t.Skip("helper process for the multi-process model test")
	}
	store, err := openStore(os.Getenv(envStore))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	dir := os.Getenv(envDir)
	id := os.Getenv(envID)
	// Every conflict the store reports is one line in the role's conflict
	// log, so the test can prove the processes really raced.
	clog, err := openLog(filepath.Join(dir, "conflicts-"+role+"-"+id+".log"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	q := manifest.NewQueue(store, mpath, manifest.Options{MinBackoff: time.Millisecond, MaxBackoff: 50 * time.Millisecond, RetryTimeout: 60 * time.Second,
		OnConflict: func() { _ = clog.printf("conflict") }})
	seed, _ := strconv.ParseUint(os.Getenv(envSeed), 10, 64)
	r := rand.New(rand.NewPCG(seed, uint64(os.Getpid())))
	switch role {
	case "producer":
		n, _ := strconv.Atoi(os.Getenv(envN))
		err = produce(q, dir, id, n, r)
	case "consumer":
		err = consumeProcess(q, dir, id, r)
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, role, id, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// logFile appends whole lines with one write(2) each, so a SIGKILL leaves
// at most a missing line, and lines from several processes do not mix.
type logFile struct{ f *os.File }

func openLog(path string) (*logFile, error) {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	return &logFile{f}, err
}

func (l *logFile) printf(format string, args ...any) error {
	_, err := l.f.WriteString(fmt.Sprintf(format, args...) + "\n")
	return err
}

func readLines(path string) ([][]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		out = append(out, strings.Fields(sc.Text()))
	}
	return out, sc.Err()
}

// produce appends n batches (groups of 1-3 locations) and logs each ack.
// A restarted producer resumes after the last batch it started: the
// in-flight one was abandoned by the crash, as a crashed producer's buffer
// is, and the client retries its events under a new batch.
func produce(q *manifest.Queue, dir, id string, n int, r *rand.Rand) error {
	path := filepath.Join(dir, "producer-"+id+".log")
	lines, err := readLines(path)
	if err != nil {
		return err
	}
	next := 0
	for _, l := range lines {
		if len(l) == 2 && l[0] == "start" {
			next, _ = strconv.Atoi(l[1])
			next++
		}
	}
	log, err := openLog(path)
	if err != nil {
		return err
	}
	for i := next; i < n; i++ {
		if err := log.printf("start %d", i); err != nil {
			return err
		}
		entries := make([]manifest.NewEntry, 1+r.IntN(3))
		for k := range entries {
			entries[k] = manifest.NewEntry{Location: fmt.Sprintf("ingest/data/p%s-%d-%d.batch", id, i, k), Metadata: []manifest.Metadata{{Payload: []byte{1, 4, 2, 0}}}}
		}
		seqs, err := q.Append(context.Background(), entries...)
		if err != nil {
			return fmt.Errorf("append %d: %w", i, err)
		}
		var b strings.Builder
		fmt.Fprintf(&b, "ack %d", i)
		for k, e := range entries {
			fmt.Fprintf(&b, " %s=%d", e.Location, seqs[k])
		}
		if err := log.printf("%s", b.String()); err != nil {
			return err
		}
	}
	return log.printf("done")
}

// consumeProcess fences, then reads, delivers a random prefix (logging it
// before the dequeue, as a consumer forwards before acking) and dequeues
// it, until the stop file appears. Fenced, it fences again, as a restarted
// consumer does. Ordering events go to a log shared by all consumers.
func consumeProcess(q *manifest.Queue, dir, id string, r *rand.Rand) error {
	deliver, err := openLog(filepath.Join(dir, "consumer-"+id+".log"))
	if err != nil {
		return err
	}
	events, err := openLog(filepath.Join(dir, "events.log"))
	if err != nil {
		return err
	}
	ctx := context.Background()
	stopped := func() bool {
		_, err := os.Stat(filepath.Join(dir, "stop"))
		return err == nil
	}
	for !stopped() {
		lease, err := q.Fence(ctx)
		if err != nil {
			return fmt.Errorf("fence: %w", err)
		}
		if err := events.printf("fence %d %s", lease.Epoch(), id); err != nil {
			return err
		}
		for !stopped() {
			m, err := lease.Read(ctx)
			if errors.Is(err, manifest.ErrFenced) {
				break
			}
			if err != nil {
				return fmt.Errorf("read: %w", err)
			}
			if len(m.Entries) == 0 {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			batch := m.Entries[:1+r.IntN(len(m.Entries))]
			var b strings.Builder
			fmt.Fprintf(&b, "deliver %d", lease.Epoch())
			for _, e := range batch {
				fmt.Fprintf(&b, " %s=%d", e.Location, e.Sequence)
			}
			if err := deliver.printf("%s", b.String()); err != nil {
				return err
			}
			through := batch[len(batch)-1].Sequence
			if err := events.printf("dqstart %d %s %d", lease.Epoch(), id, through); err != nil {
				return err
			}
			removed, err := lease.Dequeue(ctx, through)
			if errors.Is(err, manifest.ErrFenced) {
				if err := events.printf("dqfenced %d %s %d", lease.Epoch(), id, through); err != nil {
					return err
				}
				break
			}
			if err != nil {
				return fmt.Errorf("dequeue: %w", err)
			}
			b.Reset()
			fmt.Fprintf(&b, "dequeued %d %s %d", lease.Epoch(), id, through)
			for _, e := range removed {
				fmt.Fprintf(&b, " %s=%d", e.Location, e.Sequence)
			}
			if err := events.printf("%s", b.String()); err != nil {
				return err
			}
			if r.IntN(20) == 0 {
				break // restart: fence again (and fence the other consumer)
			}
		}
	}
	return nil
}

type proc struct {
	role, id string
	cmd      *exec.Cmd
	done     chan error
	stderr   *strings.Builder
	finished bool // exited 0
}

// runMultiProcess runs producers and two consumers as separate processes
// on the store spec names, SIGKILLs and restarts them at random, then
// checks the invariants from their logs.
func runMultiProcess(t *testing.T, spec string, producers, perProducer int) {
	seed := seed(t)
	r := rand.New(rand.NewPCG(seed, 0))
	dir := t.TempDir()
	store, err := openStore(spec)
	if err != nil {
		t.Fatal(err)
	}
	start := func(role, id string) *proc {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), envRole+"="+role, envStore+"="+spec, envDir+"="+dir, envID+"="+id,
			envN+"="+strconv.Itoa(perProducer), envSeed+"="+strconv.FormatUint(seed, 10))
		p := &proc{role: role, id: id, cmd: cmd, done: make(chan error, 1), stderr: &strings.Builder{}}
		cmd.Stderr = p.stderr
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s %s: %v", role, id, err)
		}
		go func() { p.done <- cmd.Wait() }()
		return p
	}
	var procs []*proc
	for i := 0; i < producers; i++ {
		procs = append(procs, start("producer", strconv.Itoa(i)))
	}
	for i := 0; i < 2; i++ {
		procs = append(procs, start("consumer", strconv.Itoa(i)))
	}
	var mu sync.Mutex
	kills := map[string]int{}
	// Generous: a loaded 2-core CI machine restarting processes is slow,
	// and a pass takes a few seconds.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if time.Now().After(deadline) {
			for _, p := range procs {
				_ = p.cmd.Process.Kill()
			}
			t.Fatalf("producers did not finish in time (kills %v)", kills)
		}
		running := 0
		for i, p := range procs {
			select {
			case err := <-p.done:
				if err != nil {
					t.Fatalf("%s %s failed: %v\n%s", p.role, p.id, err, p.stderr)
				}
				p.finished = true
				if p.role == "consumer" {
					t.Fatalf("consumer %s exited before the stop file", p.id)
				}
				procs[i] = p
			default:
			}
			if p.role == "producer" && !p.finished {
				running++
			}
		}
		if running == 0 {
			break
		}
		time.Sleep(time.Duration(20+r.IntN(150)) * time.Millisecond)
		// SIGKILL one live process and restart it.
		i := r.IntN(len(procs))
		p := procs[i]
		if p.finished {
			continue
		}
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		if err := <-p.done; err == nil {
			p.finished = true // it had just finished
			continue
		}
		mu.Lock()
		kills[p.role]++
		mu.Unlock()
		procs[i] = start(p.role, p.id)
	}
	if err := os.WriteFile(filepath.Join(dir, "stop"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		if p.role != "consumer" {
			continue
		}
		select {
		case err := <-p.done:
			if err != nil {
				t.Fatalf("consumer %s: %v\n%s", p.id, err, p.stderr)
			}
		case <-time.After(90 * time.Second):
			_ = p.cmd.Process.Kill()
			t.Fatalf("consumer %s did not stop", p.id)
		}
	}

	// Final drain by this process: what is left counts as delivered.
	q := manifest.NewQueue(store, mpath, manifest.Options{MinBackoff: time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	ctx := context.Background()
	lease, err := q.Fence(ctx)
	if err != nil {
		t.Fatal(err)
	}
	left, err := lease.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(left.Entries) > 0 {
		if _, err := lease.Dequeue(ctx, left.Entries[len(left.Entries)-1].Sequence); err != nil {
			t.Fatal(err)
		}
	}
	if end, err := q.Read(ctx); err != nil || len(end.Entries) != 0 {
		t.Fatalf("after the final drain: %v, %v", end, err)
	}

	checkLogs(t, dir, producers, perProducer, left, kills)
}

func parsePairs(fields []string) (map[string]uint64, error) {
	out := map[string]uint64{}
	for _, f := range fields {
		loc, s, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("bad pair %q", f)
		}
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return nil, err
		}
		out[loc] = n
	}
	return out, nil
}

func checkLogs(t *testing.T, dir string, producers, perProducer int, left *manifest.Manifest, kills map[string]int) {
	t.Helper()
	acked := map[string]uint64{}
	conflicts := 0
	for i := 0; i < producers; i++ {
		lines, err := readLines(filepath.Join(dir, fmt.Sprintf("producer-%d.log", i)))
		if err != nil {
			t.Fatal(err)
		}
		cl, err := readLines(filepath.Join(dir, fmt.Sprintf("conflicts-producer-%d.log", i)))
		if err != nil {
			t.Fatal(err)
		}
		conflicts += len(cl)
		sawDone := false
		var last uint64
		haveLast := false
		for _, l := range lines {
			switch {
			case len(l) > 2 && l[0] == "ack":
				pairs, err := parsePairs(l[2:])
				if err != nil {
					t.Fatalf("producer %d log: %v", i, err)
				}
				// One producer appends one group at a time, so its
				// sequences increase from ack to ack.
				lo, hi := uint64(math.MaxUint64), uint64(0)
				for loc, s := range pairs {
					acked[loc] = s
					lo, hi = min(lo, s), max(hi, s)
				}
				if haveLast && lo <= last {
					t.Errorf("producer %d: %s got sequences from %d, not above its previous %d", i, l[1], lo, last)
				}
				last, haveLast = hi, true
			case len(l) == 1 && l[0] == "done":
				sawDone = true
			}
		}
		if !sawDone {
			t.Errorf("producer %d never finished", i)
		}
	}
	// delivered: location → sequences it was delivered with.
	delivered := map[string]map[uint64]bool{}
	seqLoc := map[uint64]string{}
	addDelivered := func(loc string, s uint64) {
		if delivered[loc] == nil {
			delivered[loc] = map[uint64]bool{}
		}
		delivered[loc][s] = true
		if other, ok := seqLoc[s]; ok && other != loc {
			t.Errorf("sequence %d used by %s and %s", s, other, loc)
		}
		seqLoc[s] = loc
	}
	for i := 0; i < 2; i++ {
		lines, err := readLines(filepath.Join(dir, fmt.Sprintf("consumer-%d.log", i)))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			if len(l) > 2 && l[0] == "deliver" {
				pairs, err := parsePairs(l[2:])
				if err != nil {
					t.Fatal(err)
				}
				for loc, s := range pairs {
					addDelivered(loc, s)
				}
			}
		}
	}
	for _, e := range left.Entries {
		addDelivered(e.Location, e.Sequence)
	}
	// No loss: every acked location was delivered with its acked sequence.
	lost := 0
	for loc, s := range acked {
		if !delivered[loc][s] {
			lost++
			if lost <= 10 {
				t.Errorf("acked %s (sequence %d) was never delivered: LOST (delivered with %v)", loc, s, delivered[loc])
			}
		}
	}
	// Fencing, from the shared, ordered event log.
	events, err := readLines(filepath.Join(dir, "events.log"))
	if err != nil {
		t.Fatal(err)
	}
	var maxFenced uint64
	fenceSeen := map[uint64]bool{}
	dqStartFencedAt := map[string]uint64{} // "epoch id through" → max fenced epoch when the dequeue started
	dequeues, fencedDequeues := 0, 0
	removedBy := map[string]int{}
	for _, l := range events {
		if len(l) < 3 {
			continue // a line cut by SIGKILL cannot happen with one write, but be lenient
		}
		epoch, _ := strconv.ParseUint(l[1], 10, 64)
		switch l[0] {
		case "fence":
			if fenceSeen[epoch] {
				t.Errorf("epoch %d returned by two fences", epoch)
			}
			fenceSeen[epoch] = true
			maxFenced = max(maxFenced, epoch)
		case "dqstart":
			dqStartFencedAt[strings.Join(l[1:4], " ")] = maxFenced
		case "dqfenced":
			fencedDequeues++
		case "dequeued":
			dequeues++
			if at, ok := dqStartFencedAt[strings.Join(l[1:4], " ")]; ok && at > epoch {
				t.Errorf("consumer %s dequeued through %s with epoch %d after a fence to epoch %d had returned", l[2], l[3], epoch, at)
			}
			pairs, err := parsePairs(l[4:])
			if err != nil {
				t.Fatal(err)
			}
			for loc, s := range pairs {
				if !delivered[loc][s] {
					t.Errorf("dequeue by consumer %s removed %s (sequence %d) that was never delivered", l[2], loc, s)
				}
				removedBy[loc]++
			}
		}
	}
	twice := 0
	for _, n := range removedBy {
		if n > 1 {
			twice++
		}
	}
	if twice > 0 {
		t.Errorf("%d locations removed by two dequeues (no lost responses here, so no re-append is possible)", twice)
	}
	t.Logf("%d acked locations over %d producers × %d batches; %d producer conflicts; %d dequeues, %d fenced dequeues, %d fences; kills %v; %d left for the final drain",
		len(acked), producers, perProducer, conflicts, dequeues, fencedDequeues, len(fenceSeen), kills, len(left.Entries))
	if kills["producer"]+kills["consumer"] == 0 || dequeues == 0 || len(acked) == 0 {
		t.Error("the run did not exercise kills, dequeues and appends")
	}
	if conflicts == 0 {
		t.Error("no producer append met a conflict: the processes did not race on the manifest")
	}
}
