package producer

import (
	"os"
	"testing"

	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/internal/keptdir"
)

// TestMain makes format's shared codecs before any synctest bubble (see
// format.PrepareCodecs), and removes the benchmarks' directories once
// everything has run (keptdir).
func TestMain(m *testing.M) {
	if err := format.PrepareCodecs(); err != nil {
		panic(err)
	}
	code := m.Run()
	keptdir.RemoveAll()
	os.Exit(code)
}
