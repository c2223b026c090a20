package consumer

import (
	"os"
	"testing"

	"github.com/bucketq/bucketq/format"
)

// TestMain makes format's shared zstd codecs before any test runs. They
// are made on first use, and the channels inside them belong to the
// synctest bubble they are made in: a codec first used by a test in one
// bubble would fail every other bubble with "receive on synctest channel
// from outside bubble".
func TestMain(m *testing.M) {
	if _, err := format.EncodeBatch(format.CompressionZstd, [][]byte{[]byte("warm up")}); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}
