package format_test

import (
	"os"
	"os/exec"
	"slices"
	"testing"
	"testing/synctest"

	"github.com/bucketq/bucketq/format"
)

// TestMain prepares the codecs before any test, as a package whose tests
// use synctest does.
func TestMain(m *testing.M) {
	if err := format.PrepareCodecs(); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}

// TestCodecsServeEveryBubble: once PrepareCodecs has run, zstd batches are
// encoded and decoded in one synctest bubble after another. It runs alone
// in a fresh test process, where nothing but PrepareCodecs has used the
// codecs (other tests of this package use them outside any bubble): codecs
// first used in a bubble would crash it in the next ("receive on synctest
// channel from outside bubble").
func TestCodecsServeEveryBubble(t *testing.T) {
	t.Parallel()
	if os.Getenv("FORMAT_TEST_BUBBLES") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCodecsServeEveryBubble$", "-test.count=1")
		cmd.Env = append(os.Environ(), "FORMAT_TEST_BUBBLES=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("alone in a fresh process: %v\n%s", err, out)
		}
		return
	}
	records := [][]byte{[]byte("a"), []byte("bb"), []byte("ccc")}
	for range 2 {
		synctest.Test(t, func(t *testing.T) {
			data, err := format.EncodeBatch(format.CompressionZstd, records)
			if err != nil {
				t.Fatal(err)
			}
			b, err := format.DecodeBatch(data)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(b.Records, records, func(x, y []byte) bool { return string(x) == string(y) }) {
				t.Fatalf("records %q, want %q", b.Records, records)
			}
		})
	}
}
