package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bucketq/bucketq/manifest"
)

// TestImportPartition runs `bucketq import` on a directory bucket with
// --partition: the rows go to that partition's manifest, data prefix and
// dead-letter prefix and no other; the job's checkpoint records the
// partition, so a later run of the job into another partition is refused
// and appends nothing; --partition outside the configured partitions, or
// not a number, is a usage error that writes nothing.
func TestImportPartition(t *testing.T) {
	type step struct {
		args     []string
		code     int
		stderr   string         // substring
		manifest map[string]int // entries per manifest afterwards (absent: no object)
		dead     string         // a dead-letter prefix that holds the bad row's dead letter
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"default is partition 0", []step{
			{args: []string{"--job", "j"}, code: exitFailure, stderr: "1 rows dead-lettered (bucketq dead-letters list --reason import_row)",
				manifest: map[string]int{"ingest/manifest": 1}, dead: "ingest/dead-letter/import/j"},
		}},
		{"partition 0 of 4", []step{
			{args: []string{"--job", "j", "--partitions", "4"}, code: exitFailure,
				manifest: map[string]int{"ingest/manifest": 1}},
		}},
		{"partition 2 of 4", []step{
			{args: []string{"--job", "j", "--partitions", "4", "--partition", "2"}, code: exitFailure,
				stderr:   "bucketq dead-letters list --reason import_row --partition 2",
				manifest: map[string]int{"ingest/manifest-0002": 1}, dead: "ingest/dead-letter-0002/import/j"},
			// The same job, same partition: done objects are skipped.
			{args: []string{"--job", "j", "--partitions", "4", "--partition", "2"}, code: exitOK,
				manifest: map[string]int{"ingest/manifest-0002": 1}},
			// Into another partition: refused, nothing appended.
			{args: []string{"--job", "j", "--partitions", "4", "--partition", "3"}, code: exitFailure,
				stderr:   "was taken importing into partition 2, not 3",
				manifest: map[string]int{"ingest/manifest-0002": 1}},
			{args: []string{"--job", "j", "--partitions", "4"}, code: exitFailure,
				stderr:   "resume with --partition 2",
				manifest: map[string]int{"ingest/manifest-0002": 1}},
			// Another job may import into another partition.
			{args: []string{"--job", "k", "--partitions", "4", "--partition", "3"}, code: exitFailure,
				manifest: map[string]int{"ingest/manifest-0002": 1, "ingest/manifest-0003": 1}},
		}},
		{"partition 0 then 1", []step{
			{args: []string{"--job", "j", "--partitions", "2"}, code: exitFailure, manifest: map[string]int{"ingest/manifest": 1}},
			{args: []string{"--job", "j", "--partitions", "2", "--partition", "1"}, code: exitFailure,
				stderr: "into partition 0, not 1", manifest: map[string]int{"ingest/manifest": 1}},
		}},
		{"at the count", []step{
			{args: []string{"--job", "j", "--partitions", "4", "--partition", "4"}, code: exitUsage, stderr: "partition 4 is not below partitions 4"},
		}},
		{"above one partition", []step{
			{args: []string{"--job", "j", "--partition", "1"}, code: exitUsage, stderr: "partition 1 is not below partitions 1"},
		}},
		{"a path", []step{
			{args: []string{"--job", "j", "--partitions", "4", "--partition", "../data-0002"}, code: exitUsage, stderr: "want a partition number"},
		}},
		{"negative", []step{
			{args: []string{"--job", "j", "--partitions", "4", "--partition", "-2"}, code: exitUsage, stderr: "want a partition number"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src, q := filepath.Join(dir, "src"), filepath.Join(dir, "q")
			os.MkdirAll(filepath.Join(src, "usage"), 0o755)
			os.MkdirAll(q, 0o755)
			os.WriteFile(filepath.Join(src, "usage", "a.csv"), []byte("customer,tokens\nc-1,12\nc-2,x\nc-3,7\n"), 0o644)
			cfg := filepath.Join(dir, "bucketq.yaml")
			os.WriteFile(cfg, []byte("bucket_dir: "+q+"\nimport:\n  mapping:\n    type: '\"tokens\"'\n    subject: row.customer\n    data: {tokens: int(row.tokens)}\n"), 0o644)
			for i, s := range tc.steps {
				var out, errb bytes.Buffer
				code := runMain(context.Background(), append([]string{"import", "--config", cfg, "--source-dir", src}, s.args...), &out, &errb, func(string) string { return "" })
				if code != s.code || !strings.Contains(errb.String(), s.stderr) {
					t.Fatalf("step %d %v: exit %d (want %d)\nstdout %s\nstderr %s (want %q)", i, s.args, code, s.code, out.String(), errb.String(), s.stderr)
				}
				got := map[string]int{}
				var dataDirs []string
				for _, name := range []string{"ingest/manifest", "ingest/manifest-0001", "ingest/manifest-0002", "ingest/manifest-0003"} {
					b, err := os.ReadFile(filepath.Join(q, name))
					if os.IsNotExist(err) {
						continue
					}
					m, err := manifest.Decode(b)
					if err != nil {
						t.Fatalf("step %d: %s: %v", i, name, err)
					}
					got[name] = len(m.Entries)
					for _, e := range m.Entries {
						dataDirs = append(dataDirs, name+"→"+filepath.Dir(e.Location))
					}
				}
				if len(got) != len(s.manifest) {
					t.Fatalf("step %d: manifests %v, want %v", i, got, s.manifest)
				}
				for name, n := range s.manifest {
					if got[name] != n {
						t.Fatalf("step %d: manifests %v, want %v", i, got, s.manifest)
					}
				}
				if s.dead != "" {
					if ents, err := os.ReadDir(filepath.Join(q, s.dead)); err != nil || len(ents) == 0 {
						t.Errorf("step %d: no dead letter under %s: %v", i, s.dead, err)
					}
				}
				// Each manifest lists batches of its own data prefix only.
				for _, d := range dataDirs {
					name, data, _ := strings.Cut(d, "→")
					if want := strings.Replace(name, "manifest", "data", 1); data != want {
						t.Errorf("step %d: %s lists a batch under %s, want %s", i, name, data, want)
					}
				}
			}
		})
	}
}
