package faultproxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func upstream(t *testing.T) (*httptest.Server, *atomic.Int64, *atomic.Value) {
	var hits atomic.Int64
	var host atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		host.Store(r.Host)
		io.WriteString(w, "upstream:"+r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits, &host
}

func get(t *testing.T, url string) (int, string, error) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func TestForwardsAndKeepsHost(t *testing.T) {
	up, hits, host := upstream(t)
	p, err := Start(Config{Target: up.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	code, body, err := get(t, p.URL()+"/bucket/key")
	if err != nil || code != 200 || body != "upstream:/bucket/key" {
		t.Fatalf("got %d %q %v", code, body, err)
	}
	if hits.Load() != 1 || host.Load() != p.Addr() {
		t.Fatalf("hits %d, upstream saw Host %v; want 1 and %s", hits.Load(), host.Load(), p.Addr())
	}
}

func TestFaultKinds(t *testing.T) {
	cases := []struct {
		name        string
		cfg         Config
		wantCodes   []int
		wantDropped bool
		upstreamHit bool
	}{
		{"error", Config{ErrorRate: 1}, []int{500, 503}, false, false},
		{"lost reply", Config{LostReplyRate: 1}, []int{500}, false, true},
		{"drop", Config{DropRate: 1}, nil, true, false},
		{"disabled", Config{ErrorRate: 1, FaultsDisabled: true}, []int{200}, false, true},
		{"other method", Config{ErrorRate: 1, OnlyMethods: []string{"PUT"}}, []int{200}, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			up, hits, _ := upstream(t)
			c.cfg.Target = up.URL
			c.cfg.Seed = 7
			p, err := Start(c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			for i := 0; i < 20; i++ {
				code, _, err := get(t, p.URL()+"/k")
				if c.wantDropped {
					if err == nil {
						t.Fatalf("request %d answered %d, want a dropped connection", i, code)
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				ok := false
				for _, w := range c.wantCodes {
					ok = ok || w == code
				}
				if !ok {
					t.Fatalf("request %d: code %d, want one of %v", i, code, c.wantCodes)
				}
			}
			if got := hits.Load() > 0; got != c.upstreamHit {
				t.Fatalf("upstream hits %d, want hit=%v", hits.Load(), c.upstreamHit)
			}
		})
	}
}

func TestRatesMix(t *testing.T) {
	up, _, _ := upstream(t)
	p, err := Start(Config{Target: up.URL, ErrorRate: 0.2, LostReplyRate: 0.1, DropRate: 0.1, Seed: 42})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for i := 0; i < 400; i++ {
		if resp, err := client.Get(p.URL() + "/k"); err == nil {
			resp.Body.Close()
		}
	}
	s := p.Stats()
	// Each rate within a wide band around its expectation over 400 requests.
	check := func(name string, got int64, rate float64) {
		exp := rate * 400
		if float64(got) < exp*0.5 || float64(got) > exp*1.5 {
			t.Errorf("%s: %d faults, expected about %.0f", name, got, exp)
		}
	}
	check("errors", s.Errors, 0.2)
	check("lost", s.LostReplies, 0.1)
	check("dropped", s.Dropped, 0.1)
	if s.Forwarded < 200 {
		t.Errorf("forwarded %d of 400", s.Forwarded)
	}
}

func TestBadConfig(t *testing.T) {
	for _, cfg := range []Config{{Target: "::"}, {Target: "http://x", ErrorRate: 2}} {
		if _, err := Start(cfg); err == nil || !strings.Contains(err.Error(), "faultproxy") {
			t.Errorf("config %+v: err %v", cfg, err)
		}
	}
}
