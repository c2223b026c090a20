# bucketq — see README.md. `make test` is the one command CI runs.
GO        ?= go
BIN       ?= bin/bucketq
FUZZTIME  ?= 5s
PKGS      ?= ./...
# Test servers and emulators are installed here once per machine, outside the
# checkout, so every clone reuses them.
export BUCKETQ_TOOLS_DIR ?= $(HOME)/.cache/bucketq-tools

.PHONY: build test unit run bench fuzz lint chaos s3-up s3-down clean

build:
	$(GO) build -o $(BIN) ./cmd/bucketq

# test: every test, against a real S3-compatible server started for the run.
test:
	./scripts/with-services.sh $(GO) test -count=1 -timeout 15m $(PKGS)

# unit: the tests without starting the S3 server (service-backed tests skip unless CI=true).
unit:
	$(GO) test -count=1 $(PKGS)

run: build
	$(BIN) run

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

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

s3-up:
	./scripts/services/s3.sh up

s3-down:
	./scripts/services/s3.sh down

clean:
	rm -rf bin .cache/s3-data
