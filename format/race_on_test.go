//go:build race

package format_test

// raceEnabled: the race detector's sync.Pool drops a random share of what
// is put back, so allocation counts vary from run to run.
const raceEnabled = true
