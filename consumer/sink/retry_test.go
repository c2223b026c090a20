package sink

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// scriptSink answers each Send from a script, then by content: a request
// holding an event containing "bad" is refused with 400.
type scriptSink struct {
	script []error
	sends  [][]json.RawMessage
}

func (s *scriptSink) Send(_ context.Context, evs []json.RawMessage) error {
	s.sends = append(s.sends, evs)
	if len(s.script) > 0 {
		err := s.script[0]
		s.script = s.script[1:]
		return err
	}
	for _, e := range evs {
		if strings.Contains(string(e), "bad") {
			return &HTTPError{Status: 400, Body: "refused"}
		}
	}
	return nil
}

func (s *scriptSink) Close() error { return nil }

func TestSendRetrying(t *testing.T) {
	evs := func(names ...string) []json.RawMessage {
		out := make([]json.RawMessage, len(names))
		for i, n := range names {
			out[i] = json.RawMessage(`"` + n + `"`)
		}
		return out
	}
	p := RetryPolicy{MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}
	for _, tc := range []struct {
		name    string
		script  []error
		events  []json.RawMessage
		refused []int
		sends   int
		wantErr error
	}{
		{name: "accepted", events: evs("a", "b"), sends: 1},
		{name: "5xx then accepted", script: []error{&HTTPError{Status: 500}, errors.New("connection reset")}, events: evs("a"), sends: 3},
		{name: "429 with Retry-After", script: []error{&HTTPError{Status: 429, RetryAfter: time.Millisecond}}, events: evs("a"), sends: 2},
		{name: "bisects to the refused events", events: evs("a", "bad1", "c", "d", "bad2"), refused: []int{1, 4}},
		{name: "operator answer stops", script: []error{&HTTPError{Status: 401}}, events: evs("a"), sends: 1, wantErr: ErrOperator},
		{name: "redirect stops", script: []error{&HTTPError{Status: 302}}, events: evs("a"), sends: 1, wantErr: ErrOperator},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &scriptSink{script: tc.script}
			refused, err := SendRetrying(context.Background(), s, tc.events, p)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			var idx []int
			for _, r := range refused {
				idx = append(idx, r.Index)
				if r.Err.Status != 400 {
					t.Fatalf("refusal %+v", r)
				}
			}
			if len(idx) != len(tc.refused) || (len(idx) > 0 && (idx[0] != tc.refused[0] || idx[len(idx)-1] != tc.refused[len(tc.refused)-1])) {
				t.Fatalf("refused %v, want %v", idx, tc.refused)
			}
			if tc.sends > 0 && len(s.sends) != tc.sends {
				t.Fatalf("%d sends, want %d", len(s.sends), tc.sends)
			}
			// Every event not refused was in an accepted request.
			if tc.wantErr == nil {
				delivered := map[string]bool{}
				for _, req := range s.sends {
					bad := false
					for _, e := range req {
						bad = bad || strings.Contains(string(e), "bad")
					}
					if !bad {
						for _, e := range req {
							delivered[string(e)] = true
						}
					}
				}
				for i, e := range tc.events {
					isRefused := false
					for _, r := range tc.refused {
						isRefused = isRefused || r == i
					}
					if !isRefused && !delivered[string(e)] && len(tc.script) == 0 {
						t.Fatalf("event %s neither delivered nor refused", e)
					}
				}
			}
		})
	}
	// ctx ending stops the retries.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := SendRetrying(ctx, &scriptSink{script: []error{&HTTPError{Status: 503}}}, evs("a"), p); !errors.Is(err, context.Canceled) {
		t.Fatalf("after cancel: %v", err)
	}
}
