package auth

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestAllow(t *testing.T) {
	two := New([]string{"alpha", "beta", ""})
	off := New(nil)
	cases := []struct {
		name   string
		tokens Tokens
		header string
		want   bool
	}{
		{"off allows anything", off, "", true},
		{"first token", two, "Bearer alpha", true},
		{"second token", two, "Bearer beta", true},
		{"scheme is case-insensitive", two, "bearer alpha", true},
		{"surrounding space trimmed", two, "Bearer  alpha ", true},
		{"missing header", two, "", false},
		{"wrong token", two, "Bearer gamma", false},
		{"prefix of a token", two, "Bearer alph", false},
		{"empty token", two, "Bearer ", false},
		{"empty configured token is ignored", two, "Bearer", false},
		{"other scheme", two, "Basic YWxwaGE=", false},
		{"token without scheme", two, "alpha", false},
	}
	for _, c := range cases {
		if got := c.tokens.Allow(c.header); got != c.want {
			t.Errorf("%s: Allow(%q) = %v, want %v", c.name, c.header, got, c.want)
		}
	}
	if off.Enabled() || !two.Enabled() {
		t.Errorf("Enabled: off %v, two %v", off.Enabled(), two.Enabled())
	}
}

func TestHTTPWrapper(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	h := New([]string{"k"}).HTTP(next, nil)
	for _, c := range []struct {
		header string
		want   int
	}{{"", 401}, {"Bearer x", 401}, {"Bearer k", http.StatusTeapot}} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/v1/logs", nil)
		if c.header != "" {
			req.Header.Set("Authorization", c.header)
		}
		h.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("Authorization %q: %d, want %d", c.header, rec.Code, c.want)
		}
		if c.want == 401 && rec.Header().Get("WWW-Authenticate") != "Bearer" {
			t.Errorf("401 without WWW-Authenticate: Bearer")
		}
	}
	if New(nil).HTTP(next, nil) == nil || len(New(nil).GRPC()) != 0 {
		t.Error("auth off must pass requests through and add no gRPC options")
	}
}
