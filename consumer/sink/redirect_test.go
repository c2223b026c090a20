package sink

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// redirectServer answers every POST to /api/v1/events with status and a
// Location of /final, which would accept anything with a 2xx. It counts
// the requests each path got.
type redirectServer struct {
	*httptest.Server
	redirected, final atomic.Int64
}

func newRedirectServer(t *testing.T, status int) *redirectServer {
	t.Helper()
	rs := &redirectServer{}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/events", func(w http.ResponseWriter, r *http.Request) {
		rs.redirected.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		http.Redirect(w, r, "/final", status)
	})
	mux.HandleFunc("/final", func(w http.ResponseWriter, r *http.Request) {
		rs.final.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	})
	rs.Server = httptest.NewServer(mux)
	t.Cleanup(rs.Close)
	return rs
}

var redirectStatuses = []int{301, 302, 303, 307, 308}

// TestHTTPNeverFollowsRedirects: a redirect in front of the metering API
// is an error naming the status and the Location, classified Operator
// (the queue is held), and the redirect target is never requested: Go
// would re-send a 301/302/303 as a GET without the events, and its 2xx
// would count as delivered. This holds for a caller's own client too,
// which is not modified.
func TestHTTPNeverFollowsRedirects(t *testing.T) {
	for _, status := range redirectStatuses {
		srv := newRedirectServer(t, status)
		endpoint := srv.URL + "/api/v1/events"
		fromURL, err := FromURL(endpoint, "secret", nil)
		if err != nil {
			t.Fatal(err)
		}
		following := func(*http.Request, []*http.Request) error { return nil }
		own := &http.Client{CheckRedirect: following}
		plain := &http.Client{}
		for name, s := range map[string]Sink{
			"FromURL":             fromURL,
			"NewHTTP":             NewHTTP(endpoint, "secret", HTTPOptions{}),
			"caller client":       NewHTTP(endpoint, "secret", HTTPOptions{Client: own}),
			"caller plain client": NewHTTP(endpoint, "secret", HTTPOptions{Client: plain}),
		} {
			before := srv.redirected.Load()
			err := s.Send(context.Background(), evs("a"))
			var he *HTTPError
			if !errors.As(err, &he) || he.Status != status {
				t.Fatalf("%d %s: Send = %v, want an *HTTPError with status %d", status, name, err, status)
			}
			if Classify(he.Status) != Operator {
				t.Errorf("%d %s: class %d, want Operator", status, name, Classify(he.Status))
			}
			wantLoc := "/final"
			if he.Location != wantLoc || !strings.Contains(err.Error(), `"/final"`) {
				t.Errorf("%d %s: Location %q, error %q; want both to name %s", status, name, he.Location, err, wantLoc)
			}
			if !strings.Contains(err.Error(), "HTTP "+strconv.Itoa(status)) {
				t.Errorf("%d %s: error %q does not name the status", status, name, err)
			}
			if n := srv.redirected.Load() - before; n != 1 {
				t.Errorf("%d %s: %d requests to the endpoint, want 1", status, name, n)
			}
			s.Close()
		}
		if n := srv.final.Load(); n != 0 {
			t.Fatalf("%d: the redirect target was requested %d times", status, n)
		}
		if own.CheckRedirect == nil || own.CheckRedirect(nil, nil) != nil || plain.CheckRedirect != nil {
			t.Fatalf("%d: NewHTTP changed the caller's client's redirect policy", status)
		}
	}
}
