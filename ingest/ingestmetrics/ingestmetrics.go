// Package ingestmetrics defines the two counters every ingest front door
// shares, labelled by front door: ingest_requests (by response code) and
// ingest_events (events or OTLP records accepted).
package ingestmetrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bucketq/bucketq/internal/promx"
)

// Metrics are the front doors' collectors.
type Metrics struct {
	Requests *prometheus.CounterVec // ingest_requests: labels front (http-events, otlp-http, otlp-grpc), code
	Events   *prometheus.CounterVec // ingest_events: label front
}

// New creates the collectors and registers them with reg (nil: not
// registered); a second call on the same registry returns the same
// collectors, so each front door may register them.
func New(reg prometheus.Registerer) *Metrics {
	return &Metrics{
		Requests: promx.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ingest_requests", Help: "Ingest requests by front door and response code."}, []string{"front", "code"})),
		Events:   promx.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ingest_events", Help: "Events or OTLP records accepted, by front door."}, []string{"front"})),
	}
}
