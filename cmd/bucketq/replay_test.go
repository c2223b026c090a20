package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bucketq/bucketq/bucket"
	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/journal"
	"github.com/bucketq/bucketq/manifest"
)

// journaledBucket makes a bucket directory holding n journaled batches of
// two events each (sequences 0..n-1), as a consumer with the journal on
// leaves it.
func journaledBucket(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	bkt, _, err := bucket.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var entries []manifest.Entry
	for i := 0; i < n; i++ {
		recs := [][]byte{
			[]byte(fmt.Sprintf(`{"specversion":"1.0","id":"s%d-a","source":"t","type":"usage","subject":"cust-a","time":"2026-01-01T00:00:00Z"}`, i)),
			[]byte(fmt.Sprintf(`{"specversion":"1.0","id":"s%d-b","source":"t","type":"usage","subject":"cust-b","time":"2026-01-01T00:00:00Z"}`, i)),
		}
		data, err := format.EncodeBatch(format.CompressionNone, recs)
		if err != nil {
			t.Fatal(err)
		}
		loc := fmt.Sprintf("ingest/data/%03d.batch", i)
		if err := bkt.Upload(ctx, loc, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		at := time.Date(2026, 1, 1, 10, i, 0, 0, time.UTC)
		entries = append(entries, manifest.Entry{Sequence: uint64(i), Location: loc, Metadata: []manifest.Metadata{{IngestionTimeMs: at.UnixMilli(), Payload: format.EventsHeader.Bytes()}}})
	}
	j, err := journal.New(bkt, journal.Config{Retention: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Write(ctx, entries, 1); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestReplayCommand(t *testing.T) {
	dir := journaledBucket(t, 5)
	out := filepath.Join(t.TempDir(), "audit.ndjson")
	run := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := runMain(context.Background(), append([]string{"replay", "--bucket-dir", dir, "--quiet"}, args...), &stdout, &stderr, func(string) string { return "" })
		return code, stdout.String(), stderr.String()
	}
	// By time: minutes 1..3 of the hour hold sequences 1, 2, 3.
	code, _, stderr := run("--from", "2026-01-01T10:01:00Z", "--to", "2026-01-01T10:04:00Z", "--sink", "file:"+out, "--subject", "cust-a")
	if code != 0 || !strings.Contains(stderr, "replay: sent 3 events from 3 batches") {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"s1-a", "s2-a", "s3-a"} {
		if !bytes.Contains(b, []byte(`"id":"`+id+`"`)) {
			t.Errorf("%s missing from the sink file:\n%s", id, b)
		}
	}
	if bytes.Count(b, []byte("\n")) != 3 {
		t.Fatalf("sink file holds more than the 3 selected events:\n%s", b)
	}

	// A dry run prints the plan on stdout and sends nothing.
	code, stdout, _ := run("--from-seq", "0", "--dry-run")
	if code != 0 || !strings.Contains(stdout, "would send sequence 4 ingest/data/004.batch") || !strings.Contains(stdout, "would send 10 events") {
		t.Fatalf("dry run: exit %d\n%s", code, stdout)
	}

	// Something missing: exit 1, and the summary lists it.
	if err := os.Remove(filepath.Join(dir, "ingest/data/002.batch")); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = run("--from-seq", "0", "--to-seq", "6", "--sink", "file:"+out)
	if code != 1 || !strings.Contains(stderr, "batch_missing: sequence 2 ingest/data/002.batch") || !strings.Contains(stderr, "gap: sequences 5..6") {
		t.Fatalf("missing batch: exit %d\n%s", code, stderr)
	}

	// Bad flags: exit 2 with a message naming the flag.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "say what to replay"},
		{[]string{"--from", "yesterday"}, `--from "yesterday": want an RFC 3339 time`},
		{[]string{"--from", "2026-01-01T10:00:00Z", "--from-seq", "3"}, "not both"},
		{[]string{"--from-seq", "5", "--to-seq", "4"}, "--to-seq"},
		{[]string{"--from-seq", "0", "--signal", "spans"}, `--signal "spans"`},
		{[]string{"--from-seq", "0", "--resume"}, "--resume needs --checkpoint"},
		{[]string{"--from-seq", "0", "--rate", "-1"}, "--rate"},
		{[]string{"--from-seq", "0", "--listen", ":0"}, "listen"},
	} {
		code, _, stderr := run(tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}
