// Package ingestmetrics defines the two counters every ingest front door
// shares, labelled by front door: ingest_requests (by response code) and
// ingest_events (events or OTLP records accepted).
package ingestmetrics

import (
	"strconv"
	"sync"

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

// Front is one front door's view of the counters: the same series as
// Requests.WithLabelValues(front, code) and Events.WithLabelValues(front),
// but each child is looked up once and then kept, so counting a request
// costs no label hashing, no lock of the vector and no formatted status
// code. A child is created on first use, as WithLabelValues would, so
// /metrics shows the same series.
type Front struct {
	m      *Metrics
	name   string
	events sync.Once
	ev     prometheus.Counter
	codes  sync.Map // int (HTTP status) or string (gRPC code) -> prometheus.Counter
}

// Front returns the counters of the front door name.
func (m *Metrics) Front(name string) *Front { return &Front{m: m, name: name} }

// Request counts a request answered with the HTTP status code.
func (f *Front) Request(code int) {
	if c, ok := f.codes.Load(code); ok {
		c.(prometheus.Counter).Inc()
		return
	}
	c, _ := f.codes.LoadOrStore(code, f.m.Requests.WithLabelValues(f.name, strconv.Itoa(code)))
	c.(prometheus.Counter).Inc()
}

// RequestCode counts a request answered with the code named code (a gRPC
// status code's name).
func (f *Front) RequestCode(code string) {
	if c, ok := f.codes.Load(code); ok {
		c.(prometheus.Counter).Inc()
		return
	}
	c, _ := f.codes.LoadOrStore(code, f.m.Requests.WithLabelValues(f.name, code))
	c.(prometheus.Counter).Inc()
}

// Events counts n events or records accepted.
func (f *Front) Events(n int) {
	f.events.Do(func() { f.ev = f.m.Events.WithLabelValues(f.name) })
	f.ev.Add(float64(n))
}
