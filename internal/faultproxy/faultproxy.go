// Package faultproxy is an HTTP reverse proxy that injects failures in front
// of a real server (the S3-compatible server in chaos tests): errors returned
// without forwarding, errors returned after the request took effect (a lost
// response), dropped connections and added latency. It forwards the Host
// header unchanged, so signed S3 requests stay valid.
package faultproxy

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Config sets the fault rates, each a probability per request in [0, 1].
type Config struct {
	Target         string        // upstream base URL, e.g. http://127.0.0.1:7070
	ErrorRate      float64       // answer 500 or 503 without forwarding
	LostReplyRate  float64       // forward, then answer 500 instead of the real response
	DropRate       float64       // close the connection without an answer, without forwarding
	MaxLatency     time.Duration // add a uniform random delay up to this before forwarding
	Seed           uint64        // 0 = random
	OnlyMethods    []string      // if set, faults apply only to these methods (e.g. PUT)
	FaultsDisabled bool          // start with faults off (Enable turns them on)
}

// Stats counts what the proxy did.
type Stats struct {
	Forwarded, Errors, LostReplies, Dropped int64
}

// Proxy is a running fault-injecting proxy.
type Proxy struct {
	cfg      Config
	srv      *http.Server
	ln       net.Listener
	rp       *httputil.ReverseProxy
	mu       sync.Mutex
	rnd      *rand.Rand
	enabled  atomic.Bool
	forwards atomic.Int64
	errors   atomic.Int64
	lost     atomic.Int64
	dropped  atomic.Int64
}

// Start listens on 127.0.0.1 (random port) and serves until Close.
func Start(cfg Config) (*Proxy, error) {
	u, err := url.Parse(cfg.Target)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("faultproxy: target %q is not a URL", cfg.Target)
	}
	for name, r := range map[string]float64{"error_rate": cfg.ErrorRate, "lost_reply_rate": cfg.LostReplyRate, "drop_rate": cfg.DropRate} {
		if r < 0 || r > 1 {
			return nil, fmt.Errorf("faultproxy: %s %v is not a probability", name, r)
		}
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{cfg: cfg, ln: ln, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	p.enabled.Store(!cfg.FaultsDisabled)
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host // keep the signed Host header
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go p.srv.Serve(ln)
	return p, nil
}

// URL is the proxy's base URL; Addr its host:port.
func (p *Proxy) URL() string  { return "http://" + p.ln.Addr().String() }
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Enable turns faults on or off at run time (forwarding always continues).
func (p *Proxy) Enable(on bool) { p.enabled.Store(on) }

// Stats returns the counts so far.
func (p *Proxy) Stats() Stats {
	return Stats{Forwarded: p.forwards.Load(), Errors: p.errors.Load(), LostReplies: p.lost.Load(), Dropped: p.dropped.Load()}
}

// Close stops the proxy.
func (p *Proxy) Close() error { return p.srv.Close() }

func (p *Proxy) roll() (float64, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var d time.Duration
	if p.cfg.MaxLatency > 0 {
		d = time.Duration(p.rnd.Int64N(int64(p.cfg.MaxLatency)))
	}
	return p.rnd.Float64(), d
}

func (p *Proxy) applies(r *http.Request) bool {
	if !p.enabled.Load() {
		return false
	}
	if len(p.cfg.OnlyMethods) == 0 {
		return true
	}
	for _, m := range p.cfg.OnlyMethods {
		if m == r.Method {
			return true
		}
	}
	return false
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !p.applies(r) {
		p.forwards.Add(1)
		p.rp.ServeHTTP(w, r)
		return
	}
	x, delay := p.roll()
	if delay > 0 {
		time.Sleep(delay)
	}
	switch {
	case x < p.cfg.DropRate:
		p.dropped.Add(1)
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	case x < p.cfg.DropRate+p.cfg.ErrorRate:
		p.errors.Add(1)
		code := http.StatusInternalServerError
		if int(x*1e6)%2 == 0 {
			code = http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(code)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>injected fault</Message></Error>`,
			map[int]string{500: "InternalError", 503: "SlowDown"}[code])
	case x < p.cfg.DropRate+p.cfg.ErrorRate+p.cfg.LostReplyRate:
		p.lost.Add(1)
		p.forwards.Add(1)
		rec := &discardWriter{h: http.Header{}}
		p.rp.ServeHTTP(rec, r) // the request takes effect upstream
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>injected lost reply</Message></Error>`)
	default:
		p.forwards.Add(1)
		p.rp.ServeHTTP(w, r)
	}
}

// discardWriter swallows the upstream response of a lost reply.
type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(code int)        { d.code = code }
