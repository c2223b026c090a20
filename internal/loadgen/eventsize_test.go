package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/ingest/httpevents"
)

// countingAppender accepts every Append at once and counts the records.
type countingAppender struct{ records atomic.Int64 }

func (a *countingAppender) Append(_ context.Context, _ format.Header, recs [][]byte) error {
	a.records.Add(int64(len(recs)))
	return nil
}

// TestEventSize: every CloudEvent the generator writes is exactly
// Config.EventSize bytes of JSON, from MinEventSize up, for small and large
// client and sequence numbers (ids and subjects of different lengths), and
// the real front door accepts them all.
func TestEventSize(t *testing.T) {
	app := &countingAppender{}
	front := httpevents.NewHandler(app, httpevents.Config{}, nil, nil)
	for _, size := range []int{MinEventSize, MinEventSize + 1, 100, 128, 150, 199, 200, 220, 229, 230, 231, 250, 256, 1000, 4096} {
		for _, pos := range []struct{ client, seq int }{{0, 0}, {7, 42}, {4095, 987_654_321}} {
			t.Run(fmt.Sprintf("size=%d/client=%d/seq=%d", size, pos.client, pos.seq), func(t *testing.T) {
				cfg := Config{URL: "http://x", Count: 1, EventSize: size}
				if err := cfg.validate(); err != nil {
					t.Fatal(err)
				}
				g := newGenerator(cfg, pos.client)
				const n = 5
				body, ctype, path := g.request(pos.seq, n)
				var evs []json.RawMessage
				if err := json.Unmarshal(body, &evs); err != nil {
					t.Fatalf("body is not a JSON array: %v\n%s", err, body)
				}
				if len(evs) != n {
					t.Fatalf("%d events, want %d", len(evs), n)
				}
				ids := map[string]bool{}
				for i, ev := range evs {
					if len(ev) != size {
						t.Errorf("event %d is %d bytes, want %d: %s", i, len(ev), size, ev)
					}
					var e struct{ ID string }
					if err := json.Unmarshal(ev, &e); err != nil || e.ID == "" || len(e.ID) > maxIDLen {
						t.Errorf("event %d: id %q (%d bytes), err %v", i, e.ID, len(e.ID), err)
					}
					if ids[e.ID] {
						t.Errorf("event %d: duplicate id %q", i, e.ID)
					}
					ids[e.ID] = true
				}
				if want := n*size + n - 1 + 2; len(body) != want {
					t.Errorf("body is %d bytes, want %d", len(body), want)
				}
				rec := httptest.NewRecorder()
				req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
				req.Header.Set("Content-Type", ctype)
				before := app.records.Load()
				front.ServeHTTP(rec, req)
				if rec.Code != http.StatusNoContent || app.records.Load()-before != n {
					t.Fatalf("front door answered %d (%s), appended %d records; want 204 and %d", rec.Code, rec.Body, app.records.Load()-before, n)
				}
			})
		}
	}
}

func TestEventSizeBelowMinimum(t *testing.T) {
	for _, size := range []int{1, 50, MinEventSize - 1} {
		cfg := Config{URL: "http://x", Count: 1, EventSize: size}
		err := cfg.validate()
		if err == nil || !strings.Contains(err.Error(), `"event_size" must be at least`) || !strings.Contains(err.Error(), fmt.Sprint(MinEventSize)) {
			t.Errorf("event size %d: error %v, want one naming the minimum %d", size, err, MinEventSize)
		}
	}
	// OTLP sizes are approximate (log body padding): small ones are fine.
	cfg := Config{URL: "http://x", Count: 1, EventSize: 10, Protocol: ProtocolOTLPHTTP}
	if err := cfg.validate(); err != nil {
		t.Errorf("otlp-http with event size 10: %v", err)
	}
}
