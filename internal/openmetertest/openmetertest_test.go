package openmetertest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

const good = `{"specversion":"1.0","id":"e1","source":"s","type":"t","subject":"c","time":"2024-01-01T00:00:00Z","data":{"n":1}}`

func post(t *testing.T, url, ctype, token, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func ev(mut string) string {
	// mut replaces the whole event when it starts with "{", else it is
	// spliced in as extra/overriding fields (later keys win in Go's decoder).
	if strings.HasPrefix(mut, "{") {
		return mut
	}
	return strings.TrimSuffix(good, "}") + "," + mut + "}"
}

func TestRules(t *testing.T) {
	const batch = "application/cloudevents-batch+json"
	const single = "application/cloudevents+json"
	cases := []struct {
		name   string
		ctype  string
		body   string
		status int
		events int
	}{
		{"single", single, good, 204, 1},
		{"single with charset", single + "; charset=utf-8", good, 204, 1},
		{"batch", batch, "[" + good + "," + strings.Replace(good, `"e1"`, `"e2"`, 1) + "]", 204, 2},
		{"json single", "application/json", good, 204, 1},
		{"json batch", "application/json", "[" + good + "]", 204, 1},
		{"text/plain", "text/plain", good, 415, 0},
		{"no content type", "", good, 415, 0},
		{"batch type with object", batch, good, 400, 0},
		{"single type with array", single, "[" + good + "]", 400, 0},
		{"empty id", batch, "[" + ev(`"id":""`) + "]", 400, 0},
		{"missing subject", batch, `[{"specversion":"1.0","id":"x","source":"s","type":"t"}]`, 400, 0},
		{"empty source", single, ev(`"source":""`), 400, 0},
		{"empty type", single, ev(`"type":""`), 400, 0},
		{"specversion 0.3", single, ev(`"specversion":"0.3"`), 400, 0},
		{"bad time", single, ev(`"time":"yesterday"`), 400, 0},
		{"null time", single, ev(`"time":null`), 204, 1},
		{"data string", single, ev(`"data":"x"`), 400, 0},
		{"data array", single, ev(`"data":[1]`), 400, 0},
		{"data null", single, ev(`"data":null`), 204, 1},
		{"bad datacontenttype", single, ev(`"datacontenttype":"text/plain"`), 400, 0},
		{"one bad rejects whole batch", batch, "[" + good + "," + ev(`"id":""`) + "]", 400, 0},
		{"not json", batch, "[{", 400, 0},
		{"poison rejects whole batch", batch, "[" + good + "," + ev(`"id":"p","data":{"poison":true}`) + "]", 400, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Options{Poison: PoisonFlag})
			defer s.Close()
			resp, body := post(t, s.Endpoint, tc.ctype, "", tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tc.status, body)
			}
			if tc.status >= 400 {
				if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
					t.Errorf("error Content-Type %q", ct)
				}
				var p Problem
				if err := json.Unmarshal([]byte(body), &p); err != nil || p.Status != tc.status || p.Detail == "" {
					t.Errorf("problem body %q (%v)", body, err)
				}
			}
			if got := len(s.Events()); got != tc.events {
				t.Fatalf("%d events recorded, want %d", got, tc.events)
			}
			if s.Requests(tc.status) != 1 {
				t.Errorf("Requests(%d) = %d", tc.status, s.Requests(tc.status))
			}
		})
	}
}

func TestModesAuthMethodsAndFaults(t *testing.T) {
	s := New(Options{Mode: Konnect, Token: "tok"})
	defer s.Close()
	if !strings.HasSuffix(s.Endpoint, "/v3/openmeter/events") {
		t.Fatalf("endpoint %s", s.Endpoint)
	}
	const ct = "application/cloudevents+json"
	if r, _ := post(t, s.Endpoint, ct, "", good); r.StatusCode != 401 {
		t.Fatalf("no token: %d", r.StatusCode)
	}
	if r, _ := post(t, s.Endpoint, ct, "wrong", good); r.StatusCode != 401 {
		t.Fatalf("wrong token: %d", r.StatusCode)
	}
	if r, _ := post(t, s.URL+"/api/v1/events", ct, "tok", good); r.StatusCode != 404 {
		t.Fatalf("openmeter path on konnect: %d", r.StatusCode)
	}
	resp, err := http.Get(s.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
	s.FailNext(1, 429, "7")
	s.FailNext(2, 503, "")
	want := []int{429, 503, 503, 202, 202}
	for i, w := range want {
		r, _ := post(t, s.Endpoint, ct, "tok", good)
		if r.StatusCode != w {
			t.Fatalf("request %d: %d, want %d", i, r.StatusCode, w)
		}
		if w == 429 && r.Header.Get("Retry-After") != "7" {
			t.Fatalf("Retry-After %q", r.Header.Get("Retry-After"))
		}
	}
	if s.Distinct() != 1 || s.Duplicates() != 1 || len(s.Events()) != 2 {
		t.Fatalf("distinct %d dups %d events %d", s.Distinct(), s.Duplicates(), len(s.Events()))
	}
	if got := s.RequestsByStatus(); got[202] != 2 || got[503] != 2 || got[429] != 1 || got[401] != 2 {
		t.Fatalf("by status %v", got)
	}
	s.FailNext(-1, 503, "")
	for range 3 {
		if r, _ := post(t, s.Endpoint, ct, "tok", good); r.StatusCode != 503 {
			t.Fatalf("persistent fault: %d", r.StatusCode)
		}
	}
	s.ClearFaults()
	if r, _ := post(t, s.Endpoint, ct, "tok", good); r.StatusCode != 202 {
		t.Fatalf("after clear: %d", r.StatusCode)
	}
	if !s.WaitEvents(3, time.Second) || s.WaitEvents(4, 50*time.Millisecond) {
		t.Fatal("WaitEvents")
	}
}

func TestLatency(t *testing.T) {
	s := New(Options{Latency: 100 * time.Millisecond})
	defer s.Close()
	start := time.Now()
	if r, _ := post(t, s.Endpoint, "application/cloudevents+json", "", good); r.StatusCode != 204 {
		t.Fatal(r.StatusCode)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("answered after %v", d)
	}
}
