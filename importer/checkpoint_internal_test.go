package importer

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestStateErrorIsBounded: an object's error, the one unbounded text of a
// checkpoint entry besides its name, is cut to maxStateError bytes of
// valid UTF-8, so the checkpoint's size bound (RFC 0006) holds.
func TestStateErrorIsBounded(t *testing.T) {
	for _, s := range []string{"", "short", strings.Repeat("a", maxStateError), strings.Repeat("a", 300), strings.Repeat("ü", 300), strings.Repeat("a", 253) + "üü"} {
		got := stateError(s)
		if len(got) > maxStateError || !utf8.ValidString(got) || (len(s) <= maxStateError) != (got == s) {
			t.Errorf("stateError(%d bytes) = %d bytes %q", len(s), len(got), got)
		}
	}
}
