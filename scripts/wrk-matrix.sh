#!/usr/bin/env bash
# scripts/wrk-matrix.sh — issue 10's ingest figures taken with wrk (the load
# generator the issue's first figures came from; C, so it leaves the 2 cores
# to the producer where `bucketq bench`, a Go HTTP client, takes ~40 % of
# them at one event per request). `make build` first.
#
# Each cell is a fresh `bucketq produce` (default settings) on a fresh
# directory bucket, loaded by `wrk -c CLIENTS` for DURATION with BATCH
# events per request (scripts/wrk/events.lua), and prints one Markdown row:
# events/s, wrk's ack latency p50/p99, non-2xx responses, the producer's CPU
# per event (utime+stime from /proc/PID/stat over the run), its peak RSS
# (VmHWM) and the batch objects it wrote per 1M events.
#
#   CELLS="64:1 16:500"   clients:events-per-request (default: 1 4 16 64 256 × 1 100 500)
#   DURATION=10s  BQ=bin/bucketq  PRODUCE_FLAGS="--min-seal-interval 250ms"
set -euo pipefail
cd "$(dirname "$0")/.."
BQ=${BQ:-bin/bucketq}
DURATION=${DURATION:-10s}
PORT=${PORT:-18891}
WRK="$(scripts/tool.sh --install-only wrk)"
[ -x "$BQ" ] || { echo "wrk-matrix: $BQ missing: run make build" >&2; exit 1; }
if [ -z "${CELLS:-}" ]; then
	CELLS=""
	for b in 1 100 500; do for c in 1 4 16 64 256; do CELLS="$CELLS $c:$b"; done; done
fi
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

echo "# wrk-matrix $(date -u +%FT%TZ) nproc=$(nproc) loadavg=$(cut -d' ' -f1-3 /proc/loadavg) $($BQ version 2>/dev/null | head -1) produce flags: ${PRODUCE_FLAGS:-defaults}"
echo "| clients | events/request | events/s | ack p50 / p99 ms | non-2xx | producer CPU µs/event | producer peak RSS MiB | batch objects per 1M events |"
echo "|---:|---:|---:|---|---:|---:|---:|---:|"
for cell in $CELLS; do
	c=${cell%:*} b=${cell#*:}
	D=$(mktemp -d)
	# shellcheck disable=SC2086
	"$BQ" produce --bucket-dir "$D" --listen "127.0.0.1:$PORT" --otlp-grpc= --otlp-http= --log-level warn ${PRODUCE_FLAGS:-} >"$D.log" 2>&1 &
	P=$!
	for _ in $(seq 100); do curl -s -o /dev/null "127.0.0.1:$PORT/readyz" && break; sleep 0.1; done
	t0=$(cpu_ticks $P)
	threads=$((c < 2 ? 1 : 2))
	out=$(BATCH=$b "$WRK" -t"$threads" -c"$c" -d"$DURATION" --timeout 30s -s scripts/wrk/events.lua "http://127.0.0.1:$PORT/api/v1/events" | grep '^{"requests"')
	t1=$(cpu_ticks $P)
	rss=$(awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$P/status")
	kill $P
	wait $P 2>/dev/null || true
	objects=$(find "$D" -type f -name '*.batch' | wc -l)
	python3 - "$out" "$b" "$c" "$(( (t1 - t0) ))" "$hz" "$rss" "$objects" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); b = int(sys.argv[2]); c = sys.argv[3]
ticks, hz, rss, objects = int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], int(sys.argv[7])
events = r["requests"] * b
eps = events / r["duration_s"]
cpu_us = ticks / hz * 1e6 / max(events, 1)
per_m = objects * 1e6 / max(events, 1)
bad = r["non_2xx"] + r["socket_errors"]
print(f'| {c} | {b} | {eps:,.0f} | {r["p50_ms"]:.1f} / {r["p99_ms"]:.1f} | {bad} | {cpu_us:.0f} | {rss} | {per_m:,.0f} |')
PY
	rm -rf "$D" "$D.log"
done
echo "# done $(date -u +%FT%TZ) loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
