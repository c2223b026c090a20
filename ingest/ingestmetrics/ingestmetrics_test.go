package ingestmetrics

import (
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestFrontCountsTheSameSeries: Front's cached children are the vectors'
// series, created only on first use (an idle front door exports nothing
// new), and concurrent first uses count every request.
func TestFrontCountsTheSameSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	f := m.Front("http-events")
	if n := testutil.CollectAndCount(m.Requests) + testutil.CollectAndCount(m.Events); n != 0 {
		t.Fatalf("%d series before any request, want 0", n)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				f.Request(204)
				f.Events(3)
			}
			f.Request(429)
			f.RequestCode("OK")
		})
	}
	wg.Wait()
	for _, c := range []struct {
		code string
		want float64
	}{{"204", 800}, {"429", 8}, {"OK", 8}} {
		if got := testutil.ToFloat64(m.Requests.WithLabelValues("http-events", c.code)); got != c.want {
			t.Errorf("ingest_requests{code=%q} = %v, want %v", c.code, got, c.want)
		}
	}
	if got := testutil.ToFloat64(m.Events.WithLabelValues("http-events")); got != 2400 {
		t.Errorf("ingest_events = %v, want 2400", got)
	}
	// A second Front of the same name adds to the same series.
	m.Front("http-events").Request(204)
	if got := testutil.ToFloat64(m.Requests.WithLabelValues("http-events", "204")); got != 801 {
		t.Errorf("after a second Front: %v, want 801", got)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP ingest_events Events or OTLP records accepted, by front door.
# TYPE ingest_events counter
ingest_events{front="http-events"} 2400
`), "ingest_events"); err != nil {
		t.Error(err)
	}
}
