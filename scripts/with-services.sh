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
# Services start in parallel: a cold machine installs each one first
# (minutes each), and those installs overlap. Each `up` logs to its own file,
# shown when it fails.
pids=()
names=()
for s in scripts/services/*.sh; do
	echo "with-services: starting $s" >&2
	started+=("$s")
	log="$BUCKETQ_SERVICE_STATE/$(basename "$s" .sh).up.log"
	# One retry: a service can lose the race for the free port it picked
	# to another service starting at the same moment.
	( "$s" up || { echo "with-services: $s up failed; retrying once" >&2; "$s" down || true; sleep 1; "$s" up; } ) >"$log" 2>&1 &
	pids+=($!)
	names+=("$s")
done
failed=0
for i in "${!pids[@]}"; do
	if ! wait "${pids[$i]}"; then
		echo "with-services: ERROR: ${names[$i]} up failed:" >&2
		cat "$BUCKETQ_SERVICE_STATE/$(basename "${names[$i]}" .sh).up.log" >&2
		failed=1
	fi
done
if [[ $failed -ne 0 ]]; then
	echo "with-services: not running: $*" >&2
	exit 1
fi

for f in .cache/env/*.env "$BUCKETQ_SERVICE_STATE"/env/*.env; do
	# shellcheck disable=SC1090
	source "$f"
done

status=0
"$@" || status=$?
exit "$status"
