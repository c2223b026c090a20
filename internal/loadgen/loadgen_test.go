package loadgen

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	collogs "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/protobuf/proto"
)

// fakeProducer accepts events, rejects every rejectEvery-th request with 429,
// and exports the producer metrics loadgen reads.
type fakeProducer struct {
	mu          sync.Mutex
	ids         map[string]int
	otlpRecords int
	requests    atomic.Int64
	rejectEvery int64
	batchSent   prometheus.Counter
	casWrites   *prometheus.CounterVec
}

func newFake(t *testing.T, rejectEvery int64) (*fakeProducer, *httptest.Server) {
	reg := prometheus.NewRegistry()
	f := &fakeProducer{ids: map[string]int{}, rejectEvery: rejectEvery,
		batchSent: prometheus.NewCounter(prometheus.CounterOpts{Name: "batch_sent"}),
		casWrites: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "buffer_manifest_writes"}, []string{"role"}),
	}
	reg.MustRegister(f.batchSent, f.casWrites)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/api/v1/events", func(w http.ResponseWriter, r *http.Request) {
		n := f.requests.Add(1)
		if r.Header.Get("Content-Type") != "application/cloudevents-batch+json" {
			http.Error(w, "content type", http.StatusUnsupportedMediaType)
			return
		}
		var evs []struct {
			ID   string          `json:"id"`
			Data json.RawMessage `json:"data"`
		}
		if err := json.NewDecoder(r.Body).Decode(&evs); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if f.rejectEvery > 0 && n%f.rejectEvery == 0 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		f.mu.Lock()
		for _, e := range evs {
			f.ids[e.ID]++
		}
		f.mu.Unlock()
		f.batchSent.Inc()
		f.casWrites.WithLabelValues("producer").Inc()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/v1/logs", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var req collogs.ExportLogsServiceRequest
		if err := proto.Unmarshal(b, &req); err != nil || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "bad otlp", http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		for _, rl := range req.ResourceLogs {
			for _, sl := range rl.ScopeLogs {
				f.otlpRecords += len(sl.LogRecords)
			}
		}
		f.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return f, srv
}

func TestRunCountsExactly(t *testing.T) {
	f, srv := newFake(t, 0)
	var progress strings.Builder
	rep, err := Run(context.Background(), Config{URL: srv.URL, Clients: 4, BatchSize: 300, Count: 10_000, EventSize: 400, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if rep.EventsAccepted != 10_000 {
		t.Fatalf("accepted %d, want 10000", rep.EventsAccepted)
	}
	if len(f.ids) != 10_000 {
		t.Fatalf("server saw %d distinct ids, want 10000", len(f.ids))
	}
	for id, n := range f.ids {
		if n != 1 {
			t.Fatalf("id %s sent %d times", id, n)
		}
	}
	// 10000/300 = 33 full requests + one of 100.
	if rep.Requests != 34 || len(rep.Errors) != 0 {
		t.Fatalf("requests %d errors %v, want 34 and none", rep.Requests, rep.Errors)
	}
	if rep.Cost == nil || rep.Cost.BatchesStored != 34 || rep.Cost.ObjectPutsPerMillion != 34*1e6/10_000 || rep.Cost.ManifestWrites != 34 {
		t.Fatalf("cost %+v", rep.Cost)
	}
	if rep.LatencyP50Ms <= 0 || rep.LatencyP99Ms < rep.LatencyP50Ms || rep.LatencyMaxMs < rep.LatencyP99Ms {
		t.Fatalf("latencies p50 %v p99 %v max %v", rep.LatencyP50Ms, rep.LatencyP99Ms, rep.LatencyMaxMs)
	}
	if avg := float64(rep.BytesAccepted) / 10_000; avg < 350 || avg > 450 {
		t.Fatalf("average event size %.0f, want about 400", avg)
	}
	var table strings.Builder
	rep.WriteTable(&table)
	if !strings.Contains(table.String(), "events accepted     10000") {
		t.Fatalf("table:\n%s", table.String())
	}
}

func TestRunCountsRejectionsByKind(t *testing.T) {
	f, srv := newFake(t, 3)
	rep, err := Run(context.Background(), Config{URL: srv.URL, Clients: 2, BatchSize: 100, Count: 3000, MetricsURL: "-"})
	if err != nil {
		t.Fatal(err)
	}
	rejected := rep.Errors["http_429"]
	if rejected == 0 || rejected != f.requests.Load()/3 {
		t.Fatalf("429s counted %d, server rejected %d", rejected, f.requests.Load()/3)
	}
	if rep.EventsAccepted != int64(len(f.ids)) {
		t.Fatalf("report says %d accepted, server stored %d", rep.EventsAccepted, len(f.ids))
	}
	if rep.Cost != nil {
		t.Fatalf("cost without scraping: %+v", rep.Cost)
	}
}

func TestRunOTLP(t *testing.T) {
	f, srv := newFake(t, 0)
	rep, err := Run(context.Background(), Config{URL: srv.URL, Protocol: ProtocolOTLPHTTP, Clients: 2, BatchSize: 50, Count: 500, MetricsURL: "-"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.EventsAccepted != 500 || f.otlpRecords != 500 {
		t.Fatalf("accepted %d, server got %d log records; want 500", rep.EventsAccepted, f.otlpRecords)
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{}, `"url" is required`},
		{Config{URL: "http://x", Count: 1, Protocol: "grpc"}, `"protocol"`},
		{Config{URL: "http://x"}, `"duration" or "count"`},
		{Config{URL: "http://x", Count: 1, Rate: -1}, `"rate"`},
		{Config{URL: "http://x", Count: 1, Clients: -3}, `"clients"`},
		{Config{URL: "http://x", Count: 1, BatchSize: -1}, `"batch_size"`},
		{Config{URL: "http://x", Count: 1, EventSize: -1}, `"event_size"`},
		{Config{URL: "http://x", Count: -1}, `"count"`},
		{Config{URL: "http://x", Duration: -time.Second}, `"duration"`},
		{Config{URL: "http://x", Count: 1, Timeout: -time.Second}, `"timeout"`},
	}
	for _, c := range cases {
		_, err := Run(context.Background(), c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config %+v: error %v, want mention of %s", c.cfg, err, c.want)
		}
	}
}

// committingServer accepts CloudEvents batches like a producer: after delay it
// counts the events as accepted whether or not the client still waits for
// the answer (a producer commits a batch even if the client went away).
type committingServer struct {
	delay    time.Duration
	events   atomic.Int64
	requests atomic.Int64
	inFlight atomic.Int64
}

func newCommittingServer(t *testing.T, delay time.Duration) (*committingServer, *httptest.Server) {
	s := &committingServer{delay: delay}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.inFlight.Add(1)
		defer s.inFlight.Add(-1)
		var evs []json.RawMessage
		if r.URL.Path != "/api/v1/events" || json.NewDecoder(r.Body).Decode(&evs) != nil {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		time.Sleep(s.delay)
		s.events.Add(int64(len(evs)))
		s.requests.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return s, srv
}

// waitIdle waits (long deadline, polling) until no request is being handled,
// so that the server's counts are final.
func (s *committingServer) waitIdle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for s.inFlight.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("server still handling %d requests after 30s", s.inFlight.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// At the end of --duration, requests in flight must finish and be counted:
// the report must agree exactly with what the server accepted.
func TestRunDurationCountsRequestsInFlightAtTheDeadline(t *testing.T) {
	s, srv := newCommittingServer(t, 100*time.Millisecond)
	rep, err := Run(context.Background(), Config{URL: srv.URL, MetricsURL: "-", Clients: 8, BatchSize: 10, Duration: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	s.waitIdle(t)
	if rep.EventsAccepted == 0 || rep.EventsAccepted != s.events.Load() {
		t.Fatalf("report says %d events accepted, server accepted %d", rep.EventsAccepted, s.events.Load())
	}
	if rep.Requests != s.requests.Load() || len(rep.Errors) != 0 {
		t.Fatalf("report: %d requests, errors %v; server answered %d", rep.Requests, rep.Errors, s.requests.Load())
	}
}

// With --rate, requests start on the schedule: a fast server gets about the
// target rate (generous band: the machine may be loaded).
func TestRunRateFastServerGetsTheTargetRate(t *testing.T) {
	s, srv := newCommittingServer(t, 0)
	const target = 2000.0 // events/s: 100 requests/s of 20
	rep, err := Run(context.Background(), Config{URL: srv.URL, MetricsURL: "-", Clients: 4, BatchSize: 20, Rate: target, Duration: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s.waitIdle(t)
	if rep.EventsAccepted != s.events.Load() {
		t.Fatalf("report says %d events accepted, server accepted %d", rep.EventsAccepted, s.events.Load())
	}
	got := float64(s.events.Load()) / rep.ElapsedSeconds
	if got < 0.5*target || got > 1.5*target {
		t.Fatalf("server got %.0f events/s, want about %.0f (report %+v)", got, target, rep)
	}
	if rep.TargetRate != target || rep.RateReached == nil || rep.SentRate < 0.5*target || rep.SentRate > 1.5*target {
		t.Fatalf("target %v reached %v sent rate %v", rep.TargetRate, rep.RateReached, rep.SentRate)
	}
}

// The schedule holds in count mode too: 500 events at 1000 events/s in
// requests of 50 start over 0.45 s, not all at once.
func TestRunRateCountIsPaced(t *testing.T) {
	s, srv := newCommittingServer(t, 0)
	rep, err := Run(context.Background(), Config{URL: srv.URL, MetricsURL: "-", Clients: 4, BatchSize: 50, Rate: 1000, Count: 500})
	if err != nil {
		t.Fatal(err)
	}
	if rep.EventsAccepted != 500 || s.events.Load() != 500 || rep.Requests != 10 {
		t.Fatalf("accepted %d in %d requests, server %d; want 500 in 10", rep.EventsAccepted, rep.Requests, s.events.Load())
	}
	if rep.ElapsedSeconds < 0.4 {
		t.Fatalf("500 events at 1000/s took %.3fs, want at least 0.45s", rep.ElapsedSeconds)
	}
}

// When the clients cannot keep up with the target (slow acks), the report
// and the notes say so instead of quietly sending less.
func TestRunRateSlowServerWarns(t *testing.T) {
	s, srv := newCommittingServer(t, 200*time.Millisecond)
	var notes strings.Builder
	// 2 clients x 10 events / 0.2 s = at most 100 events/s, 10% of the target.
	rep, err := Run(context.Background(), Config{URL: srv.URL, MetricsURL: "-", Clients: 2, BatchSize: 10, Rate: 1000,
		Duration: time.Second, Notes: &notes})
	if err != nil {
		t.Fatal(err)
	}
	s.waitIdle(t)
	if rep.RateReached == nil || *rep.RateReached || rep.ScheduleSlips == 0 || rep.SentRate >= 500 {
		t.Fatalf("reached %v slips %d sent rate %.0f; want not reached", rep.RateReached, rep.ScheduleSlips, rep.SentRate)
	}
	const want = "target rate not reached: "
	if !strings.Contains(notes.String(), want) || !strings.Contains(notes.String(), "of 1000 events/s (in-flight limit 2") {
		t.Fatalf("notes %q lack the warning", notes.String())
	}
	if len(rep.Warnings) != 1 || !strings.HasPrefix(rep.Warnings[0], want) {
		t.Fatalf("report warnings %q", rep.Warnings)
	}
	var table, js strings.Builder
	rep.WriteTable(&table)
	if !strings.Contains(table.String(), want) || !strings.Contains(table.String(), "NOT reached") {
		t.Fatalf("table lacks the warning:\n%s", table.String())
	}
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal([]byte(js.String()), &back); err != nil {
		t.Fatal(err)
	}
	if back["rate_reached"] != false || back["target_events_per_second"] != 1000.0 {
		t.Fatalf("JSON %s", js.String())
	}
	if rep.EventsAccepted != s.events.Load() {
		t.Fatalf("report says %d events accepted, server accepted %d", rep.EventsAccepted, s.events.Load())
	}
}

// A producer without /metrics (the OTLP port) gives a report without the
// server-side figures and a note, not a failure.
func TestRunWithoutMetricsSkipsCostWithANote(t *testing.T) {
	f, srv := newFake(t, 0)
	var notes strings.Builder
	rep, err := Run(context.Background(), Config{URL: srv.URL, Protocol: ProtocolOTLPHTTP, MetricsURL: srv.URL + "/no-metrics",
		Clients: 2, BatchSize: 50, Count: 200, Notes: &notes})
	if err != nil {
		t.Fatal(err)
	}
	if rep.EventsAccepted != 200 || f.otlpRecords != 200 || rep.Cost != nil {
		t.Fatalf("accepted %d, server %d, cost %+v", rep.EventsAccepted, f.otlpRecords, rep.Cost)
	}
	if n := strings.Count(notes.String(), "\n"); n != 1 || !strings.Contains(notes.String(), "server-side figures") || !strings.Contains(notes.String(), "/no-metrics") {
		t.Fatalf("notes %q, want one line naming the URL", notes.String())
	}
	if len(rep.Warnings) != 1 || len(rep.Errors) != 0 {
		t.Fatalf("warnings %q errors %v", rep.Warnings, rep.Errors)
	}
}

// When ctx ends (Ctrl-C), requests in flight are cancelled and counted as
// such, not silently dropped.
func TestRunInterruptedCountsCancelledRequests(t *testing.T) {
	var started atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // so that the server notices the client going away
		started.Add(1)
		select {
		case <-r.Context().Done():
		case <-time.After(time.Minute):
		}
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for started.Load() < 3 {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	rep, err := Run(ctx, Config{URL: srv.URL, MetricsURL: "-", Clients: 3, BatchSize: 10, Duration: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors["cancelled"] != 3 || rep.Requests != 3 || rep.EventsAccepted != 0 {
		t.Fatalf("requests %d accepted %d errors %v, want 3 cancelled", rep.Requests, rep.EventsAccepted, rep.Errors)
	}
	if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "3 requests were cancelled") {
		t.Fatalf("warnings %q", rep.Warnings)
	}
}
