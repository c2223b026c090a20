#!/usr/bin/env bash
# scripts/services/gcs.sh up|down|env — a local GCS emulator for tests.
#
# Runs fake-gcs-server (BSD-2-Clause) over plain HTTP on 127.0.0.1, on a free
# port, filesystem backend under STATE/gcs-data, log in STATE/gcs.log, where
# STATE is $BUCKETQ_SERVICE_STATE (with-services.sh sets a fresh one per run)
# or .cache. The binary is built once into .cache/bin with `go install`.
# `up` writes STATE/env/gcs.env with BUCKETQ_TEST_GCS_ENDPOINT (base URL) and
# BUCKETQ_TEST_GCS_BUCKET; `down` stops it and removes its data; `env` prints
# the env file.
#
# fake-gcs-server enforces ifGenerationMatch (0 = create-only) with HTTP 412;
# manifest/cas/gcsstore's TestEmulatorEnforcesPreconditions fails if a new
# version stops doing so.
set -euo pipefail

FAKE_GCS_VERSION="${FAKE_GCS_VERSION:-v1.56.1}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="$ROOT/.cache"
# Installed tools live outside the checkout (BUCKETQ_TOOLS_DIR, set by the
# Makefile) so a fresh clone on the same machine reuses them.
TOOLS="${BUCKETQ_TOOLS_DIR:-$CACHE}"
BIN="$TOOLS/bin/fake-gcs-server"
STAMP="$TOOLS/bin/fake-gcs-server.version"
STATE="${BUCKETQ_SERVICE_STATE:-$CACHE}"
DATA="$STATE/gcs-data"
PIDFILE="$STATE/gcs.pid"
LOG="$STATE/gcs.log"
ENVFILE="$STATE/env/gcs.env"
BUCKET="bucketq-test"

log() { echo "gcs.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

build() {
	[[ -x "$BIN" && "$(cat "$STAMP" 2>/dev/null)" == "$FAKE_GCS_VERSION" ]] && return 0
	mkdir -p "$TOOLS/bin"
	log "building fake-gcs-server $FAKE_GCS_VERSION into $BIN (first run only; downloads its own dependency set)"
	local start=$SECONDS
	for attempt in 1 2; do
		if GOBIN="$TOOLS/bin" GOFLAGS= timeout 600 go install "github.com/fsouza/fake-gcs-server@$FAKE_GCS_VERSION"; then
			echo "$FAKE_GCS_VERSION" >"$STAMP"
			log "built in $((SECONDS - start))s"
			return 0
		fi
		log "go install fake-gcs-server failed (attempt $attempt)"
	done
	die "could not build fake-gcs-server $FAKE_GCS_VERSION"
}

running() { [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
	local p
	for _ in $(seq 1 50); do
		p=$((20000 + RANDOM % 30000))
		if port_free "$p"; then echo "$p"; return 0; fi
	done
	die "no free port found"
}

up() {
	build
	if running && [[ -f "$ENVFILE" ]]; then
		log "already running (pid $(cat "$PIDFILE")); env in $ENVFILE"
		return 0
	fi
	rm -rf "$DATA"
	mkdir -p "$DATA" "$(dirname "$ENVFILE")"
	local port url code=000
	port="$(free_port)"
	url="http://127.0.0.1:$port"
	nohup "$BIN" -scheme http -host 127.0.0.1 -port "$port" \
		-backend filesystem -filesystem-root "$DATA" \
		-public-host "127.0.0.1:$port" -external-url "$url" -log-level warn \
		>"$LOG" 2>&1 </dev/null &
	echo $! >"$PIDFILE"
	for _ in $(seq 1 100); do
		if ! running; then
			cat "$LOG" >&2 || true
			die "fake-gcs-server exited at start (log above, $LOG)"
		fi
		code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url/storage/v1/b" || true)"
		[[ "$code" == "200" ]] && break
		sleep 0.1
	done
	[[ "$code" == "200" ]] || { down; die "fake-gcs-server did not answer on $url within 10s (log: $LOG)"; }
	code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X POST -H 'Content-Type: application/json' \
		-d "{\"name\":\"$BUCKET\"}" "$url/storage/v1/b?project=bucketq-test")"
	[[ "$code" == "200" ]] || { down; die "creating bucket $BUCKET answered HTTP $code, want 200 (log: $LOG)"; }
	cat >"$ENVFILE" <<ENV
export BUCKETQ_TEST_GCS_ENDPOINT=$url
export BUCKETQ_TEST_GCS_BUCKET=$BUCKET
ENV
	log "fake-gcs-server $FAKE_GCS_VERSION serving $url (bucket $BUCKET, pid $(cat "$PIDFILE")); env in $ENVFILE"
}

down() {
	if running; then
		local pid
		pid="$(cat "$PIDFILE")"
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null || true
		log "stopped fake-gcs-server (pid $pid)"
	fi
	rm -f "$PIDFILE" "$ENVFILE"
	rm -rf "$DATA"
}

case "${1:-}" in
up) up ;;
down) down ;;
env) [[ -f "$ENVFILE" ]] && cat "$ENVFILE" || die "not running (no $ENVFILE); run: $0 up" ;;
*) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac
