#!/usr/bin/env bash
# scripts/services/s3.sh up|down|env — a local S3-compatible server for tests.
#
# Runs versitygw (Apache-2.0) with its posix backend on 127.0.0.1, on a free
# port, data under STATE/s3-data, log in STATE/s3.log, where STATE is
# $BUCKETQ_SERVICE_STATE (with-services.sh sets a fresh one per run, so
# concurrent runs in one checkout do not stop each other's server) or .cache.
# `up` writes STATE/env/s3.env with the BUCKETQ_TEST_S3_* variables the tests
# read; `down` stops it and removes its data; `env` prints the env file.
set -euo pipefail

VERSITYGW_VERSION="${VERSITYGW_VERSION:-v1.8.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="$ROOT/.cache"
# Installed tools live outside the checkout (BUCKETQ_TOOLS_DIR, set by the
# Makefile) so a fresh clone on the same machine reuses them.
TOOLS="${BUCKETQ_TOOLS_DIR:-$CACHE}"
BIN="$TOOLS/bin/versitygw"
STATE="${BUCKETQ_SERVICE_STATE:-$CACHE}"
DATA="$STATE/s3-data"
PIDFILE="$STATE/s3.pid"
LOG="$STATE/s3.log"
ENVFILE="$STATE/env/s3.env"
BUCKET="bucketq-test"
ACCESS_KEY="bucketq-test-access"
SECRET_KEY="bucketq-test-secret-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

log() { echo "s3.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

build() {
	[[ -x "$BIN" ]] && return 0
	mkdir -p "$TOOLS/bin"
	log "building versitygw $VERSITYGW_VERSION into $BIN (first run only, ~2 min)"
	for attempt in 1 2; do
		if GOBIN="$TOOLS/bin" timeout 600 go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"; then
			return 0
		fi
		log "go install versitygw failed (attempt $attempt)"
	done
	die "could not build versitygw $VERSITYGW_VERSION"
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
	mkdir -p "$DATA/$BUCKET" "$(dirname "$ENVFILE")"
	local port
	port="$(free_port)"
	# A posix-backend bucket is a directory of the root (created above).
	ROOT_ACCESS_KEY="$ACCESS_KEY" ROOT_SECRET_KEY="$SECRET_KEY" \
		nohup "$BIN" --port "127.0.0.1:$port" posix "$DATA" >"$LOG" 2>&1 </dev/null &
	echo $! >"$PIDFILE"
	local url="http://127.0.0.1:$port/"
	for _ in $(seq 1 100); do
		if ! running; then
			cat "$LOG" >&2 || true
			die "versitygw exited at start (log above, $LOG)"
		fi
		# Any HTTP answer (403 for an anonymous request) means it is serving.
		code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)"
		if [[ "$code" != "000" ]]; then break; fi
		sleep 0.1
	done
	[[ "${code:-000}" != "000" ]] || { down; die "versitygw did not answer on $url within 10s (log: $LOG)"; }
	# The bucket must be listable with the credentials (signed request).
	code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
		-H "x-amz-content-sha256: UNSIGNED-PAYLOAD" --aws-sigv4 "aws:amz:us-east-1:s3" --user "$ACCESS_KEY:$SECRET_KEY" "$url$BUCKET?list-type=2")"
	[[ "$code" == "200" ]] || { down; die "listing bucket $BUCKET answered HTTP $code, want 200 (log: $LOG)"; }
	cat >"$ENVFILE" <<ENV
export BUCKETQ_TEST_S3_ENDPOINT=127.0.0.1:$port
export BUCKETQ_TEST_S3_ACCESS_KEY=$ACCESS_KEY
export BUCKETQ_TEST_S3_SECRET_KEY=$SECRET_KEY
export BUCKETQ_TEST_S3_BUCKET=$BUCKET
ENV
	log "versitygw $VERSITYGW_VERSION serving $url (bucket $BUCKET, pid $(cat "$PIDFILE")); env in $ENVFILE"
}

down() {
	if running; then
		local pid
		pid="$(cat "$PIDFILE")"
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null || true
		log "stopped versitygw (pid $pid)"
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
