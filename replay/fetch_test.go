package replay

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/thanos-io/objstore"

	"github.com/bucketq/bucketq/manifest"
)

// failingGets fails the first fail Gets and records when each was made.
type failingGets struct {
	objstore.Bucket
	fail  int
	calls []time.Time
}

func (b *failingGets) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	b.calls = append(b.calls, time.Now())
	if len(b.calls) <= b.fail {
		return nil, errors.New("injected: connection reset")
	}
	return b.Bucket.Get(ctx, name)
}

// TestFetchRetriesWithOneBackoff: a batch file whose reads fail is read
// again after each step of one jittered backoff (internal/backoff: from
// 100ms, doubling), fetchAttempts times in all, and given up with the last
// error at once after the last attempt, without a pause that leads nowhere.
func TestFetchRetriesWithOneBackoff(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		fail int
	}{{"recovers", fetchAttempts - 1}, {"gives up", fetchAttempts}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				mem := objstore.NewInMemBucket()
				if err := mem.Upload(t.Context(), "ingest/data/a.batch", strings.NewReader("batch")); err != nil {
					t.Fatal(err)
				}
				bkt := &failingGets{Bucket: mem, fail: tc.fail}
				start := time.Now()
				got := fetch(t.Context(), bkt, planned{e: manifest.Entry{Location: "ingest/data/a.batch"}})
				if n := len(bkt.calls); n != min(tc.fail+1, fetchAttempts) {
					t.Fatalf("%d reads, want %d", n, min(tc.fail+1, fetchAttempts))
				}
				step := fetchBackoff().Min
				for i := 1; i < len(bkt.calls); i++ {
					if i > 1 {
						step = min(2*step, fetchBackoff().Max)
					}
					if gap := bkt.calls[i].Sub(bkt.calls[i-1]); gap < step/2 || gap > step {
						t.Errorf("pause %d is %v, want one backoff step of %v: in [%v, %v]", i, gap, step, step/2, step)
					}
				}
				if last := bkt.calls[len(bkt.calls)-1]; time.Since(last) != 0 {
					t.Errorf("fetch returned %v after its last read", time.Since(last))
				}
				if tc.fail < fetchAttempts {
					if got.err != nil || !bytes.Equal(got.data, []byte("batch")) {
						t.Fatalf("fetched %q, %v", got.data, got.err)
					}
					return
				}
				if got.err == nil || !strings.Contains(got.err.Error(), "injected") {
					t.Fatalf("err %v, want the last read's error", got.err)
				}
				if took := time.Since(start); took > 3100*time.Millisecond {
					t.Errorf("gave up after %v", took)
				}
			})
		})
	}
}
