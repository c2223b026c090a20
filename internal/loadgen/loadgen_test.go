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
	}
	for _, c := range cases {
		_, err := Run(context.Background(), c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config %+v: error %v, want mention of %s", c.cfg, err, c.want)
		}
	}
}
