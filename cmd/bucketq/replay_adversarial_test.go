package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// segmentFile returns the one journal segment of a journaledBucket.
func segmentFile(t *testing.T, dir string) string {
	t.Helper()
	var found []string
	filepath.WalkDir(filepath.Join(dir, "ingest", "journal"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			found = append(found, p)
		}
		return nil
	})
	if len(found) != 1 {
		t.Fatalf("journal segments: %v", found)
	}
	return found[0]
}

// TestReplayRefusesDamage: damaged journal segments, hand-edited
// checkpoints and odd flags each end in a clear error naming the object and
// where it is damaged (or the flag), never a panic or a silent success.
func TestReplayRefusesDamage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir, ck string)
		args   []string
		code   int
		want   []string
	}{
		{"truncated segment", func(t *testing.T, dir, _ string) {
			p := segmentFile(t, dir)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:len(b)/2], 0o644)
		}, []string{"--from-seq", "0"}, 1, []string{"journal segment", "ingest/journal/"}},
		{"empty segment", func(t *testing.T, dir, _ string) {
			os.WriteFile(segmentFile(t, dir), nil, 0o644)
		}, []string{"--from-seq", "0"}, 1, []string{"journal segment", "shorter than its footer"}},
		{"bit-flipped segment", func(t *testing.T, dir, _ string) {
			p := segmentFile(t, dir)
			b, _ := os.ReadFile(p)
			b[10] ^= 0x04
			os.WriteFile(p, b, 0o644)
		}, []string{"--from-seq", "0"}, 1, []string{"journal segment", "offset"}},
		{"segment renamed", func(t *testing.T, dir, _ string) {
			p := segmentFile(t, dir)
			os.Rename(p, strings.Replace(p, "0000000000000000000", "0000000000000000001", 1))
		}, []string{"--from-seq", "0"}, 1, []string{"1 stray_object", "stray_object: ingest/journal/", "not named FIRST-LAST.journal"}},
		{"bit-flipped segment by time", func(t *testing.T, dir, _ string) {
			p := segmentFile(t, dir)
			b, _ := os.ReadFile(p)
			b[len(b)-3] ^= 0x01
			os.WriteFile(p, b, 0o644)
		}, []string{"--from", "2026-01-01T10:00:00Z", "--to", "2026-01-01T11:00:00Z"}, 1, []string{"journal segment"}},
		{"checkpoint garbage", func(t *testing.T, _, ck string) {
			os.WriteFile(ck, []byte("{not json"), 0o644)
		}, []string{"--from-seq", "0", "--checkpoint", "CK", "--resume"}, 2, []string{"CK", "not a replay checkpoint"}},
		{"checkpoint empty", func(t *testing.T, _, ck string) {
			os.WriteFile(ck, nil, 0o644)
		}, []string{"--from-seq", "0", "--checkpoint", "CK", "--resume"}, 2, []string{"CK", "not a replay checkpoint"}},
		{"checkpoint of another selection", func(t *testing.T, _, ck string) {
			os.WriteFile(ck, []byte(`{"version":1,"selection":"seq=3..0","have_through":true,"through_sequence":3}`), 0o644)
		}, []string{"--from-seq", "0", "--checkpoint", "CK", "--resume"}, 2, []string{"CK", "seq=3..0"}},
		{"checkpoint beyond the range", func(t *testing.T, _, ck string) {
			os.WriteFile(ck, []byte(`{"version":1,"selection":"seq=0..4 journal=ingest/journal","have_through":true,"through_sequence":99}`), 0o644)
		}, []string{"--from-seq", "0", "--to-seq", "4", "--checkpoint", "CK", "--resume"}, 2, []string{"CK", "through_sequence", "99"}},
		{"from after to", nil, []string{"--from", "2026-01-01T11:00:00Z", "--to", "2026-01-01T10:00:00Z"}, 2, []string{"--from", "--to"}},
		{"from equals to", nil, []string{"--from", "2026-01-01T10:00:00Z", "--to", "2026-01-01T10:00:00Z"}, 2, []string{"--from", "--to"}},
		{"empty from-seq", nil, []string{"--from-seq", "", "--to-seq", "3"}, 2, []string{"--from-seq"}},
		{"negative seq", nil, []string{"--from-seq", "-1"}, 2, []string{"--from-seq"}},
		{"empty sink", nil, []string{"--from-seq", "0", "--sink", ""}, 2, []string{"sink"}},
		{"dotdot journal prefix", nil, []string{"--from-seq", "0", "--journal-prefix", "../x"}, 2, []string{"--journal-prefix", `".." path segment`}},
		{"empty type filter", nil, []string{"--from-seq", "0", "--type", ""}, 2, []string{"--type"}},
		{"NaN rate", nil, []string{"--from-seq", "0", "--rate", "NaN"}, 2, []string{"--rate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := journaledBucket(t, 5)
			work := t.TempDir()
			ck := filepath.Join(work, "ck.json")
			if tc.damage != nil {
				tc.damage(t, dir, ck)
			}
			args := []string{"replay", "--bucket-dir", dir, "--quiet"}
			hasSink := false
			for _, a := range tc.args {
				if a == "--sink" {
					hasSink = true
				}
				args = append(args, strings.ReplaceAll(a, "CK", ck))
			}
			if !hasSink {
				args = append(args, "--sink", "file:"+filepath.Join(work, "out.ndjson"))
			}
			var stdout, stderr bytes.Buffer
			code := runMain(context.Background(), args, &stdout, &stderr, func(string) string { return "" })
			msg := strings.ReplaceAll(stderr.String(), ck, "CK")
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s", code, tc.code, stderr.String())
			} else {
				t.Log(stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) && !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
		})
	}
}
