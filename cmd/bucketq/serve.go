package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/thanos-io/objstore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/bucketq/bucketq/bucket"
	"github.com/bucketq/bucketq/cmd/bucketq/internal/config"
	"github.com/bucketq/bucketq/consumer"
	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/consumer/convert/otlpconv"
	"github.com/bucketq/bucketq/consumer/sink"
	"github.com/bucketq/bucketq/ingest/auth"
	"github.com/bucketq/bucketq/ingest/httpevents"
	"github.com/bucketq/bucketq/ingest/ingestmetrics"
	"github.com/bucketq/bucketq/ingest/otlp"
	"github.com/bucketq/bucketq/ingest/reqbody"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/partition"
	"github.com/bucketq/bucketq/producer"
)

// readyTimeout bounds one /readyz probe.
const readyTimeout = 5 * time.Second

// idleTimeout closes keep-alive connections without a request this long.
const idleTimeout = 2 * time.Minute

// openBucket opens the configured bucket and its CAS store.
func openBucket(ctx context.Context, cfg *config.Config, log *slog.Logger) (objstore.Bucket, cas.Store, error) {
	if err := checkBucketDir(cfg); err != nil {
		return nil, nil, err
	}
	if cfg.ObjectStore != nil {
		bkt, store, err := bucket.Open(ctx, cfg.ObjectStore, log)
		if err != nil {
			return nil, nil, &config.Error{Msg: fmt.Sprintf("config key %q: %v", "object_store", err)}
		}
		return bkt, store, nil
	}
	bkt, store, err := bucket.OpenDir(cfg.BucketDir)
	if err != nil {
		return nil, nil, fmt.Errorf("bucket directory %s: %w", cfg.BucketDir, err)
	}
	return bkt, store, nil
}

// queueOptions are the options of a queue the command opens with
// manifest.NewQueue: the hooks of opts (the producer's or the consumer's
// QueueOptions, which count its writes and conflicts) and the configured
// manifest version.
func queueOptions(cfg *config.Config, opts manifest.Options) manifest.Options {
	opts.Version = cfg.FormatVersion
	return opts
}

// newConverter is the CloudEvents pass-through plus the OTLP converters
// configured by the conversion key.
func newConverter(cfg *config.Config) (convert.Converter, error) {
	reg, _, err := newConverters(cfg)
	if err != nil {
		return nil, err
	}
	return reg, nil
}

// newConverters is newConverter also returning the OTLP converters, whose
// counters a serving command exports (exportConverterMetrics).
func newConverters(cfg *config.Config) (*convert.Registry, *otlpconv.Converters, error) {
	var oc otlpconv.Config
	if err := config.DecodeStrict(cfg.Conversion, &oc); err != nil {
		return nil, nil, &config.Error{Msg: fmt.Sprintf("config key %q: %v", "conversion", err)}
	}
	c, err := otlpconv.Compile(oc)
	if err != nil {
		return nil, nil, &config.Error{Msg: fmt.Sprintf("config key %q: %v", "conversion", err)}
	}
	reg := convert.NewRegistry()
	c.Register(reg)
	return reg, c, nil
}

// exportConverterMetrics makes /metrics report the OTLP converters' count
// of metric data points skipped for having no value
// (buffer_points_skipped_no_value).
func exportConverterMetrics(m *consumer.Metrics, oc *otlpconv.Converters) {
	m.SetPointsSkippedNoValueSource(oc.NoValuePoints)
}

// listener is one server bound to its address; start serves until stop.
type listener struct {
	name  string
	ln    net.Listener
	serve func(net.Listener) error
	stop  func(ctx context.Context) error
}

// serveCommand runs produce, consume or run until ctx is done (signal) or a
// part fails, then shuts down in order.
func serveCommand(ctx context.Context, name string, roles config.Role, args []string, stderr io.Writer, getenv config.Env) error {
	fl := config.NewFlags(name, roles)
	if pos, err := fl.Parse(args); err != nil {
		return err
	} else if len(pos) > 0 {
		return &config.Error{Msg: fmt.Sprintf("%s: unexpected argument %q", name, pos[0])}
	}
	cfg, err := fl.Load(getenv)
	if err != nil {
		return err
	}
	log := cfg.Logger(stderr)
	applyMemoryLimit(cfg, getenv, log)

	// Everything that can be checked without I/O first, so a bad config
	// never half-starts a process.
	var (
		conv      convert.Converter
		otlpConvs *otlpconv.Converters
		snk       sink.Sink
	)
	if roles&config.Consume != 0 {
		if conv, otlpConvs, err = newConverters(cfg); err != nil {
			return err
		}
		// Keep-alive connections for every request in flight.
		pool := sink.HTTPOptions{IdleConnsPerHost: max(cfg.SinkConcurrency, consumer.DefaultMaxSinkConcurrency)}
		if snk, err = sink.FromURLWith(cfg.Sink, cfg.SinkToken, pool, log); err != nil {
			return &config.Error{Msg: fmt.Sprintf("config key %q: %v", "sink", err)}
		}
		defer func() {
			if err := snk.Close(); err != nil {
				log.Error("closing sink", "err", err)
			}
		}()
	}

	bkt, store, err := openBucket(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer bkt.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Each part registers its own metrics; the bucket's operations are
	// counted as objstore_bucket_operations_total{bucket="queue"} etc.
	bkt = objstore.WrapWithMetrics(bkt, reg, "queue")
	im := ingestmetrics.New(reg)

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })

	var (
		prod        partition.Producer
		runConsumer func(context.Context) error
		consReady   func() error
		readyQ      *manifest.Queue
		servers     []*listener
		grpcSrv     *grpc.Server
		serveErr    = make(chan error, 4)

		bodyBudget *reqbody.Budget
		bodyLimits reqbody.Limits
	)
	if roles&config.Produce != 0 {
		readyQ = manifest.NewQueue(store, cfg.ManifestPath, queueOptions(cfg, manifest.Options{}))
		prod, err = newProducer(bkt, store, cfg, reg, log.With("part", "producer"))
		if err != nil {
			return fmt.Errorf("starting producer: %w", err)
		}
		// Both HTTP front doors read bodies under one rate guard and one
		// budget for the bytes of bodies being received.
		bodyBudget = reqbody.NewBudget(cfg.MaxBufferedBytes)
		bodyLimits = reqbody.Limits{Timeout: cfg.BodyReadTimeout, MinRate: cfg.BodyMinRate}
		mux.Handle("/api/v1/events", httpevents.NewHandler(prod, httpevents.Config{MaxBodyBytes: cfg.MaxBodyBytes, Tokens: cfg.Tokens, BodyLimits: bodyLimits, Budget: bodyBudget}, im, log.With("part", "http-events")))
	}
	if roles&config.Consume != 0 {
		if readyQ == nil {
			readyQ = manifest.NewQueue(store, cfg.ManifestPath, queueOptions(cfg, manifest.Options{}))
		}
		runConsumer, consReady, err = newConsumerRun(bkt, store, cfg, conv, otlpConvs, snk, reg, log)
		if err != nil {
			return fmt.Errorf("starting consumer: %w", err)
		}
	}
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := ready(r.Context(), bkt, readyQ, cfg, prod, consReady); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})

	// Bind every address before serving anything: a taken port is an
	// immediate, clear failure.
	closeAll := func() {
		for _, s := range servers {
			s.ln.Close()
		}
	}
	bind := func(name, addr string) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return ln, nil
	}
	if cfg.Listen != "" {
		ln, err := bind("listen", cfg.Listen)
		if err != nil {
			return err
		}
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: idleTimeout}
		servers = append(servers, &listener{name: "http", ln: ln, serve: hs.Serve, stop: hs.Shutdown})
	}
	if prod != nil && cfg.OTLPHTTP != "" {
		ln, err := bind("otlp_http", cfg.OTLPHTTP)
		if err != nil {
			return err
		}
		// The ingest tokens protect every front door: each HTTP handler wraps
		// itself in auth.Tokens.HTTP, gRPC takes auth.Tokens.GRPC below.
		h := otlp.NewHTTPHandler(prod, otlp.HTTPConfig{MaxBodyBytes: cfg.MaxBodyBytes, Tokens: cfg.Tokens, BodyLimits: bodyLimits, Budget: bodyBudget}, im, log.With("part", "otlp-http"))
		hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: idleTimeout}
		servers = append(servers, &listener{name: "otlp-http", ln: ln, serve: hs.Serve, stop: hs.Shutdown})
	}
	if prod != nil && cfg.OTLPGRPC != "" {
		ln, err := bind("otlp_grpc", cfg.OTLPGRPC)
		if err != nil {
			return err
		}
		opts := append([]grpc.ServerOption{grpc.MaxRecvMsgSize(int(cfg.MaxBodyBytes)),
			// Connections that never finish their handshake, sit idle, or
			// hold streams for ever are closed (clients reconnect).
			grpc.ConnectionTimeout(10 * time.Second),
			grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: idleTimeout, MaxConnectionAge: 30 * time.Minute,
				MaxConnectionAgeGrace: 3 * time.Minute, Time: time.Minute, Timeout: 20 * time.Second}),
		}, auth.New(cfg.Tokens).GRPC(otlp.UnauthenticatedGRPC(im))...)
		grpcSrv = grpc.NewServer(opts...)
		otlp.RegisterGRPC(grpcSrv, prod, im, log.With("part", "otlp-grpc"))
		servers = append(servers, &listener{name: "otlp-grpc", ln: ln, serve: grpcSrv.Serve, stop: func(ctx context.Context) error {
			done := make(chan struct{})
			go func() { grpcSrv.GracefulStop(); close(done) }()
			select {
			case <-done:
				return nil
			case <-ctx.Done():
				grpcSrv.Stop()
				return ctx.Err()
			}
		}})
	}
	for _, s := range servers {
		log.Info("listening", "server", s.name, "addr", s.ln.Addr().String())
		go func() {
			if err := s.serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, grpc.ErrServerStopped) {
				serveErr <- fmt.Errorf("%s server: %w", s.name, err)
			}
		}()
	}

	consCtx, stopConsumer := context.WithCancel(context.Background())
	defer stopConsumer()
	consDone := make(chan error, 1)
	if runConsumer != nil {
		go func() { consDone <- runConsumer(consCtx) }()
	}
	where := cfg.BucketDir
	if cfg.ObjectStore != nil {
		where = "object_store"
	}
	log.Info("bucketq started", "command", name, "bucket", where, "manifest", cfg.ManifestPath, "sink", sinkForLog(roles, cfg.Sink))
	logAuthentication(log, roles, cfg)

	// Wait for a signal or a failure.
	var failure error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "reason", "signal", "timeout", cfg.ShutdownTimeout)
	case failure = <-serveErr:
		log.Error("shutting down", "reason", "server failed", "err", failure)
	case failure = <-consDone:
		consDone <- failure // the shutdown below waits on it again
		if failure == nil {
			failure = errors.New("consumer stopped unexpectedly")
		}
		failure = fmt.Errorf("consumer: %w", failure)
		log.Error("shutting down", "reason", "consumer stopped", "err", failure)
	}
	return shutdown(log, cfg.ShutdownTimeout, servers, prod, runConsumer != nil, stopConsumer, consDone, failure)
}

// shutdown stops accepting, seals the producer's open batch at once so
// in-flight requests are answered as soon as it is committed, waits for them,
// closes the producer (committing what is left), and stops the consumer, all
// within timeout. It returns failure, or the first shutdown error.
func shutdown(log *slog.Logger, timeout time.Duration, servers []*listener, prod partition.Producer, hasConsumer bool, stopConsumer func(), consDone chan error, failure error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	// The consumer stops at once: what it has not dequeued is redelivered
	// by the next one. It runs in parallel with the producer's drain.
	stopConsumer()
	// In-flight requests wait on the open batch: seal it now, and seal at
	// once whatever they still append, instead of waiting for
	// flush_interval while the servers wait for those very requests.
	if prod != nil {
		prod.Drain()
	}
	var wg sync.WaitGroup
	errs := make([]error, len(servers))
	for i, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.stop(ctx); err != nil {
				errs[i] = fmt.Errorf("stopping %s server: %w", s.name, err)
			}
		}()
	}
	wg.Wait()
	log.Info("stopped accepting requests", "elapsed", time.Since(start).Round(time.Millisecond))
	if prod != nil {
		if err := prod.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("closing producer: %w", err))
			log.Error("producer did not flush everything: requests not answered 2xx will be retried by clients", "err", err)
		} else {
			log.Info("producer flushed and committed", "elapsed", time.Since(start).Round(time.Millisecond))
		}
	}
	if hasConsumer {
		select {
		case err := <-consDone:
			if err != nil && failure == nil && !errors.Is(err, context.Canceled) {
				errs = append(errs, fmt.Errorf("consumer: %w", err))
			}
			log.Info("consumer stopped", "elapsed", time.Since(start).Round(time.Millisecond))
		case <-ctx.Done():
			errs = append(errs, errors.New("consumer did not stop within the shutdown timeout"))
		}
	}
	if failure != nil {
		return failure
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	log.Info("shutdown complete", "elapsed", time.Since(start).Round(time.Millisecond))
	return nil
}

// ready is /readyz: the producer commits batches (producer.Ready with
// readiness_failure_threshold; with partitions > 1 partition.Spreader.Ready:
// not every partition is failing), the consumer holds the queue's lease
// (consumer.Ready; with partitions > 1 at least one), and the bucket
// answers and, with one partition, the manifest decodes. A nil prod or
// cons is not checked. The README's "Readiness and liveness" lists each
// answer.
func ready(ctx context.Context, bkt objstore.Bucket, q *manifest.Queue, cfg *config.Config, prod partition.Producer, consReady func() error) error {
	if r, ok := prod.(interface{ Ready(time.Duration) error }); ok {
		if err := r.Ready(cfg.ReadinessFailureThreshold); err != nil {
			return err
		}
	}
	if consReady != nil {
		if err := consReady(); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if _, err := bkt.Exists(ctx, cfg.ManifestPath); err != nil {
		return fmt.Errorf("bucket unreachable: %v", err)
	}
	// With partitions > 1 a damaged manifest is one partition's fault:
	// its producers' commits fail (the producer check above, once every
	// partition fails) and its consumer stops (the consumer check), so
	// partition 0's manifest alone must not take every process out.
	if cfg.Partitions > 1 {
		return nil
	}
	if _, err := q.Read(ctx); err != nil {
		return fmt.Errorf("manifest unreadable: %v", err)
	}
	return nil
}

func sinkForLog(roles config.Role, s string) string {
	if roles&config.Consume == 0 {
		return "-"
	}
	return s
}

// applyMemoryLimit sets the Go soft memory limit from memory_limit, unless
// GOMEMLIMIT is set (the runtime already applied it) or the limit is 0. The
// limit keeps the heap's garbage headroom, not the data, bounded: at the
// producer's target rate most resident memory is garbage awaiting collection.
func applyMemoryLimit(cfg *config.Config, getenv config.Env, log *slog.Logger) {
	if getenv("GOMEMLIMIT") != "" || cfg.MemoryLimit <= 0 {
		return
	}
	debug.SetMemoryLimit(cfg.MemoryLimit)
	log.Debug("memory limit set", "bytes", cfg.MemoryLimit)
}

// consumerConfig maps the command's configuration onto the consumer's.
func consumerConfig(cfg *config.Config) consumer.Config {
	return consumer.Config{
		DataPrefix:           cfg.DataPrefix,
		DeadLetterPrefix:     cfg.DeadLetterPrefix,
		PollInterval:         cfg.PollInterval,
		DequeueInterval:      cfg.DequeueInterval,
		Prefetch:             cfg.Prefetch,
		SinkBatchSize:        cfg.SinkBatchSize,
		SinkConcurrency:      cfg.SinkConcurrency,
		GCInterval:           cfg.GCInterval,
		GCGracePeriod:        cfg.GCGracePeriod,
		MaxConsecutivePoison: cfg.ConsumerMaxConsecutivePoison(),
	}
}

// minSealInterval resolves min_seal_interval's auto
// (producer.AutoMinSealInterval: no cap on a directory bucket, where a seal
// costs nothing but a file; a cap on an object store, where each seal is
// billed and the manifest's CAS rate is shared by every producer).
func minSealInterval(cfg *config.Config) time.Duration {
	if cfg.MinSealInterval != config.MinSealIntervalAuto {
		return cfg.MinSealInterval
	}
	return producer.AutoMinSealInterval(cfg.ObjectStore != nil)
}
