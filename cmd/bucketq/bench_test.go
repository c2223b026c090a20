package main

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
	"time"

	"github.com/bucketq/bucketq/internal/loadgen"
)

func TestBenchCommand(t *testing.T) {
	var events atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var evs []json.RawMessage
		if r.URL.Path != "/api/v1/events" || json.NewDecoder(r.Body).Decode(&evs) != nil {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		events.Add(int64(len(evs)))
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	noEnv := func(string) string { return "" }

	var stdout, stderr bytes.Buffer
	code := runMain(context.Background(), []string{"bench", "--url", srv.URL, "--metrics-url", "-", "--count", "1200",
		"--batch-size", "100", "--clients", "3", "--json", "--quiet"}, &stdout, &stderr, noEnv)
	if code != exitOK {
		t.Fatalf("exit %d, stderr %s", code, stderr.String())
	}
	var rep struct {
		EventsAccepted int64            `json:"events_accepted"`
		Requests       int64            `json:"requests"`
		Errors         map[string]int64 `json:"errors"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, stdout.String())
	}
	if rep.EventsAccepted != 1200 || events.Load() != 1200 || rep.Requests != 12 || len(rep.Errors) != 0 {
		t.Fatalf("report %+v, server got %d events", rep, events.Load())
	}

	for _, args := range [][]string{
		{"bench", "--clients", "many"},
		{"bench", "--protocol", "carrier-pigeon", "--count", "1", "--metrics-url", "-"},
		{"bench", "extra"},
	} {
		stdout.Reset()
		stderr.Reset()
		if code := runMain(context.Background(), args, &stdout, &stderr, noEnv); code != exitUsage {
			t.Errorf("%v: exit %d, want %d (stderr %q)", args, code, exitUsage, stderr.String())
		}
		if !strings.Contains(stderr.String(), "bench") {
			t.Errorf("%v: error does not name the command: %q", args, stderr.String())
		}
	}
}

// A run in which no request is accepted is a failure (exit 1), with the
// report still printed; an unreadable /metrics is only a note.
func TestBenchExitsNonZeroWhenNothingWasAccepted(t *testing.T) {
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer failing.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	noEnv := func(string) string { return "" }

	for _, c := range []struct {
		name, url, errKind string
	}{
		{"every request 503", failing.URL, "http_503"},
		{"connection refused", closedURL, "connection"},
	} {
		var stdout, stderr bytes.Buffer
		// Default --metrics-url: unreadable in both cases.
		code := runMain(context.Background(), []string{"bench", "--url", c.url, "--count", "300", "--batch-size", "100",
			"--clients", "2", "--json", "--quiet"}, &stdout, &stderr, noEnv)
		if code != exitFailure {
			t.Errorf("%s: exit %d, want %d (stderr %q)", c.name, code, exitFailure, stderr.String())
		}
		var rep struct {
			EventsAccepted int64            `json:"events_accepted"`
			Errors         map[string]int64 `json:"errors"`
			Warnings       []string         `json:"warnings"`
		}
		if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
			t.Fatalf("%s: report not printed as JSON: %v\n%s", c.name, err, stdout.String())
		}
		if rep.EventsAccepted != 0 || rep.Errors[c.errKind] != 3 {
			t.Errorf("%s: report %+v, want 3 errors of kind %s", c.name, rep, c.errKind)
		}
		if !strings.Contains(stderr.String(), "no request was accepted") || !strings.Contains(stderr.String(), "server-side figures") {
			t.Errorf("%s: stderr %q lacks the failure and the /metrics note", c.name, stderr.String())
		}
	}
}

// Zero or negative numbers are mistakes, named in the error (exit 2), not
// silently the defaults.
func TestBenchRejectsNonPositiveNumbers(t *testing.T) {
	noEnv := func(string) string { return "" }
	for _, args := range [][]string{
		{"--clients", "-3"}, {"--clients", "0"}, {"--batch-size", "0"}, {"--event-size", "0"}, {"--event-size", "-1"},
		{"--rate", "0"}, {"--rate", "-5"}, {"--rate", "NaN"}, {"--duration", "0s"}, {"--duration", "-1s"}, {"--count", "0"},
		{"--count", "-10"}, {"--timeout", "0s"},
	} {
		var stdout, stderr bytes.Buffer
		full := append([]string{"bench", "--url", "http://127.0.0.1:1", "--metrics-url", "-", "--quiet"}, args...)
		if code := runMain(context.Background(), full, &stdout, &stderr, noEnv); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
		if !strings.Contains(stderr.String(), args[0]+" must be positive") {
			t.Errorf("%v: error %q does not name the flag", args, stderr.String())
		}
	}
}

// An --event-size below the smallest valid CloudEvent is a usage error that
// names the minimum, not a silently larger event.
func TestBenchRejectsEventSizeBelowMinimum(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"bench", "--url", "http://127.0.0.1:1", "--metrics-url", "-", "--quiet", "--event-size", "50"}
	if code := runMain(context.Background(), args, &stdout, &stderr, func(string) string { return "" }); code != exitUsage {
		t.Errorf("exit %d, want %d", code, exitUsage)
	}
	if want := fmt.Sprintf(`"event_size" must be at least %d bytes`, loadgen.MinEventSize); !strings.Contains(stderr.String(), want) {
		t.Errorf("error %q lacks %q", stderr.String(), want)
	}
}

// With --rate the CLI warns on stderr (and in the table) when the clients
// cannot keep up.
func TestBenchWarnsWhenTheRateIsNotReached(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(100 * time.Millisecond)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer slow.Close()
	var stdout, stderr bytes.Buffer
	// 1 client x 10 events per 0.1 s: at most 100 events/s of the 1000 asked.
	code := runMain(context.Background(), []string{"bench", "--url", slow.URL, "--metrics-url", "-", "--count", "40",
		"--batch-size", "10", "--clients", "1", "--rate", "1000", "--quiet"}, &stdout, &stderr, func(string) string { return "" })
	if code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	for _, out := range []string{stdout.String(), stderr.String()} {
		if !strings.Contains(out, "target rate not reached:") || !strings.Contains(out, "of 1000 events/s (in-flight limit 1") {
			t.Errorf("output lacks the warning:\n%s", out)
		}
	}
}

// --help teaches every flag, with an example at a fixed rate and one as
// fast as possible.
func TestBenchHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := runMain(context.Background(), []string{"bench", "--help"}, &stdout, &stderr, func(string) string { return "" }); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	help := stdout.String()
	for _, f := range benchFlags {
		if f.name != "" && !strings.Contains(help, "--"+f.name+" ") {
			t.Errorf("help lacks --%s", f.name)
		}
	}
	for _, s := range []string{"exit status", "--rate 50000", "bucketq bench --duration 30s", "target rate not reached"} {
		if !strings.Contains(help, s) {
			t.Errorf("help lacks %q", s)
		}
	}
}
