package promx

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRegisterReusesTheCollectorAlreadyRegistered(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "x_total", Help: "x"}
	a := Register(reg, prometheus.NewCounterVec(opts, []string{"role"}))
	b := Register(reg, prometheus.NewCounterVec(opts, []string{"role"}))
	a.WithLabelValues("producer").Inc()
	b.WithLabelValues("consumer").Add(2)
	if got := testutil.ToFloat64(b.WithLabelValues("producer")); got != 1 {
		t.Fatalf("second registration did not return the first collector: producer=%v", got)
	}
	if n, err := testutil.GatherAndCount(reg, "x_total"); err != nil || n != 2 {
		t.Fatalf("gathered %d series (err %v), want 2", n, err)
	}
}

func TestRegisterNilRegistererRegistersNothing(t *testing.T) {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "y", Help: "y"})
	if got := Register(nil, c); got != c {
		t.Fatal("nil registerer must return the collector given")
	}
}

func TestRegisterConflictPanics(t *testing.T) {
	reg := prometheus.NewRegistry()
	Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "z", Help: "z"}))
	defer func() {
		if recover() == nil {
			t.Fatal("a gauge under a counter's name must panic")
		}
	}()
	Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "z", Help: "other"}))
}
