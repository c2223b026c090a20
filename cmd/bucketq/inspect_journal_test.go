package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/journal"
	"github.com/bucketq/bucketq/manifest"
)

// TestInspectJournal writes segments into a directory bucket with the
// journal codec and checks what `bucketq inspect journal` prints: the
// listing (table and JSON), one segment's entries, --verify catching a
// flipped byte the footer-only listing cannot see, and damage reported
// with the segment's name and byte offset (exit 1).
func TestInspectJournal(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) {
		p := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	entry := func(seq uint64, loc string, ms int64) manifest.Entry {
		return manifest.Entry{Sequence: seq, Location: loc,
			Metadata: []manifest.Metadata{{StartIndex: 0, IngestionTimeMs: ms, Payload: format.EventsHeader.Bytes()}}}
	}
	seg1, err := journal.Encode([]manifest.Entry{entry(3, "ingest/data/a.batch", 1735732800000), entry(4, "ingest/data/b.batch", 1735732801000)}, 1735732805000, 2)
	if err != nil {
		t.Fatal(err)
	}
	seg2, err := journal.Encode([]manifest.Entry{entry(5, "ingest/data/c.batch", 1735732802000)}, 1735732806000, 2)
	if err != nil {
		t.Fatal(err)
	}
	write(journal.Name("ingest/journal", 3, 4), seg1)
	write(journal.Name("ingest/journal", 5, 5), seg2)
	write("ingest/journal/README", []byte("not a segment, ignored"))

	listJSON := `{"prefix":"ingest/journal","segments":[` +
		`{"name":"ingest/journal/00000000000000000003-00000000000000000004.journal","first_sequence":3,"last_sequence":4,"entry_count":2,"min_ingestion_time_ms":1735732800000,"max_ingestion_time_ms":1735732801000,"journaled_at_ms":1735732805000,"epoch":2,"version":1},` +
		`{"name":"ingest/journal/00000000000000000005-00000000000000000005.journal","first_sequence":5,"last_sequence":5,"entry_count":1,"min_ingestion_time_ms":1735732802000,"max_ingestion_time_ms":1735732802000,"journaled_at_ms":1735732806000,"epoch":2,"version":1}` +
		`],"entries":3,"problems":[]}` + "\n"
	code, out, errOut := run(t, nil, "inspect", "journal", "--json", "--bucket-dir", dir)
	if code != 0 || out != listJSON {
		t.Fatalf("inspect journal --json: exit %d (stderr %q)\n got %s\nwant %s", code, errOut, out, listJSON)
	}
	code, out, errOut = run(t, nil, "inspect", "journal", "--bucket-dir", dir)
	for _, want := range []string{
		"journal ingest/journal: 2 segments, 3 entries, sequences 3..5, journaled 2025-01-01T12:00:05Z..2025-01-01T12:00:06Z\n",
		"FIRST  LAST  ENTRIES  JOURNALED",
		"3      4     2        2025-01-01T12:00:05Z  2025-01-01T12:00:00Z  2025-01-01T12:00:01Z  2      ingest/journal/00000000000000000003-00000000000000000004.journal",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("inspect journal: exit %d (stderr %q), output lacks %q:\n%s", code, errOut, want, out)
		}
	}
	code, out, errOut = run(t, nil, "inspect", "journal", journal.Name("ingest/journal", 3, 4), "--bucket-dir", dir)
	if code != 0 || !strings.Contains(out, "sequences 3..4, 2 entries, journaled 2025-01-01T12:00:05Z by epoch 2") ||
		!strings.Contains(out, "4         ingest/data/b.batch  0      2025-01-01T12:00:01Z  events  cloudevents-json") {
		t.Errorf("inspect journal SEGMENT: exit %d (stderr %q)\n%s", code, errOut, out)
	}
	code, out, _ = run(t, nil, "inspect", "journal", "--verify", "--bucket-dir", dir)
	if code != 0 || !strings.Contains(out, "2 of 2 segments read and verified") {
		t.Errorf("inspect journal --verify on good segments: exit %d\n%s", code, out)
	}

	// Damage the first segment's first entry: the footer still reads, so
	// only --verify (and reading that segment) sees it.
	bad := append([]byte(nil), seg1...)
	bad[10] ^= 0xff
	write(journal.Name("ingest/journal", 3, 4), bad)
	if code, out, _ := run(t, nil, "inspect", "journal", "--bucket-dir", dir); code != 0 || !strings.Contains(out, "2 segments, 3 entries") {
		t.Errorf("footer listing of a body-damaged segment: exit %d\n%s", code, out)
	}
	// And a segment whose name disagrees with its footer, found by the
	// footer listing itself.
	write(journal.Name("ingest/journal", 6, 7), seg2)
	for _, tc := range []struct {
		args []string
		want []string // in stdout + stderr
	}{
		{[]string{"inspect", "journal", "--verify"}, []string{
			"journal segment ingest/journal/00000000000000000003-00000000000000000004.journal at offset 122: journal segment checksum mismatch",
			"journal segment ingest/journal/00000000000000000006-00000000000000000007.journal at offset 61: journal segment name does not match its footer: footer says sequences 5..5",
			"1 of 3 segments read and verified",
			"bucketq: journal ingest/journal: 2 of 3 segments damaged or unreadable"}},
		{[]string{"inspect", "journal", "--json"}, []string{
			`"problems":["journal segment ingest/journal/00000000000000000006-00000000000000000007.journal at offset 61: journal segment name does not match its footer: footer says sequences 5..5"]`}},
		{[]string{"inspect", "journal", journal.Name("ingest/journal", 3, 4)}, []string{
			"bucketq: journal segment ingest/journal/00000000000000000003-00000000000000000004.journal at offset 122: journal segment checksum mismatch"}},
	} {
		code, out, errOut := run(t, nil, append(tc.args, "--bucket-dir", dir)...)
		if code != 1 {
			t.Errorf("%q: exit %d, want 1\n%s%s", tc.args, code, out, errOut)
		}
		for _, w := range tc.want {
			if !strings.Contains(out+errOut, w) {
				t.Errorf("%q: output lacks %q:\n%s%s", tc.args, w, out, errOut)
			}
		}
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"inspect", "journal", "ingest/journal/none.journal"}, 1, "no such object in the bucket"},
		{[]string{"inspect", "journal", "--records"}, 2, "--records applies to inspect batch"},
		{[]string{"inspect", "journal", "a", "--verify"}, 2, "a SEGMENT is always verified"},
		{[]string{"inspect", "journal", "a", "b"}, 2, "want at most one SEGMENT"},
		{[]string{"inspect", "journal", "../x"}, 2, "inspect journal SEGMENT"},
		{[]string{"inspect", "nothing"}, 2, "want manifest, batch or journal"},
	} {
		code, out, errOut := run(t, nil, append(tc.args, "--bucket-dir", dir)...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d (want %d), stderr %q lacks %q (stdout %q)", tc.args, code, tc.code, errOut, tc.want, out)
		}
	}
	// An empty journal (never written, or all expired) lists nothing.
	code, out, _ = run(t, nil, "inspect", "journal", "--bucket-dir", dir, "--journal-prefix", "other/journal")
	if code != 0 || out != "journal other/journal: 0 segments, 0 entries\n" {
		t.Errorf("empty journal: exit %d %q", code, out)
	}
}
