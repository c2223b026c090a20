#!/usr/bin/env bash
# scripts/services/gcs.sh up|down|env — a local GCS emulator for tests.
#
# Runs fake-gcs-server (BSD-2-Clause) over plain HTTP on 127.0.0.1, on a free
# port, filesystem backend under STATE/gcs-data, log in STATE/gcs.log, where
# STATE is $BUCKETQ_SERVICE_STATE (with-services.sh sets a fresh one per run)
# or .cache. The binary is built once into $BUCKETQ_TOOLS_DIR/bin with `go install`.
# `up` writes STATE/env/gcs.env with BUCKETQ_TEST_GCS_ENDPOINT (base URL) and
# BUCKETQ_TEST_GCS_BUCKET; `down` stops it and removes its data; `env` prints
# the env file. The shared service logic is in scripts/lib/service.sh.
#
# fake-gcs-server enforces ifGenerationMatch (0 = create-only) with HTTP 412;
# manifest/cas/gcsstore's TestEmulatorEnforcesPreconditions fails if a new
# version stops doing so.
set -euo pipefail

SERVICE=gcs PROG=fake-gcs-server PROG_VERSION="${FAKE_GCS_VERSION:-v1.56.1}"
# shellcheck source=../lib/service.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/service.sh"

BIN="$TOOLS/bin/fake-gcs-server"
STAMP="$TOOLS/bin/fake-gcs-server.version"
BUCKET="bucketq-test"

build() {
	[[ -x "$BIN" && "$(cat "$STAMP" 2>/dev/null)" == "$PROG_VERSION" ]] && return 0
	mkdir -p "$TOOLS/bin"
	log "building fake-gcs-server $PROG_VERSION into $BIN (first run only; downloads its own dependency set)"
	local start=$SECONDS
	retry_install "go install fake-gcs-server" env GOBIN="$TOOLS/bin" GOFLAGS= \
		go install "github.com/fsouza/fake-gcs-server@$PROG_VERSION" ||
		die "could not build fake-gcs-server $PROG_VERSION"
	echo "$PROG_VERSION" >"$STAMP"
	log "built in $((SECONDS - start))s"
}

up() {
	build
	already_up && return 0
	fresh_state
	local port url code
	port="$(free_port)"
	url="http://127.0.0.1:$port"
	start_bg "$BIN" -scheme http -host 127.0.0.1 -port "$port" \
		-backend filesystem -filesystem-root "$DATA" \
		-public-host "127.0.0.1:$port" -external-url "$url" -log-level warn
	wait_http 10 200 "$url" /storage/v1/b
	code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X POST -H 'Content-Type: application/json' \
		-d "{\"name\":\"$BUCKET\"}" "$url/storage/v1/b?project=bucketq-test")"
	[[ "$code" == "200" ]] || { down; die "creating bucket $BUCKET answered HTTP $code, want 200 (log: $LOG)"; }
	write_env "$url" "bucket $BUCKET" <<ENV
export BUCKETQ_TEST_GCS_ENDPOINT=$url
export BUCKETQ_TEST_GCS_BUCKET=$BUCKET
ENV
}

service_main "$@"
