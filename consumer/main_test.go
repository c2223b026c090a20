package consumer

import (
	"os"
	"testing"

	"github.com/bucketq/bucketq/format"
)

// TestMain makes format's shared codecs before any synctest bubble (see
// format.PrepareCodecs).
func TestMain(m *testing.M) {
	if err := format.PrepareCodecs(); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}
