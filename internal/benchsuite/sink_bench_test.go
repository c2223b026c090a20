package benchsuite

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/bucketq/bucketq/internal/openmetertest"
)

// BenchmarkSinkValidate: the fake OpenMeter's validation of one 500-event
// batch of the suite's ~250-byte CloudEvents (openmetertest.ValidateBatch:
// JSON syntax plus OpenMeter's rules for every event), beside json.Valid on
// the same bytes in the same loop, the floor of any sink that checks its
// input. x-json-valid is the ratio of their times. It shows how much of
// BenchmarkDeliver/sink=openmeter is the sink's own validation.
func BenchmarkSinkValidate(b *testing.B) {
	body, _ := EventBatch("validate", eventsPerRequest, 1)
	b.SetBytes(int64(len(body)))
	var fake, valid time.Duration
	for b.Loop() {
		t0 := time.Now()
		evs, err := openmetertest.ValidateBatch(body)
		t1 := time.Now()
		ok := json.Valid(body)
		valid += time.Since(t1)
		fake += t1.Sub(t0)
		if err != nil || len(evs) != eventsPerRequest || !ok {
			b.Fatalf("%d events, %v; json.Valid %v", len(evs), err, ok)
		}
	}
	perEvent := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) / eventsPerRequest }
	b.ReportMetric(perEvent(fake), "ns/event")
	b.ReportMetric(perEvent(valid), "json-valid-ns/event")
	b.ReportMetric(float64(fake)/float64(valid), "x-json-valid")
	b.ReportMetric(float64(b.N)*eventsPerRequest/fake.Seconds(), "events/s")
}
