package oneline

import "testing"

func TestShort(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"  plain  ", 80, "plain"},
		{"first\nsecond", 80, "first …"},
		{"a\tb", 80, "a b"},
		{"ünïcödé text", 5, "ünïc…"},
		{"exact", 5, "exact"},
		{"no limit at all", 0, "no limit at all"},
	} {
		if got := Short(tc.in, tc.n); got != tc.want {
			t.Errorf("Short(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
