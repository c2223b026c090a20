#!/usr/bin/env bash
# scripts/services/s3.sh up|down|env — a local S3-compatible server for tests.
#
# Runs versitygw (Apache-2.0) with its posix backend on 127.0.0.1, on a free
# port, data under STATE/s3-data, log in STATE/s3.log, where STATE is
# $BUCKETQ_SERVICE_STATE (with-services.sh sets a fresh one per run, so
# concurrent runs in one checkout do not stop each other's server) or .cache.
# `up` writes STATE/env/s3.env with the BUCKETQ_TEST_S3_* variables the tests
# read; `down` stops it and removes its data; `env` prints the env file.
# The shared service logic is in scripts/lib/service.sh.
set -euo pipefail

SERVICE=s3 PROG=versitygw PROG_VERSION="${VERSITYGW_VERSION:-v1.8.0}"
# shellcheck source=../lib/service.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/service.sh"

BIN="$TOOLS/bin/versitygw"
STAMP="$TOOLS/bin/versitygw.version"
BUCKET="bucketq-test"
ACCESS_KEY="bucketq-test-access"
SECRET_KEY="bucketq-test-secret-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

build() {
	[[ -x "$BIN" && "$(cat "$STAMP" 2>/dev/null)" == "$PROG_VERSION" ]] && return 0
	mkdir -p "$TOOLS/bin"
	log "building versitygw $PROG_VERSION into $BIN (first run only, ~2 min)"
	retry_install "go install versitygw" env GOBIN="$TOOLS/bin" \
		go install "github.com/versity/versitygw/cmd/versitygw@$PROG_VERSION" ||
		die "could not build versitygw $PROG_VERSION"
	echo "$PROG_VERSION" >"$STAMP"
}

up() {
	build
	already_up && return 0
	fresh_state
	# A posix-backend bucket is a directory of the root.
	mkdir -p "$DATA/$BUCKET"
	local port url code
	port="$(free_port)"
	url="http://127.0.0.1:$port/"
	start_bg env ROOT_ACCESS_KEY="$ACCESS_KEY" ROOT_SECRET_KEY="$SECRET_KEY" \
		"$BIN" --port "127.0.0.1:$port" posix "$DATA"
	# Any HTTP answer (403 for an anonymous request) means it is serving.
	wait_http 10 any "$url"
	# The bucket must be listable with the credentials (signed request).
	code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
		-H "x-amz-content-sha256: UNSIGNED-PAYLOAD" --aws-sigv4 "aws:amz:us-east-1:s3" --user "$ACCESS_KEY:$SECRET_KEY" "$url$BUCKET?list-type=2")"
	[[ "$code" == "200" ]] || { down; die "listing bucket $BUCKET answered HTTP $code, want 200 (log: $LOG)"; }
	write_env "$url" "bucket $BUCKET" <<ENV
export BUCKETQ_TEST_S3_ENDPOINT=127.0.0.1:$port
export BUCKETQ_TEST_S3_ACCESS_KEY=$ACCESS_KEY
export BUCKETQ_TEST_S3_SECRET_KEY=$SECRET_KEY
export BUCKETQ_TEST_S3_BUCKET=$BUCKET
ENV
}

service_main "$@"
