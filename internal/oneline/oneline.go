// Package oneline shortens a message (an error, a sink's answer) to one
// line of a report or table.
package oneline

import (
	"strings"
	"unicode/utf8"
)

// Short is the first line of s, at most n runes (the last one "…" when cut),
// tabs as spaces; a cut line ends in " …".
func Short(s string, n int) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i] + " …"
	}
	s = strings.ReplaceAll(s, "\t", " ")
	if n > 0 && utf8.RuneCountInString(s) > n {
		r := []rune(s)
		s = string(r[:n-1]) + "…"
	}
	return s
}
