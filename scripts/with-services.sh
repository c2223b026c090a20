#!/usr/bin/env bash
# scripts/with-services.sh CMD [ARGS...] — run CMD with every test service up.
#
# Starts each scripts/services/*.sh with `up` (any failure aborts loudly),
# sources the env files they wrote, runs CMD, then calls `down` on each
# started service (also on failure or Ctrl-C) and exits with CMD's status.
#
# Each run gets its own state directory, exported as BUCKETQ_SERVICE_STATE
# (.cache/runs/XXXX): services keep pid, data, log and env/NAME.env there, so
# several runs in one checkout do not stop each other's servers. Env files a
# service writes to .cache/env/ (ignoring the variable) are sourced first.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[[ $# -gt 0 ]] || { echo "usage: $0 CMD [ARGS...]" >&2; exit 2; }

mkdir -p .cache/runs
BUCKETQ_SERVICE_STATE="$(mktemp -d "$ROOT/.cache/runs/XXXXXX")"
export BUCKETQ_SERVICE_STATE

started=()
cleanup() {
	local s
	for s in "${started[@]}"; do
		"$s" down || echo "with-services: WARNING: $s down failed" >&2
	done
	started=()
	rm -rf "$BUCKETQ_SERVICE_STATE"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

shopt -s nullglob
for s in scripts/services/*.sh; do
	echo "with-services: starting $s" >&2
	started+=("$s")
	if ! "$s" up; then
		echo "with-services: ERROR: $s up failed; not running: $*" >&2
		exit 1
	fi
done

for f in .cache/env/*.env "$BUCKETQ_SERVICE_STATE"/env/*.env; do
	# shellcheck disable=SC1090
	source "$f"
done

status=0
"$@" || status=$?
exit "$status"
