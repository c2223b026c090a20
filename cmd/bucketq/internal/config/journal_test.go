package config

import (
	"strings"
	"testing"
	"time"
)

// TestJournalKeys: journal_retention takes a duration or 0 (journal off),
// and journal_prefix may not overlap the prefixes GC or dead letters own.
func TestJournalKeys(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		want    time.Duration
		wantErr string
	}{
		{args: nil, want: 24 * time.Hour},
		{args: []string{"--journal-retention", "0"}, want: 0},
		{args: []string{"--journal-retention", "168h"}, want: 168 * time.Hour},
		{args: []string{"--journal-retention", "-1h"}, wantErr: "flag --journal-retention: invalid duration \"-1h\""},
		{args: []string{"--journal-retention", "week"}, wantErr: "or 0 to turn the journal off"},
		{args: []string{"--journal-prefix", "ingest/data/journal"}, wantErr: `"journal_prefix": "ingest/data/journal" overlaps data_prefix`},
		{args: []string{"--journal-prefix", "ingest/dead-letter"}, wantErr: `"journal_prefix": "ingest/dead-letter" overlaps dead_letter_prefix`},
	} {
		c, _, err := load(t, RolesConsume, tc.args, nil)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v: error %v, want one containing %q", tc.args, err, tc.wantErr)
			}
			continue
		}
		if err != nil || c.JournalRetention != tc.want {
			t.Errorf("%v: retention %v, %v; want %v", tc.args, c, err, tc.want)
		}
	}
	// replay reads journal_prefix but not the retention (it never deletes).
	if _, _, err := load(t, RolesReplay, []string{"--journal-retention", "1h"}, nil); err == nil {
		t.Error("replay accepted --journal-retention")
	}
}
