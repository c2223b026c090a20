package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readReplayCheckpoint returns how far a replay checkpoint says every
// event was sent (ok false before the first save or while unreadable).
func readReplayCheckpoint(path string) (through uint64, have bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	var c struct {
		Have    bool   `json:"have_through"`
		Through uint64 `json:"through_sequence"`
	}
	if json.Unmarshal(b, &c) != nil {
		return 0, false
	}
	return c.Through, c.Have
}

// TestReplayProcessSurvivesSIGKILL: `bucketq replay --checkpoint` is
// killed (SIGKILL) twice mid-run and finished with --resume. Every event
// of the range reaches the file: sink at least once, each resume starts
// after the checkpoint the kill left (its summary says so, and the
// checkpoint never moves back), and the resumes did not start over.
func TestReplayProcessSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs bucketq replay processes")
	}
	bin := filepath.Join(t.TempDir(), "bucketq")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/bucketq/bucketq/cmd/bucketq").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/bucketq: %v\n%s", err, out)
	}
	const n = 300 // entries of two events: sequences 0..299
	dir := journaledBucket(t, n)
	work := t.TempDir()
	out, ck := filepath.Join(work, "audit.ndjson"), filepath.Join(work, "ck.json")
	// --rate keeps the run long enough to be killed in the middle (600
	// events at 600/s); small requests move the checkpoint often.
	args := []string{"replay", "--bucket-dir", dir, "--from-seq", "0", "--to-seq", fmt.Sprint(n - 1),
		"--sink", "file:" + out, "--sink-batch-size", "7", "--rate", "600", "--checkpoint", ck}
	start := func(extra ...string) (*exec.Cmd, *syncBuffer, chan struct{}) {
		return startChild(t, bin, append(args, extra...)...)
	}
	var last uint64
	for k, target := range []uint64{60, 180} {
		var extra []string
		if k > 0 {
			extra = []string{"--resume"}
		}
		cmd, buf, exited := start(extra...)
		for {
			select {
			case <-exited:
				t.Fatalf("replay %d exited before its kill at sequence %d (%v):\n%s", k+1, target, cmd.ProcessState, buf.String())
			case <-time.After(2 * time.Millisecond):
			}
			if through, have := readReplayCheckpoint(ck); have && through >= target {
				break
			}
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("replay %d was not killed: %v", k+1, cmd.ProcessState)
		}
		through, have := readReplayCheckpoint(ck)
		if !have || through < last {
			t.Fatalf("after kill %d the checkpoint says %d (have %v), before it %d", k+1, through, have, last)
		}
		t.Logf("kill %d: checkpoint through sequence %d", k+1, through)
		last = through
	}
	// A fresh run over the unfinished checkpoint is refused (exit 2).
	cmd, buf, exited := start()
	<-exited
	if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(buf.String(), "--resume") {
		t.Fatalf("fresh run over an unfinished checkpoint: exit %d\n%s", code, buf.String())
	}
	cmd, buf, exited = start("--resume")
	select {
	case <-exited:
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-exited
		t.Fatalf("resumed replay did not finish in a minute:\n%s", buf.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 || !strings.Contains(buf.String(), fmt.Sprintf("resumed after sequence %d", last)) {
		t.Fatalf("final resume: exit %d, want 0 and a resume after %d\n%s", code, last, buf.String())
	}

	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]int{}
	lines := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			// A kill may cut the last line of a write short; the resume
			// re-sends its events.
			continue
		}
		seen[ev.ID]++
		lines++
	}
	for i := 0; i < n; i++ {
		for _, s := range []string{"a", "b"} {
			if seen[fmt.Sprintf("s%d-%s", i, s)] == 0 {
				t.Errorf("event s%d-%s never reached the sink", i, s)
			}
		}
	}
	if len(seen) != 2*n {
		t.Errorf("%d distinct events in the sink, want %d", len(seen), 2*n)
	}
	// Each resume re-sends at most what its kill left after the
	// checkpoint: far fewer than three full runs.
	if lines >= 2*2*n {
		t.Errorf("%d lines for %d events: a resume started over", lines, 2*n)
	}
	t.Logf("%d lines for %d events", lines, 2*n)
}
