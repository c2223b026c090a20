package castest_test

import (
	"testing"

	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/manifest/cas/castest"
	"github.com/bucketq/bucketq/manifest/cas/memstore"
)

// newStore hands the suite a store to test. A real provider connects to
// its service here (skipping the test when the service is not configured)
// and may return the same store for every case: each case works under a
// random prefix of its own.
func newStore(t *testing.T) cas.Store {
	return memstore.New()
}

// testConformance is what a provider's _test.go declares as
// TestConformance: one call runs every case of the suite (create-only,
// compare-and-swap, concurrent increments, unknown outcomes) as subtests.
func testConformance(t *testing.T) {
	castest.Run(t, newStore)
}

// A cas.Store provider (S3, GCS, Azure, a directory, your own) proves it
// keeps the manifest protocol's promises by passing the acceptance suite
// from one test of its own:
//
//	func TestConformance(t *testing.T) { castest.Run(t, newStore) }
func Example() {
	_ = testConformance
}
