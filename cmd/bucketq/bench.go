package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/bucketq/bucketq/cmd/bucketq/internal/config"
	"github.com/bucketq/bucketq/internal/loadgen"
)

// benchFlags are the flags of `bucketq bench`: they describe the load, not
// a bucketq deployment, so they are not config-file keys.
var benchFlags = []struct{ name, arg, help string }{
	{"url", "URL", "producer base URL: the --listen address for events, the --otlp-http address for otlp-http (default http://127.0.0.1:8888)"},
	{"metrics-url", "URL", "producer /metrics, read before and after the run for stored bytes, PUTs and CAS writes; - skips (default URL/metrics)"},
	{"protocol", "events|otlp-http", "CloudEvents batches on /api/v1/events, or OTLP/HTTP protobuf logs on /v1/logs (default events)"},
	{"clients", "N", "concurrent clients, i.e. the most requests in flight at once, also with --rate (default 8)"},
	{"batch-size", "N", "events per request (default 500)"},
	{"event-size", "BYTES", fmt.Sprintf("size of one event: each CloudEvent's JSON is exactly this long, at least %d (the smallest valid event; below about 220 the events carry only the required attributes); approximate for otlp-http (default 250)", loadgen.MinEventSize)},
	{"rate", "EVENTS/S", "total rate: start one request every batch-size/rate seconds whatever the ack latency; if all --clients are busy the request starts late and the report says \"target rate not reached\" (also on stderr). Without --rate: as fast as the producer acks"},
	{"duration", "DURATION", "how long to start requests; requests in flight then finish (within --timeout) and are counted (default 10s unless --count is set)"},
	{"count", "N", "send this many events, then stop"},
	{"token", "TOKEN", "bearer token for the ingest endpoint"},
	{"timeout", "DURATION", "per-request timeout (default 30s)"},
	{"json", "", "print the report as JSON instead of a table"},
	{"quiet", "", "no live progress line"},
	{"", "exit status", "0 when events were accepted (errors, if any, are in the report); 1 when no request was accepted (the report is still printed); 2 for bad flags. If --metrics-url cannot be read, the stored-bytes, PUT and CAS figures are skipped with a note"},
}

// benchCommand runs `bucketq bench`: load a running producer and report.
func benchCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var cfg loadgen.Config
	fs.StringVar(&cfg.URL, "url", "http://127.0.0.1:8888", "")
	fs.StringVar(&cfg.MetricsURL, "metrics-url", "", "")
	fs.StringVar(&cfg.Protocol, "protocol", loadgen.ProtocolEvents, "")
	fs.IntVar(&cfg.Clients, "clients", 8, "")
	fs.IntVar(&cfg.BatchSize, "batch-size", 500, "")
	fs.IntVar(&cfg.EventSize, "event-size", 250, "")
	fs.Float64Var(&cfg.Rate, "rate", 0, "")
	fs.DurationVar(&cfg.Duration, "duration", 0, "")
	fs.Int64Var(&cfg.Count, "count", 0, "")
	fs.StringVar(&cfg.Token, "token", "", "")
	fs.DurationVar(&cfg.Timeout, "timeout", 30*time.Second, "")
	asJSON := fs.Bool("json", false, "")
	quiet := fs.Bool("quiet", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &config.Error{Msg: "bench: " + err.Error()}
	}
	if fs.NArg() > 0 {
		return &config.Error{Msg: fmt.Sprintf("bench: unexpected argument %q", fs.Arg(0))}
	}
	// Every number must be positive when given: 0 or less is a mistake,
	// not a request for the default.
	var bad error
	fs.Visit(func(f *flag.Flag) {
		if bad != nil {
			return
		}
		var v float64
		switch f.Name {
		case "clients":
			v = float64(cfg.Clients)
		case "batch-size":
			v = float64(cfg.BatchSize)
		case "event-size":
			v = float64(cfg.EventSize)
		case "rate":
			v = cfg.Rate
		case "duration":
			v = float64(cfg.Duration)
		case "count":
			v = float64(cfg.Count)
		case "timeout":
			v = float64(cfg.Timeout)
		default:
			return
		}
		if !(v > 0) || math.IsInf(v, 0) {
			bad = &config.Error{Msg: fmt.Sprintf("bench: --%s must be positive, not %s", f.Name, f.Value)}
		}
	})
	if bad != nil {
		return bad
	}
	if cfg.Duration == 0 && cfg.Count == 0 {
		cfg.Duration = 10 * time.Second
	}
	if !*quiet {
		cfg.Progress = stderr
	}
	cfg.Notes = stderr
	rep, err := loadgen.Run(ctx, cfg)
	if err != nil {
		return &config.Error{Msg: err.Error()}
	}
	if *asJSON {
		err = rep.WriteJSON(stdout)
	} else {
		rep.WriteTable(stdout)
	}
	if err == nil && rep.EventsAccepted == 0 {
		err = fmt.Errorf("bench: no request was accepted (%d requests failed; see errors in the report)", rep.Requests)
	}
	return err
}

func benchHelpLines() []string {
	var out []string
	for _, f := range benchFlags {
		name := "--" + f.name
		if f.name == "" { // not a flag: a note on the command
			name = f.arg
		} else if f.arg != "" {
			name += " " + f.arg
		}
		out = append(out, fmt.Sprintf("  %-34s %s", name, f.help))
	}
	return out
}
