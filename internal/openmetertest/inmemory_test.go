package openmetertest

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestInMemoryInABubble: a NewInMemory server works inside a synctest
// bubble through its Client: it enforces the same rules and records what it
// accepts, its latency passes on the bubble's clock, and a client that gives
// up first gets its context's error while the server counts the request as
// abandoned (499), as over a connection.
func TestInMemoryInABubble(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := NewInMemory(Options{Token: "tok", Latency: 2 * time.Second})
		defer s.Close()
		send := func(ctx context.Context, token string) (int, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.Endpoint, strings.NewReader(good))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/cloudevents+json")
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := s.Client().Do(req)
			if err != nil {
				return 0, err
			}
			resp.Body.Close()
			return resp.StatusCode, nil
		}

		start := time.Now()
		if code, err := send(t.Context(), "tok"); err != nil || code != 204 {
			t.Fatalf("accepted event: %d, %v", code, err)
		}
		if d := time.Since(start); d != 2*time.Second {
			t.Errorf("answered after %v, want the 2s latency", d)
		}
		if got := s.Events(); len(got) != 1 || got[0].ID != "e1" {
			t.Errorf("recorded %+v", got)
		}
		if code, err := send(t.Context(), "wrong"); err != nil || code != 401 {
			t.Errorf("wrong token: %d, %v", code, err)
		}

		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		start = time.Now()
		if _, err := send(ctx, "tok"); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("client gave up after 1s: err %v, want DeadlineExceeded", err)
		}
		if d := time.Since(start); d != time.Second {
			t.Errorf("client gave up after %v, want 1s", d)
		}
		if n := s.Requests(499); n != 1 {
			t.Errorf("abandoned requests %d, want 1", n)
		}
		if n := len(s.Events()); n != 1 {
			t.Errorf("%d events recorded, want still 1", n)
		}
	})
}
