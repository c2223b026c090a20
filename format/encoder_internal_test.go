package format

import (
	"math"
	"strings"
	"testing"
)

// TestEncoderRefusesWhatTheFormatCannotHold: the 2^32th record (and, by the
// same check, a record of 4 GiB or more, too large to allocate in a test)
// makes Finish fail instead of writing a wrapped length or count.
func TestEncoderRefusesWhatTheFormatCannotHold(t *testing.T) {
	e := NewEncoder(CompressionNone)
	e.Append([]byte("a"))
	e.count = math.MaxUint32
	e.Append([]byte("b"))
	if _, err := e.Finish(); err == nil || !strings.Contains(err.Error(), "does not fit the format") {
		t.Fatalf("Finish after an unrepresentable record: %v", err)
	}
	e.Reset()
	e.Append([]byte("c"))
	b, err := e.Finish()
	if err != nil {
		t.Fatalf("Finish after Reset: %v", err)
	}
	got, err := DecodeBatch(b)
	if err != nil || len(got.Records) != 1 || string(got.Records[0]) != "c" {
		t.Fatalf("after Reset: %+v, %v", got, err)
	}
}
