package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
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
	{"clients", "N", "concurrent clients (default 8)"},
	{"batch-size", "N", "events per request (default 500)"},
	{"event-size", "BYTES", "approximate size of one event (default 250)"},
	{"rate", "EVENTS/S", "total rate; 0 sends as fast as the producer acks (default 0)"},
	{"duration", "DURATION", "how long to send (default 10s unless --count is set)"},
	{"count", "N", "send this many events, then stop"},
	{"token", "TOKEN", "bearer token for the ingest endpoint"},
	{"timeout", "DURATION", "per-request timeout (default 30s)"},
	{"json", "", "print the report as JSON instead of a table"},
	{"quiet", "", "no live progress line"},
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
	if cfg.Duration == 0 && cfg.Count == 0 {
		cfg.Duration = 10 * time.Second
	}
	if !*quiet {
		cfg.Progress = stderr
	}
	rep, err := loadgen.Run(ctx, cfg)
	if err != nil {
		return &config.Error{Msg: err.Error()}
	}
	if *asJSON {
		return rep.WriteJSON(stdout)
	}
	rep.WriteTable(stdout)
	return nil
}

func benchHelpLines() []string {
	var out []string
	for _, f := range benchFlags {
		name := "--" + f.name
		if f.arg != "" {
			name += " " + f.arg
		}
		out = append(out, fmt.Sprintf("  %-34s %s", name, f.help))
	}
	return out
}
