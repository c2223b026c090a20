#!/usr/bin/env bash
# scripts/lib/service.sh — the shared machinery of the scripts/services/*.sh
# test services; its one job is to run one local server process for tests.
#
# A service script sets SERVICE (state name: s3, gcs, ...), PROG (program
# name for messages) and PROG_VERSION, sources this file, defines `up` with
# what is specific to it (install, start command, bucket creation, env file
# contents) and ends with `service_main "$@"`. This file provides the paths,
# log/die, retried installs, the pid file, free ports, starting in the
# background and waiting for HTTP, and `down`.
#
# Paths: STATE is $BUCKETQ_SERVICE_STATE (with-services.sh sets a fresh one
# per run, so concurrent runs in one checkout do not stop each other's
# servers) or .cache; the service keeps STATE/SERVICE-data, STATE/SERVICE.pid,
# STATE/SERVICE.log and STATE/env/SERVICE.env there.
# Not under scripts/services/: with-services.sh runs every script there.
set -euo pipefail

: "${SERVICE:?set SERVICE before sourcing service.sh}" "${PROG:?set PROG before sourcing service.sh}" "${PROG_VERSION:?set PROG_VERSION before sourcing service.sh}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="$ROOT/.cache"
# Installed tools live outside the checkout, in BUCKETQ_TOOLS_DIR (default
# ~/.cache/bucketq-tools, the same default as the Makefile's), so a fresh
# clone on the same machine, or a script run without make, reuses them.
TOOLS="${BUCKETQ_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/bucketq-tools}"
STATE="${BUCKETQ_SERVICE_STATE:-$CACHE}"
DATA="$STATE/$SERVICE-data"
PIDFILE="$STATE/$SERVICE.pid"
LOG="$STATE/$SERVICE.log"
ENVFILE="$STATE/env/$SERVICE.env"

log() { echo "$(basename "$0"): $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# retry_install WHAT CMD...: run CMD (at most 600s) up to twice, logging
# "WHAT failed (attempt N)" after each failure; fails if both do.
retry_install() {
	local what="$1" attempt
	shift
	for attempt in 1 2; do
		timeout 600 "$@" && return 0
		log "$what failed (attempt $attempt)"
	done
	return 1
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

# already_up: true (and says so) if the server runs and its env file exists.
already_up() {
	running && [[ -f "$ENVFILE" ]] || return 1
	log "already running (pid $(cat "$PIDFILE")); env in $ENVFILE"
}

# fresh_state: an empty $DATA and the env file's directory.
fresh_state() {
	rm -rf "$DATA"
	mkdir -p "$DATA" "$(dirname "$ENVFILE")"
}

# start_bg CMD...: run CMD in the background, detached, output to $LOG; its
# pid goes to $PIDFILE (use `env VAR=...` in CMD for environment).
start_bg() {
	nohup "$@" >"$LOG" 2>&1 </dev/null &
	echo $! >"$PIDFILE"
}

# wait_http SECS WANT URL [SUFFIX]: poll URL+SUFFIX every 0.1s for up to SECS
# seconds until it answers HTTP status WANT (any: any HTTP answer). Dies
# with the log if the server exits; stops it and dies if it never answers.
wait_http() {
	local secs="$1" want="$2" url="$3" probe="$3${4:-}" code
	for _ in $(seq 1 $((secs * 10))); do
		if ! running; then
			cat "$LOG" >&2 || true
			die "$PROG exited at start (log above, $LOG)"
		fi
		code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$probe" || true)"
		if [[ "$want" == any && "$code" != "000" || "$code" == "$want" ]]; then return 0; fi
		sleep 0.1
	done
	down
	die "$PROG did not answer on $url within ${secs}s (log: $LOG)"
}

# write_env URL WHAT: write stdin to $ENVFILE, log that PROG serves URL (WHAT).
write_env() {
	cat >"$ENVFILE"
	log "$PROG $PROG_VERSION serving $1 ($2, pid $(cat "$PIDFILE")); env in $ENVFILE"
}

down() {
	if running; then
		local pid
		pid="$(cat "$PIDFILE")"
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null || true
		log "stopped $PROG (pid $pid)"
	fi
	rm -f "$PIDFILE" "$ENVFILE"
	rm -rf "$DATA"
}

service_main() {
	case "${1:-}" in
	up) up ;;
	down) down ;;
	env) [[ -f "$ENVFILE" ]] && cat "$ENVFILE" || die "not running (no $ENVFILE); run: $0 up" ;;
	*) echo "usage: $0 up|down|env" >&2; exit 2 ;;
	esac
}
