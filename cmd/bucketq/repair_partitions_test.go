package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/manifest"
)

// TestRepairPartitions runs `bucketq repair manifest` on a directory bucket
// of four partitions: 0 verifies, 1 was never written, 2 and 3 are damaged
// (2 lost one entry's bits, 3 is zero bytes, with an unreferenced batch in
// its own data prefix). Without --partition every damaged one is repaired
// and the others are left byte for byte; --partition P repairs P alone;
// bad --partition values are usage errors that write nothing.
func TestRepairPartitions(t *testing.T) {
	batch := func(id string) []byte {
		b, err := format.EncodeBatch(format.CompressionNone, [][]byte{[]byte(`{"id":"` + id + `"}`)})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	entry := func(seq uint64, loc string) manifest.Entry {
		return manifest.Entry{Sequence: seq, Location: loc, Metadata: []manifest.Metadata{{Payload: format.EventsHeader.Bytes()}}}
	}
	good := (&manifest.Manifest{NextSequence: 2, Epoch: 3, Entries: []manifest.Entry{entry(1, "ingest/data/a.batch")}}).Encode()
	two := []manifest.Entry{entry(5, "ingest/data-0002/a.batch"), entry(6, "ingest/data-0002/b.batch")}
	damaged2 := (&manifest.Manifest{NextSequence: 7, Epoch: 2, Entries: two}).Encode()
	damaged2[two[0].EncodedLen()+4+20] ^= 0x01 // inside the second entry's location

	setup := func(t *testing.T) string {
		dir := t.TempDir()
		for name, b := range map[string][]byte{
			"ingest/manifest":          good,
			"ingest/data/a.batch":      batch("a"),
			"ingest/manifest-0002":     damaged2,
			"ingest/data-0002/a.batch": batch("2a"),
			"ingest/data-0002/b.batch": batch("2b"),
			"ingest/manifest-0003":     nil,
			"ingest/data-0003/c.batch": batch("3c"),
			"ingest/data/stray.batch":  batch("stray"), // partition 0's: never requeued into 3
		} {
			path := filepath.Join(dir, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	read := func(t *testing.T, dir, name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		return b
	}
	// state says per partition: "good" (the original bytes), "missing",
	// "damaged" (the original damaged bytes) or "repaired:LOCATIONS".
	state := func(t *testing.T, dir string, p int) string {
		name := "ingest/manifest"
		if p > 0 {
			name = fmt.Sprintf("ingest/manifest-%04d", p)
		}
		b := read(t, dir, name)
		switch {
		case b == nil:
			return "missing"
		case p == 0 && bytes.Equal(b, good), p == 2 && bytes.Equal(b, damaged2), p == 3 && len(b) == 0:
			return "as before"
		}
		m, err := manifest.Decode(b)
		if err != nil {
			return "undecodable"
		}
		var locs []string
		for _, e := range m.Entries {
			locs = append(locs, e.Location)
		}
		return "repaired:" + strings.Join(locs, ",")
	}

	for _, tc := range []struct {
		name  string
		args  []string
		code  int
		out   []string  // substrings of stdout
		err   string    // substring of stderr
		after [4]string // state of each partition afterwards
	}{
		{name: "every partition", args: []string{"--partitions", "4"},
			out: []string{"== partition 0 of 4: ingest/manifest\n", "ingest/manifest verifies", "ingest/manifest-0001: not written yet",
				"== partition 2 of 4", "repaired ingest/manifest-0002", "repaired ingest/manifest-0003", "damaged 2, 3; 2 repaired",
				"unreferenced ingest/data-0003/c.batch"},
			after: [4]string{"as before", "missing", "repaired:ingest/data-0002/a.batch", "repaired:"}},
		{name: "every partition, dry run", args: []string{"--partitions", "4", "--dry-run"},
			out:   []string{"damaged 2, 3; dry run: nothing written"},
			after: [4]string{"as before", "missing", "as before", "as before"}},
		{name: "every partition, requeue from its own data prefix", args: []string{"--partitions", "4", "--requeue-unreferenced"},
			out:   []string{"REQUEUE ingest/data-0003/c.batch", "REQUEUE ingest/data-0002/b.batch"},
			after: [4]string{"as before", "missing", "repaired:ingest/data-0002/a.batch,ingest/data-0002/b.batch", "repaired:ingest/data-0003/c.batch"}},
		{name: "one partition", args: []string{"--partitions", "4", "--partition", "3"},
			out:   []string{"repaired ingest/manifest-0003"},
			after: [4]string{"as before", "missing", "as before", "repaired:"}},
		{name: "a partition not written", args: []string{"--partitions", "4", "--partition", "1"}, code: 1,
			err:   "manifest ingest/manifest-0001: no such object",
			after: [4]string{"as before", "missing", "as before", "as before"}},
		{name: "partition 0 of one", args: nil,
			out:   []string{"ingest/manifest verifies"},
			after: [4]string{"as before", "missing", "as before", "as before"}},
		{name: "at the count", args: []string{"--partitions", "4", "--partition", "4"}, code: 2,
			err:   "partition 4 is not below partitions 4 (partitions are 0 to 3",
			after: [4]string{"as before", "missing", "as before", "as before"}},
		{name: "above one partition", args: []string{"--partition", "2"}, code: 2,
			err:   "partition 2 is not below partitions 1",
			after: [4]string{"as before", "missing", "as before", "as before"}},
		{name: "a path", args: []string{"--partitions", "4", "--partition", "../manifest-0002"}, code: 2,
			err:   `--partition "../manifest-0002": want a partition number`,
			after: [4]string{"as before", "missing", "as before", "as before"}},
		{name: "padded", args: []string{"--partitions", "4", "--partition", "0002/"}, code: 2,
			err:   "want a partition number",
			after: [4]string{"as before", "missing", "as before", "as before"}},
		{name: "negative", args: []string{"--partitions", "4", "--partition", "-1"}, code: 2,
			err:   "want a partition number",
			after: [4]string{"as before", "missing", "as before", "as before"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := setup(t)
			code, out, errOut := run(t, nil, append([]string{"repair", "manifest", "--bucket-dir", dir}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d:\n%s\n%s", code, tc.code, out, errOut)
			}
			for _, s := range tc.out {
				if !strings.Contains(out, s) {
					t.Errorf("stdout lacks %q:\n%s", s, out)
				}
			}
			if tc.err != "" && !strings.Contains(errOut, tc.err) {
				t.Errorf("stderr lacks %q:\n%s", tc.err, errOut)
			}
			for p, want := range tc.after {
				if got := state(t, dir, p); got != want {
					t.Errorf("partition %d afterwards: %s, want %s", p, got, want)
				}
			}
			for _, b := range []string{"ingest/data/a.batch", "ingest/data-0002/a.batch", "ingest/data-0002/b.batch", "ingest/data-0003/c.batch", "ingest/data/stray.batch"} {
				if read(t, dir, b) == nil {
					t.Errorf("repair deleted %s", b)
				}
			}
		})
	}
}

// TestPartitionFlagGivenEmpty: --partition given an empty value (an
// unset shell variable) is a usage error in every command that takes it,
// never partition 0 or, for repair, every partition.
func TestPartitionFlagGivenEmpty(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"repair", "manifest"}, {"import"}, {"replay", "--from-seq", "0"}, {"dead-letters", "list"},
	} {
		t.Run(args[0], func(t *testing.T) {
			var stderr bytes.Buffer
			args := append(append([]string(nil), args...), "--bucket-dir", dir, "--partition", "")
			code := runMain(context.Background(), args, io.Discard, &stderr, func(string) string { return "" })
			if code != 2 || !strings.Contains(stderr.String(), "--partition was given an empty value") {
				t.Fatalf("%v: exit %d, %q; want 2 and the empty-value error", args, code, stderr.String())
			}
		})
	}
}

// TestPartitionFlagNotBelowPartitions: --partition at or above partitions
// is a usage error in every command that takes it, where replay and
// dead-letters used to report an empty window or queue; below it, with
// partitions from the flag or the config file, the command runs.
func TestPartitionFlagNotBelowPartitions(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(t.TempDir(), "bucketq.yaml")
	if err := os.WriteFile(cfgFile, []byte("bucket_dir: "+dir+"\npartitions: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"repair", "manifest"}, {"import", "--prefix", "usage/"}, {"replay", "--from-seq", "0", "--dry-run"}, {"dead-letters", "list"},
	} {
		t.Run(args[0], func(t *testing.T) {
			run := func(extra ...string) (int, string) {
				var stderr bytes.Buffer
				code := runMain(context.Background(), append(append([]string(nil), args...), extra...), io.Discard, &stderr, func(string) string { return "" })
				return code, stderr.String()
			}
			for _, extra := range [][]string{
				{"--bucket-dir", dir, "--partition", "1"},
				{"--bucket-dir", dir, "--partitions", "2", "--partition", "2"},
				{"--config", cfgFile, "--partition", "3"},
			} {
				if code, stderr := run(extra...); code != 2 || !strings.Contains(stderr, "is not below partitions") {
					t.Errorf("%v %v: exit %d, %q; want 2 and the partition error", args, extra, code, stderr)
				}
			}
			if args[0] == "import" || args[0] == "repair" {
				return // below partitions they need files and a manifest this bucket does not have
			}
			if code, stderr := run("--config", cfgFile, "--partition", "2"); code != 0 {
				t.Errorf("%v --partition 2 with partitions: 3 in the config: exit %d, %q; want 0", args, code, stderr)
			}
		})
	}
}
