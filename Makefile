# bucketq — see README.md. `make test` is the one command CI runs.
GO        ?= go
BIN       ?= bin/bucketq
FUZZTIME  ?= 5s
PKGS      ?= ./...
# Test servers and emulators are installed here once per machine, outside the
# checkout, so every clone reuses them.
export BUCKETQ_TOOLS_DIR ?= $(HOME)/.cache/bucketq-tools

.PHONY: build test unit run bench compare fuzz lint chart chaos s3-up s3-down clean otelcol otelcol-smoke otelcol-e2e

# The collector exporter is its own Go module (exporter/bucketqexporter):
# test, unit and lint run its packages too, from its directory.
EXPORTER_MOD ?= exporter/bucketqexporter

build:
	$(GO) build -o $(BIN) ./cmd/bucketq

# test: every test, against a real S3-compatible server started for the run,
# then the library-user module (testdata/libuser: another module importing
# producer, consumer and manifest). It includes the collector end-to-end
# tests (internal/otelcole2e), which build bin/otelcol-bucketq and
# telemetrygen on first use (scripts/otelcol.sh; cached after, in bin/ and
# BUCKETQ_TOOLS_DIR) while go test runs the other packages.
test:
	./scripts/with-services.sh sh -c '$(GO) test -count=1 -timeout 15m $(PKGS) && \
	  cd $(EXPORTER_MOD) && $(GO) test -count=1 -timeout 5m ./...'
	cd testdata/libuser && $(GO) test -count=1 ./...

# unit: the tests without starting the S3 server (service-backed tests skip unless CI=true).
unit:
	$(GO) test -count=1 $(PKGS)
	cd testdata/libuser && $(GO) test -count=1 ./...
	cd $(EXPORTER_MOD) && $(GO) test -count=1 ./...

# run: the README's first run, on a fresh machine: ./data is created if
# missing (bucketq itself refuses a missing bucket directory without
# --create-bucket-dir, so a typo cannot start an empty queue).
run: build
	$(BIN) run --create-bucket-dir

# bench: the micro benchmarks of BENCH_PKGS (codec vs raw zstd/memcpy, a directory-bucket
# ack vs a log-file append, seal rule,
# manifest codec and queue, HTTP handler, S3 manifest commits with and
# without group commit, OTLP conversion vs protobuf unmarshal, GC cycle at
# 10k/100k/1M batch files, journal compaction of 10k/100k segments) at the default
# benchtime, then the end-to-end suite (internal/benchsuite: ingest in process
# and as a separate `bucketq produce` process with its resident memory,
# delivery, end-to-end latency, cost growth, sink validation) at
# BENCH_SUITE_TIME rounds each, with the test services up; output in
# .cache/bench.txt (first line: time, nproc, load average, Go version; last
# line: end time, load average). Results and how to read them: BENCHMARKS.md.
# Without the S3 server (its variants skip): make bench BENCH_SERVICES=
BENCH_SERVICES   ?= ./scripts/with-services.sh
BENCH_PKGS       ?= ./format ./bucket ./manifest ./producer ./manifest/cas/s3store ./ingest/httpevents ./consumer/convert/otlpconv ./consumer ./journal
BENCH_SUITE_TIME ?= 2x
bench:
	@mkdir -p .cache
	@{ echo "# make bench $$(date -u +%FT%TZ) nproc=$$(nproc) loadavg=$$(cut -d' ' -f1-3 /proc/loadavg) $$($(GO) version)"; \
	  $(BENCH_SERVICES) sh -c '$(GO) test -run "^$$" -bench . -benchmem -timeout 30m $(BENCH_PKGS) && \
	    $(GO) test -run "^$$" -bench . -benchmem -benchtime=$(BENCH_SUITE_TIME) -timeout 30m ./internal/benchsuite'; \
	  echo $$? > .cache/bench.rc; \
	  echo "# done $$(date -u +%FT%TZ) loadavg=$$(cut -d' ' -f1-3 /proc/loadavg)"; } 2>&1 | tee .cache/bench.txt
	@exit $$(cat .cache/bench.rc)

# compare: bucketq produce beside an OTel Collector durable on one local disk
# (persistent sending queue on file_storage, fsync on, no batch processor),
# same telemetrygen load (OTLP/gRPC logs, 100 per request) for 1, 4, 8 and 64
# workers, one after the other; prints one table (logs/s, ratio, CPU, peak
# RSS). A benchmark, not a test. Builds telemetrygen and the collector once
# into BUCKETQ_TOOLS_DIR (the collector: several minutes the first time).
# Knobs: COMPARE_WORKERS, COMPARE_DURATION (10s), COMPARE_BUCKETQ_FLAGS.
# See BENCHMARKS.md, "bucketq beside the OTel Collector".
compare:
	./scripts/compare.sh

# fuzz: each fuzz target for FUZZTIME (CI uses 15s).
fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

# chaos: the full-size chaos test (1M events) against the real S3 server;
# `make test` runs it at 100k events.
CHAOS_EVENTS ?= 1000000
chaos:
	./scripts/with-services.sh env BUCKETQ_CHAOS_EVENTS=$(CHAOS_EVENTS) $(GO) test -count=1 -timeout 90m -run TestChaos -v ./internal/chaos

lint:
	test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...
	cd $(EXPORTER_MOD) && $(GO) vet ./...
	./scripts/staticcheck.sh ./...
	STATICCHECK_DIR=$(EXPORTER_MOD) ./scripts/staticcheck.sh ./...

# otelcol: bin/otelcol-bucketq, the collector distribution of
# otelcol-bucketq/builder-config.yaml (otlp receiver, batch and
# memory_limiter processors, the bucketq exporter), built with ocb at the
# pinned collector release (cached; several minutes the first time).
# scripts/otelcol.sh bump v0.N.0 moves the pin.
otelcol:
	./scripts/otelcol.sh build

# otelcol-smoke: telemetrygen logs through bin/otelcol-bucketq into a
# directory bucket; `bucketq inspect manifest` must list them (a shell
# check of the README's example; `make test` runs internal/otelcole2e).
otelcol-smoke:
	./scripts/otelcol.sh smoke

# otelcol-e2e: only internal/otelcole2e (also part of `make test`) against
# bin/otelcol-bucketq on the S3 test server: telemetrygen logs, metrics and
# traces give the same event ids through the collector and bucketq produce;
# SIGKILL under load loses no acknowledged export.
otelcol-e2e:
	./scripts/otelcol.sh e2e

# chart: helm lint + helm template of deploy/helm/bucketq over each ci/ value
# file, checked by TestChart* (the rendered config loads in bucketq, probes,
# grace period, security context, no PVC), and promtool check/test rules over
# deploy/monitoring (TestMonitoringRule*). scripts/tool.sh builds helm (pinned)
# into the tool cache the first time, minutes; promtool comes from Debian's
# package, seconds. `make test` runs the same tests when the tools are
# installed and skips them otherwise (fails them in CI, which installs them).
chart:
	./scripts/tool.sh --install-only promtool >/dev/null
	./scripts/tool.sh --install-only helm >/dev/null
	BUCKETQ_DOCKERFILE_BUILD=1 $(GO) test -count=1 -run 'TestChart|TestMonitoringRule|TestDockerfile' -v ./cmd/bucketq/

s3-up:
	./scripts/services/s3.sh up

s3-down:
	./scripts/services/s3.sh down

clean:
	rm -rf bin .cache/s3-data
