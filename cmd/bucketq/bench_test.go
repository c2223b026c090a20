package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
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
