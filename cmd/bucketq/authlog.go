package main

import (
	"log/slog"
	"strings"

	"github.com/bucketq/bucketq/cmd/bucketq/internal/config"
)

// logAuthentication says at start-up whether the ingest front doors that
// are open check bearer tokens, naming them as the ingest_requests metric
// does (http-events, otlp-grpc, otlp-http): an info line when tokens are
// configured, a warning when none are (anyone who reaches a front door
// can write events). A consumer also warns when its http(s) sink gets no
// token. Nothing else checks that authentication is on, so this line is
// what an operator (or an alert on warnings) sees.
func logAuthentication(log *slog.Logger, roles config.Role, cfg *config.Config) {
	if roles&config.Produce != 0 {
		var doors []string
		for _, d := range []struct{ name, addr string }{{"http-events", cfg.Listen}, {"otlp-grpc", cfg.OTLPGRPC}, {"otlp-http", cfg.OTLPHTTP}} {
			if d.addr != "" {
				doors = append(doors, d.name)
			}
		}
		switch {
		case len(doors) == 0:
		case len(cfg.Tokens) > 0:
			log.Info("authentication enabled", "tokens", len(cfg.Tokens), "front_doors", strings.Join(doors, ","))
		default:
			log.Warn("authentication disabled: no tokens configured (--token, key tokens); every request is accepted", "front_doors", strings.Join(doors, ","))
		}
	}
	if roles&config.Consume != 0 && cfg.SinkToken == "" && (strings.HasPrefix(cfg.Sink, "http://") || strings.HasPrefix(cfg.Sink, "https://")) {
		log.Warn("sink authentication disabled: no sink_token configured (--sink-token, key sink_token, env "+config.SinkTokenEnv+"); requests carry no Authorization header", "sink", cfg.Sink)
	}
}
