package sink

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bucketq/bucketq/internal/openmetertest"
)

func evs(ids ...string) []json.RawMessage {
	var out []json.RawMessage
	for _, id := range ids {
		out = append(out, json.RawMessage(`{"specversion":"1.0","id":"`+id+`","source":"s","type":"t","subject":"c","data":{"poison":`+map[bool]string{true: "true", false: "false"}[strings.HasPrefix(id, "p")]+`}}`))
	}
	return out
}

func TestHTTPDeliversToOpenMeterAndKonnect(t *testing.T) {
	for _, mode := range []openmetertest.Mode{openmetertest.OpenMeter, openmetertest.Konnect} {
		srv := openmetertest.New(openmetertest.Options{Mode: mode, Token: "secret"})
		s, err := FromURL(srv.Endpoint, "secret", nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(context.Background(), evs("a", "b", "c")); err != nil {
			t.Fatalf("mode %v: %v", mode, err)
		}
		got := srv.Events()
		if len(got) != 3 || got[0].ID != "a" || got[2].ID != "c" {
			t.Fatalf("mode %v: received %+v", mode, got)
		}
		if srv.Requests(mode.Status()) != 1 {
			t.Fatalf("mode %v: statuses %v", mode, srv.RequestsByStatus())
		}
		s.Close()
		srv.Close()
	}
}

func TestHTTPErrors(t *testing.T) {
	srv := openmetertest.New(openmetertest.Options{Token: "secret", Poison: openmetertest.PoisonFlag})
	defer srv.Close()
	ctx := context.Background()

	noTok := NewHTTP(srv.Endpoint, "", HTTPOptions{})
	var he *HTTPError
	if err := noTok.Send(ctx, evs("a")); !errors.As(err, &he) || he.Status != 401 {
		t.Fatalf("no token: %v", err)
	}

	s := NewHTTP(srv.Endpoint, "secret", HTTPOptions{})
	if err := s.Send(ctx, evs("a", "p1")); !errors.As(err, &he) || he.Status != 400 || !strings.Contains(he.Body, "poison") {
		t.Fatalf("poison: %v", err)
	}
	srv.FailNext(1, 429, "3")
	if err := s.Send(ctx, evs("a")); !errors.As(err, &he) || he.Status != 429 || he.RetryAfter != 3*time.Second {
		t.Fatalf("429: %v", err)
	}
	srv.FailNext(1, 503, openmetertest.RetryAfterDate(time.Now().Add(10*time.Second)))
	if err := s.Send(ctx, evs("a")); !errors.As(err, &he) || he.Status != 503 || he.RetryAfter < 8*time.Second || he.RetryAfter > 10*time.Second {
		t.Fatalf("503 with date: %v", err)
	}
	if len(srv.Events()) != 0 {
		t.Fatalf("events accepted: %v", srv.Events())
	}

	srv.SetLatency(300 * time.Millisecond)
	slow := NewHTTP(srv.Endpoint, "secret", HTTPOptions{Timeout: 50 * time.Millisecond})
	if err := slow.Send(ctx, evs("a")); err == nil || errors.As(err, &he) {
		t.Fatalf("timeout: %v", err)
	}
	srv.SetLatency(0)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dead := NewHTTP("http://"+addr+"/api/v1/events", "", HTTPOptions{})
	if err := dead.Send(ctx, evs("a")); err == nil || errors.As(err, &he) {
		t.Fatalf("connection refused: %v", err)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := map[string]time.Duration{
		"":     0,
		"0":    0,
		"5":    5 * time.Second,
		"-3":   0,
		"soon": 0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Minute).Format(http.TimeFormat):     0,
	}
	for in, want := range cases {
		if got := ParseRetryAfter(in, now); got != want {
			t.Errorf("ParseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestFileSinkAppendsNDJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.ndjson")
	for round := 0; round < 2; round++ {
		s, err := FromURL("file:"+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		pretty := json.RawMessage("{\n  \"id\": \"x\"\n}")
		if err := s.Send(context.Background(), []json.RawMessage{pretty, json.RawMessage(`{"id":"y"}`)}); err != nil {
			t.Fatal(err)
		}
		if err := s.Send(context.Background(), []json.RawMessage{json.RawMessage(`{bad`)}); err == nil {
			t.Fatal("invalid JSON accepted")
		}
		s.Close()
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "{\"id\":\"x\"}\n{\"id\":\"y\"}\n{\"id\":\"x\"}\n{\"id\":\"y\"}\n"
	if string(b) != want {
		t.Fatalf("file = %q, want %q", b, want)
	}
}

// TestFileSinkToDevice: file:/dev/null (a benchmark's sink) and a pipe
// take events; fsync, which fails on them with EINVAL, is not called.
func TestFileSinkToDevice(t *testing.T) {
	if _, err := os.Stat("/dev/null"); err != nil {
		t.Skip("no /dev/null")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, target := range []string{"file:/dev/null", "file:/dev/fd/" + strconv.Itoa(int(w.Fd()))} {
		s, err := FromURL(target, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(context.Background(), []json.RawMessage{json.RawMessage(`{"id":"x"}`)}); err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("%s: close: %v", target, err)
		}
	}
	w.Close()
	got, err := io.ReadAll(r)
	if err != nil || string(got) != "{\"id\":\"x\"}\n" {
		t.Fatalf("pipe got %q, %v; want the event", got, err)
	}
}

func TestFromURLRejects(t *testing.T) {
	for _, target := range []string{"", "ftp://x", "file:", "http://", "kafka://x"} {
		if _, err := FromURL(target, "", nil); err == nil {
			t.Errorf("FromURL(%q) accepted", target)
		}
	}
	if s, err := FromURL("stdout", "", nil); err != nil || s == nil {
		t.Fatalf("stdout: %v", err)
	}
}
