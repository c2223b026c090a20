// Package promx registers Prometheus collectors the way every bucketq
// component does: on the Registerer it is given (none when nil), reusing a
// collector another component already registered under the same name, so
// components that share a metric (buffer_manifest_writes by role, the ingest
// counters by front door) can each register it.
package promx

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c with reg and returns it, or returns the collector
// already registered with the same descriptor. A nil reg registers nothing.
// It panics, as prometheus.MustRegister does, when c conflicts with a
// different collector of the same name: that is a programming error.
func Register[T prometheus.Collector](reg prometheus.Registerer, c T) T {
	if reg == nil {
		return c
	}
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(T); ok {
			return existing
		}
		panic(fmt.Sprintf("promx: %T registered where %T was expected", are.ExistingCollector, c))
	}
	panic(err)
}

// LatencyBuckets are the histogram buckets of every bucketq latency
// metric: 1 ms to about 33 s.
var LatencyBuckets = prometheus.ExponentialBuckets(0.001, 2, 16)

// ManifestWrites returns buffer_manifest_writes (label role) registered
// with reg: the one definition the producer and the consumer share.
func ManifestWrites(reg prometheus.Registerer) *prometheus.CounterVec {
	return Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "buffer_manifest_writes", Help: "Manifest write attempts."}, []string{"role"}))
}

// ManifestConflicts returns buffer_manifest_conflicts (label role)
// registered with reg.
func ManifestConflicts(reg prometheus.Registerer) *prometheus.CounterVec {
	return Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "buffer_manifest_conflicts", Help: "Manifest CAS conflicts."}, []string{"role"}))
}
