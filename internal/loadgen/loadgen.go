// Package loadgen drives a running bucketq producer over HTTP (CloudEvents or
// OTLP/HTTP logs) with concurrent clients and reports what it accepted, how
// fast, with what ack latency, and — from the producer's /metrics — what it
// cost in objects and manifest writes. It is the engine of `bucketq bench`.
package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	collogs "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	common "go.opentelemetry.io/proto/otlp/common/v1"
	logs "go.opentelemetry.io/proto/otlp/logs/v1"
	resource "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"
)

// Protocols Run can speak.
const (
	ProtocolEvents   = "events"    // POST {URL}/api/v1/events, application/cloudevents-batch+json
	ProtocolOTLPHTTP = "otlp-http" // POST {URL}/v1/logs, application/x-protobuf
)

// Config says how to drive the producer. Zero values mean the defaults
// named below; negative values are errors.
type Config struct {
	URL        string        // producer base URL, e.g. http://127.0.0.1:8888 (or :4318 for OTLP)
	MetricsURL string        // producer /metrics URL; empty = URL + "/metrics"; "-" = do not scrape
	Protocol   string        // ProtocolEvents or ProtocolOTLPHTTP
	Clients    int           // concurrent clients = most requests in flight at once (default 8)
	BatchSize  int           // events per request (default 500)
	EventSize  int           // bytes per event (default 250): exact JSON size for ProtocolEvents (at least MinEventSize), approximate for OTLP
	Rate       float64       // total events/s, started on a fixed schedule; 0 = as fast as acks come back
	Duration   time.Duration // how long to start requests; 0 = until Count
	Count      int64         // total events to send; 0 = until Duration
	Token      string        // bearer token for the ingest endpoint
	Timeout    time.Duration // per request (default 30s)

	Progress         io.Writer     // live progress line (nil = none)
	ProgressInterval time.Duration // default 1s
	Notes            io.Writer     // one-line notes and warnings while running (nil = none)
}

// rateReachedFraction is how much of the target rate counts as reaching it:
// the schedule itself is exact, so falling short means the clients were busy.
const rateReachedFraction = 0.9

func (c *Config) validate() error {
	if c.URL == "" {
		return errors.New(`"url" is required`)
	}
	if c.Protocol == "" {
		c.Protocol = ProtocolEvents
	}
	if c.Protocol != ProtocolEvents && c.Protocol != ProtocolOTLPHTTP {
		return fmt.Errorf(`"protocol" must be %q or %q, not %q`, ProtocolEvents, ProtocolOTLPHTTP, c.Protocol)
	}
	for _, f := range []struct {
		name string
		bad  bool
		v    any
	}{
		{"clients", c.Clients < 0, c.Clients}, {"batch_size", c.BatchSize < 0, c.BatchSize}, {"event_size", c.EventSize < 0, c.EventSize},
		{"rate", c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0), c.Rate},
		{"duration", c.Duration < 0, c.Duration}, {"count", c.Count < 0, c.Count}, {"timeout", c.Timeout < 0, c.Timeout},
	} {
		if f.bad {
			return fmt.Errorf(`%q must be positive (or zero for the default), not %v`, f.name, f.v)
		}
	}
	if c.Clients == 0 {
		c.Clients = 8
	}
	if c.BatchSize == 0 {
		c.BatchSize = 500
	}
	if c.EventSize == 0 {
		c.EventSize = 250
	}
	if c.Protocol == ProtocolEvents && c.EventSize < MinEventSize {
		return fmt.Errorf(`"event_size" must be at least %d bytes (the smallest valid CloudEvent with a unique id: specversion, id, source, type, subject), not %d`,
			MinEventSize, c.EventSize)
	}
	if c.Duration == 0 && c.Count == 0 {
		return errors.New(`one of "duration" or "count" must be set`)
	}
	if c.Timeout == 0 {
		c.Timeout = 30 * time.Second
	}
	if c.ProgressInterval <= 0 {
		c.ProgressInterval = time.Second
	}
	c.URL = strings.TrimRight(c.URL, "/")
	if c.MetricsURL == "" {
		c.MetricsURL = c.URL + "/metrics"
	}
	return nil
}

// Report is what a run measured. JSON field names are stable (bench --json):
// fields may be added, never renamed.
type Report struct {
	Protocol       string           `json:"protocol"`
	Clients        int              `json:"clients"`
	BatchSize      int              `json:"batch_size"`
	EventSize      int              `json:"event_size_bytes"`
	ElapsedSeconds float64          `json:"elapsed_seconds"`
	Requests       int64            `json:"requests"`
	EventsAccepted int64            `json:"events_accepted"`
	BytesAccepted  int64            `json:"bytes_accepted"`
	EventsPerSec   float64          `json:"events_per_second"`
	MBPerSec       float64          `json:"mb_per_second"`
	LatencyP50Ms   float64          `json:"ack_latency_p50_ms"`
	LatencyP99Ms   float64          `json:"ack_latency_p99_ms"`
	LatencyMaxMs   float64          `json:"ack_latency_max_ms"`
	Errors         map[string]int64 `json:"errors"`

	// Only with a target rate (Config.Rate > 0).
	TargetRate float64 `json:"target_events_per_second,omitempty"`
	// Events put into requests per second of the sending window.
	SentRate    float64 `json:"sent_events_per_second,omitempty"`
	RateReached *bool   `json:"rate_reached,omitempty"`
	// Requests that started after their scheduled time because all
	// Clients requests were in flight.
	ScheduleSlips int64 `json:"schedule_slips,omitempty"`

	// From the producer's /metrics, difference over the run (absent when not scraped).
	Cost *Cost `json:"cost,omitempty"`

	// One-line warnings: target rate not reached, server-side figures skipped.
	Warnings []string `json:"warnings,omitempty"`
}

// Cost is what the accepted events cost in the bucket.
type Cost struct {
	BatchesStored            float64 `json:"batches_stored"`
	BytesStored              float64 `json:"bytes_stored"`
	ManifestWrites           float64 `json:"manifest_writes"`
	ManifestConflicts        float64 `json:"manifest_conflicts"`
	BytesStoredPerEvent      float64 `json:"bytes_stored_per_event"`
	ObjectPutsPerMillion     float64 `json:"object_puts_per_million_events"`
	ManifestWritesPerMillion float64 `json:"manifest_cas_writes_per_million_events"`
}

type result struct {
	events  int64
	bytes   int64
	latency []time.Duration
	errors  map[string]int64
}

// job is one request to send: seq numbers the request in the run, n is its
// event count.
type job struct{ seq, n int }

// Run starts requests until Duration has passed or Count events were sent
// (or ctx ends) and returns the report. Requests still in flight when the
// duration ends are waited for (each bounded by Timeout) and counted, so the
// report agrees with what the producer accepted; only when ctx ends are they
// cancelled, and then counted as errors of kind "cancelled".
//
// With Rate > 0 requests start on a fixed schedule (one every
// BatchSize/Rate seconds) whatever the ack latency, with at most Clients in
// flight; when all are busy a request starts late (a schedule slip) and, if
// the rate achieved falls short, the report says so.
//
// Run fails only for bad configuration. An unreachable /metrics only skips
// the server-side figures (a warning in the report and on Notes).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	client := &http.Client{
		Timeout:   cfg.Timeout,
		Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Clients, MaxConnsPerHost: cfg.Clients * 2},
	}
	var warnings []string
	warn := func(msg string) {
		warnings = append(warnings, msg)
		if cfg.Notes != nil {
			fmt.Fprintf(cfg.Notes, "bench: %s\n", msg)
		}
	}
	var before map[string]float64
	if cfg.MetricsURL != "-" {
		var err error
		if before, err = scrape(ctx, client, cfg.MetricsURL); err != nil {
			before = nil
			hint := "set --metrics-url to the producer's /metrics, or - to skip"
			if cfg.Protocol == ProtocolOTLPHTTP {
				hint = "for otlp-http, /metrics is on the producer's --listen address: --metrics-url http://HOST:8888/metrics; - skips"
			}
			warn(fmt.Sprintf("server-side figures (bytes stored, PUTs, CAS writes) skipped: cannot read %s: %v (%s)", cfg.MetricsURL, err, hint))
		}
	}
	// sendCtx ends the sending window; requests use ctx, so the deadline
	// never cancels a request the producer may already have committed.
	sendCtx := ctx
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		sendCtx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}

	var (
		accepted atomic.Int64
		wg       sync.WaitGroup
		results  = make([]result, cfg.Clients)
		jobs     = make(chan job)
	)
	start := time.Now()
	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		if cfg.Progress == nil {
			<-stopProgress
			return
		}
		t := time.NewTicker(cfg.ProgressInterval)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				fmt.Fprintln(cfg.Progress)
				return
			case <-t.C:
				el := time.Since(start).Seconds()
				n := accepted.Load()
				fmt.Fprintf(cfg.Progress, "\r%6.1fs  %10d events accepted  %10.0f events/s", el, n, float64(n)/el)
			}
		}
	}()

	for i := 0; i < cfg.Clients; i++ {
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			r := &results[id]
			r.errors = map[string]int64{}
			gen := newGenerator(cfg, id)
			for j := range jobs {
				if sendCtx.Err() != nil {
					continue // handed over as the window closed: never sent
				}
				body, ctype, path := gen.request(j.seq, j.n)
				t0 := time.Now()
				kind := send(ctx, client, cfg, path, ctype, body)
				switch {
				case kind == "":
					r.latency = append(r.latency, time.Since(t0))
					r.events += int64(j.n)
					r.bytes += int64(len(body))
					accepted.Add(int64(j.n))
				case ctx.Err() != nil:
					r.errors["cancelled"]++
				default:
					r.errors[kind]++
				}
			}
		}(i)
	}

	// The dispatcher: hands requests to free clients, on the schedule when
	// there is a rate, else as soon as a client is free.
	var (
		sentEvents, slips int64
		lastN             int
		lastStart         time.Time
		timer             = time.NewTimer(time.Hour)
	)
	timer.Stop()
	defer timer.Stop()
	// due is when request seq is scheduled to start.
	due := func(seq int) time.Time {
		return start.Add(time.Duration(float64(seq) * float64(cfg.BatchSize) / cfg.Rate * float64(time.Second)))
	}
dispatch:
	for seq := 0; sendCtx.Err() == nil; seq++ {
		n := cfg.BatchSize
		if cfg.Count > 0 {
			if sentEvents >= cfg.Count {
				break
			}
			n = int(min(int64(n), cfg.Count-sentEvents))
		}
		j := job{seq: seq, n: n}
		if cfg.Rate > 0 {
			if d := time.Until(due(seq)); d > 0 {
				timer.Reset(d)
				select {
				case <-sendCtx.Done():
					timer.Stop()
					break dispatch
				case <-timer.C:
				}
			}
			select {
			case jobs <- j:
			default:
				slips++
				select {
				case jobs <- j:
				case <-sendCtx.Done():
					break dispatch
				}
			}
		} else {
			select {
			case jobs <- j:
			case <-sendCtx.Done():
				break dispatch
			}
		}
		sentEvents += int64(n)
		lastN, lastStart = n, time.Now()
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)
	close(stopProgress)
	<-progressDone

	rep := &Report{Protocol: cfg.Protocol, Clients: cfg.Clients, BatchSize: cfg.BatchSize, EventSize: cfg.EventSize,
		ElapsedSeconds: elapsed.Seconds(), Errors: map[string]int64{}}
	var lat []time.Duration
	for _, r := range results {
		rep.EventsAccepted += r.events
		rep.BytesAccepted += r.bytes
		rep.Requests += int64(len(r.latency))
		lat = append(lat, r.latency...)
		for k, v := range r.errors {
			rep.Errors[k] += v
			rep.Requests += v
		}
	}
	rep.EventsPerSec = float64(rep.EventsAccepted) / elapsed.Seconds()
	rep.MBPerSec = float64(rep.BytesAccepted) / 1e6 / elapsed.Seconds()
	slices.Sort(lat)
	rep.LatencyP50Ms = quantileMs(lat, 0.50)
	rep.LatencyP99Ms = quantileMs(lat, 0.99)
	rep.LatencyMaxMs = quantileMs(lat, 1)

	if cfg.Rate > 0 {
		rep.TargetRate = cfg.Rate
		rep.ScheduleSlips = slips
		if sentEvents > 0 {
			// The sending window ends one slot (scaled to the last
			// request's size) after the last start: on schedule, the rate
			// over it is exactly the target.
			window := lastStart.Sub(start).Seconds() + float64(lastN)/cfg.Rate
			rep.SentRate = float64(sentEvents) / window
		}
		reached := rep.SentRate >= rateReachedFraction*cfg.Rate
		rep.RateReached = &reached
		if !reached {
			warn(fmt.Sprintf("target rate not reached: %.0f of %.0f events/s (in-flight limit %d; %d requests waited for a free client; raise --clients)",
				rep.SentRate, cfg.Rate, cfg.Clients, slips))
		}
	}
	if n := rep.Errors["cancelled"]; n > 0 {
		warn(fmt.Sprintf("%d requests were cancelled because the run was interrupted; the producer may have accepted some of their events", n))
	}

	if before != nil {
		after, err := scrape(context.Background(), client, cfg.MetricsURL)
		if err != nil {
			rep.Errors["scrape_after"]++
			warn(fmt.Sprintf("server-side figures skipped: cannot read %s after the run: %v", cfg.MetricsURL, err))
		} else {
			rep.Cost = costOf(before, after, rep.EventsAccepted)
		}
	}
	rep.Warnings = warnings
	return rep, nil
}

func quantileMs(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return float64(sorted[i]) / float64(time.Millisecond)
}

// send posts one request and returns "" on a 2xx or the error kind.
func send(ctx context.Context, client *http.Client, cfg Config, path, ctype string, body []byte) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.URL+path, bytes.NewReader(body))
	if err != nil {
		return "request"
	}
	req.Header.Set("Content-Type", ctype)
	if cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+cfg.Token)
	}
	resp, err := client.Do(req)
	if err != nil {
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			return "timeout"
		default:
			return "connection"
		}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		return ""
	}
	return "http_" + strconv.Itoa(resp.StatusCode)
}

// The CloudEvents a generator writes are exactly Config.EventSize bytes of
// JSON each (the array's commas and brackets aside). From fullEventMin bytes
// or so they are the realistic event below with a hex "pad" in data; below
// that, the smallest valid event (the attributes the front door requires and
// nothing else) with hex padding at the end of its id:
//
//	{"specversion":"1.0","id":"<16 hex>[pad]","source":"b","type":"t","subject":"c000"}
const (
	smallEventHead = `{"specversion":"1.0","id":"`
	smallIDLen     = 16 // hex digits: client<<40 | counter, unique per run
	smallEventTail = `","source":"b","type":"t","subject":"c000"}`
	// maxIDLen is the producer's bound on an event id (README, event rules).
	maxIDLen = 256
)

// MinEventSize is the smallest Config.EventSize for ProtocolEvents: the
// smallest valid CloudEvent with an id unique within a run.
const MinEventSize = len(smallEventHead) + smallIDLen + len(smallEventTail)

// generator builds request bodies with unique, realistic events.
type generator struct {
	cfg     Config
	client  int
	padLen  int // OTLP: bytes of padding per log body
	rnd     *rand.Rand
	hex     []byte
	counter uint64 // small events written, for their ids
}

func newGenerator(cfg Config, client int) *generator {
	// OTLP: a typical log record without padding is about 200 bytes; pad
	// its body towards EventSize (approximate: protobuf framing varies).
	const base = 200
	padLen := max(0, cfg.EventSize-base)
	return &generator{cfg: cfg, client: client, padLen: padLen,
		rnd: rand.New(rand.NewPCG(uint64(client), 0x62756b71)), hex: make([]byte, padLen)}
}

// pad returns random hex of the padding length: incompressible enough that
// "bytes stored per event" is not flattered by repeated filler.
func (g *generator) pad() string {
	g.fillHex(g.hex)
	return string(g.hex)
}

func (g *generator) fillHex(b []byte) {
	const digits = "0123456789abcdef"
	for i := 0; i < len(b); i += 16 {
		x := g.rnd.Uint64()
		for j := i; j < min(i+16, len(b)); j++ {
			b[j] = digits[x&15]
			x >>= 4
		}
	}
}

// writeHex appends n random hex digits to buf.
func (g *generator) writeHex(buf *bytes.Buffer, n int) {
	buf.Grow(n)
	b := buf.AvailableBuffer()[:n]
	g.fillHex(b)
	buf.Write(b)
}

// writeEvent appends one CloudEvent of exactly cfg.EventSize bytes (at
// least MinEventSize, which validate checks).
func (g *generator) writeEvent(buf *bytes.Buffer, seq, i int, ts string) {
	const fullTail = `"}}`
	start := buf.Len()
	fmt.Fprintf(buf, `{"specversion":"1.0","type":"api-calls","id":"bench-%d-%d-%d","source":"bucketq-bench","subject":"customer-%d","time":%q,"data":{"method":"GET","path":"/api/v1/things","duration_ms":%d,"pad":"`,
		g.client, seq, i, (seq+i)%1000, ts, 10+i%90)
	if pad := g.cfg.EventSize - (buf.Len() - start) - len(fullTail); pad >= 0 {
		g.writeHex(buf, pad)
		buf.WriteString(fullTail)
		return
	}
	// Too small for the realistic event: the smallest valid one, its id
	// padded. The realistic one is far shorter than MinEventSize +
	// maxIDLen - smallIDLen, so the id stays within the producer's bound.
	buf.Truncate(start)
	buf.WriteString(smallEventHead)
	id := uint64(g.client)<<40 | g.counter&(1<<40-1)
	g.counter++
	var idb [smallIDLen]byte
	const digits = "0123456789abcdef"
	for k := smallIDLen - 1; k >= 0; k-- {
		idb[k] = digits[id&15]
		id >>= 4
	}
	buf.Write(idb[:])
	g.writeHex(buf, g.cfg.EventSize-MinEventSize)
	buf.WriteString(smallEventTail)
}

func (g *generator) request(seq, n int) (body []byte, ctype, path string) {
	now := time.Now().UTC()
	if g.cfg.Protocol == ProtocolOTLPHTTP {
		req := &collogs.ExportLogsServiceRequest{ResourceLogs: []*logs.ResourceLogs{{
			Resource:  &resource.Resource{Attributes: []*common.KeyValue{strAttr("service.name", "bucketq-bench")}},
			ScopeLogs: []*logs.ScopeLogs{{LogRecords: make([]*logs.LogRecord, 0, n)}},
		}}}
		sl := req.ResourceLogs[0].ScopeLogs[0]
		for i := 0; i < n; i++ {
			sl.LogRecords = append(sl.LogRecords, &logs.LogRecord{
				TimeUnixNano: uint64(now.UnixNano()),
				Body:         &common.AnyValue{Value: &common.AnyValue_StringValue{StringValue: "GET /api/v1/things " + g.pad()}},
				Attributes: []*common.KeyValue{
					strAttr("subject", fmt.Sprintf("customer-%d", (seq+i)%1000)),
					strAttr("method", "GET"), strAttr("path", "/api/v1/things"),
					{Key: "duration", Value: &common.AnyValue{Value: &common.AnyValue_IntValue{IntValue: int64(10 + i%90)}}},
				},
			})
		}
		b, _ := proto.Marshal(req)
		return b, "application/x-protobuf", "/v1/logs"
	}
	var buf bytes.Buffer
	buf.Grow(n*(g.cfg.EventSize+1) + 2)
	buf.WriteByte('[')
	ts := now.Format(time.RFC3339Nano)
	for i := 0; i < n; i++ {
		if i > 0 {
			buf.WriteByte(',')
		}
		g.writeEvent(&buf, seq, i, ts)
	}
	buf.WriteByte(']')
	return buf.Bytes(), "application/cloudevents-batch+json", "/api/v1/events"
}

func strAttr(k, v string) *common.KeyValue {
	return &common.KeyValue{Key: k, Value: &common.AnyValue{Value: &common.AnyValue_StringValue{StringValue: v}}}
}

// scrape returns every counter and histogram sum/count on the page, keyed by
// name plus sorted labels ("buffer_manifest_writes{role=producer}").
func scrape(ctx context.Context, client *http.Client, url string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			key := name + labelKey(m.GetLabel())
			switch {
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			case m.Histogram != nil:
				out[key+"_sum"] = m.GetHistogram().GetSampleSum()
				out[key+"_count"] = float64(m.GetHistogram().GetSampleCount())
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			}
		}
	}
	return out, nil
}

func labelKey(ls []*dto.LabelPair) string {
	if len(ls) == 0 {
		return ""
	}
	parts := make([]string, 0, len(ls))
	for _, l := range ls {
		parts = append(parts, l.GetName()+"="+l.GetValue())
	}
	slices.Sort(parts)
	return "{" + strings.Join(parts, ",") + "}"
}

func costOf(before, after map[string]float64, events int64) *Cost {
	d := func(k string) float64 { return after[k] - before[k] }
	c := &Cost{
		BatchesStored:     d("batch_sent"),
		BytesStored:       d("producer_batch_bytes_sum"),
		ManifestWrites:    d("buffer_manifest_writes{role=producer}"),
		ManifestConflicts: d("buffer_manifest_conflicts{role=producer}"),
	}
	if events > 0 {
		c.BytesStoredPerEvent = c.BytesStored / float64(events)
		c.ObjectPutsPerMillion = c.BatchesStored * 1e6 / float64(events)
		c.ManifestWritesPerMillion = c.ManifestWrites * 1e6 / float64(events)
	}
	return c
}

// WriteTable prints the report for people.
func (r *Report) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "protocol            %s (%d clients, %d events/request, ~%d B/event)\n", r.Protocol, r.Clients, r.BatchSize, r.EventSize)
	fmt.Fprintf(w, "elapsed             %.2fs\n", r.ElapsedSeconds)
	fmt.Fprintf(w, "events accepted     %d (%.0f events/s, %.2f MB/s)\n", r.EventsAccepted, r.EventsPerSec, r.MBPerSec)
	fmt.Fprintf(w, "requests            %d\n", r.Requests)
	fmt.Fprintf(w, "ack latency         p50 %.1fms  p99 %.1fms  max %.1fms\n", r.LatencyP50Ms, r.LatencyP99Ms, r.LatencyMaxMs)
	if r.TargetRate > 0 {
		verdict := "reached"
		if r.RateReached != nil && !*r.RateReached {
			verdict = "NOT reached"
		}
		fmt.Fprintf(w, "target rate         %.0f events/s: %s (sent %.0f events/s, %d schedule slips)\n", r.TargetRate, verdict, r.SentRate, r.ScheduleSlips)
	}
	if r.Cost != nil {
		fmt.Fprintf(w, "bytes stored/event  %.1f\n", r.Cost.BytesStoredPerEvent)
		fmt.Fprintf(w, "object PUTs/1M ev   %.1f\n", r.Cost.ObjectPutsPerMillion)
		fmt.Fprintf(w, "manifest CAS/1M ev  %.1f (%.0f conflicts)\n", r.Cost.ManifestWritesPerMillion, r.Cost.ManifestConflicts)
	}
	for _, m := range r.Warnings {
		fmt.Fprintf(w, "warning             %s\n", m)
	}
	if len(r.Errors) == 0 {
		fmt.Fprintf(w, "errors              none\n")
		return
	}
	keys := make([]string, 0, len(r.Errors))
	for k := range r.Errors {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "errors              %s: %d\n", k, r.Errors[k])
	}
}

// WriteJSON prints the report as one JSON object.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
