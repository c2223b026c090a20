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
# (VmHWM), and per 1M events the batch objects it wrote and its manifest
# writes and conflicts (from its /metrics just before it is stopped).
#
#   CELLS="64:1 16:500"   clients:events-per-request (default: 1 4 16 64 256 × 1 100 500)
#   DURATION=10s  BQ=bin/bucketq  PRODUCE_FLAGS="--min-seal-interval 250ms"
#   MODE=run      `bucketq run` (producer and a consumer delivering to
#                 file:/dev/null, which keeps the manifest short by dequeuing)
#                 instead of `bucketq produce` alone (whose manifest grows by
#                 one entry per batch for the whole run)
#   STORE=s3      the bucket and manifest on the S3 test server instead of a
#                 directory: run under scripts/with-services.sh (it exports
#                 BUCKETQ_TEST_S3_*); each cell gets its own prefix.
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

STORE=${STORE:-fs}
MODE=${MODE:-produce}
case "$MODE" in
produce) mode_args=() ;;
run) mode_args=(--sink file:/dev/null) ;;
*) echo "wrk-matrix: MODE must be produce or run, not $MODE" >&2; exit 1 ;;
esac
case "$STORE" in
fs) ;;
s3) [ -n "${BUCKETQ_TEST_S3_ENDPOINT:-}" ] || { echo "wrk-matrix: STORE=s3 needs BUCKETQ_TEST_S3_*: run under scripts/with-services.sh" >&2; exit 1; } ;;
*) echo "wrk-matrix: STORE must be fs or s3, not $STORE" >&2; exit 1 ;;
esac
# metric NAME: the value of one line of the producer's /metrics.
# (awk reads to the end: an early exit would fail curl, and the script.)
metric() { curl -s "127.0.0.1:$PORT/metrics" | awk -v n="$1" '$1 == n {v = $2} END {print v}'; }

echo "# wrk-matrix $(date -u +%FT%TZ) nproc=$(nproc) loadavg=$(cut -d' ' -f1-3 /proc/loadavg) $($BQ version 2>/dev/null | head -1) store=$STORE mode=$MODE flags: ${PRODUCE_FLAGS:-defaults}"
echo "| clients | events/request | events/s | ack p50 / p99 ms | non-2xx | producer CPU µs/event | producer peak RSS MiB | batch objects per 1M events | manifest writes per 1M events | conflicts per 1,000 writes |"
echo "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"
cell_no=0
done_dirs=()
for cell in $CELLS; do
	c=${cell%:*} b=${cell#*:}
	D=$(mktemp -d)
	cell_no=$((cell_no + 1))
	if [ "$STORE" = s3 ]; then
		cell_prefix="wrk-$(date +%s)-$cell_no"
		cat >"$D/bucketq.yaml" <<YAML
object_store:
  type: S3
  config:
    bucket: $BUCKETQ_TEST_S3_BUCKET
    endpoint: $BUCKETQ_TEST_S3_ENDPOINT
    access_key: $BUCKETQ_TEST_S3_ACCESS_KEY
    secret_key: $BUCKETQ_TEST_S3_SECRET_KEY
    insecure: true
manifest_path: $cell_prefix/manifest
data_prefix: $cell_prefix/data
YAML
		where=(--config "$D/bucketq.yaml")
	else
		where=(--bucket-dir "$D")
	fi
	# The previous cell's producer must have let go of the port.
	for _ in $(seq 100); do curl -s -o /dev/null "127.0.0.1:$PORT/" || break; sleep 0.1; done
	# shellcheck disable=SC2086
	"$BQ" "$MODE" "${mode_args[@]}" "${where[@]}" --listen "127.0.0.1:$PORT" --otlp-grpc= --otlp-http= --log-level warn ${PRODUCE_FLAGS:-} >"$D.log" 2>&1 &
	P=$!
	# The cells' buckets are deleted on exit, not between cells: on ext4
	# without a journal (this project's CI machines) a new file's inode is
	# allocated past every inode freed in the last minute or more, so
	# deleting one cell's batch files (~90k at 64 × 1) made the next cells'
	# file creations several times dearer.
	trap 'kill $P 2>/dev/null && wait $P 2>/dev/null; rm -rf "${done_dirs[@]}" "$D" "$D.log"' EXIT
	for _ in $(seq 100); do curl -s -o /dev/null "127.0.0.1:$PORT/readyz" && break; sleep 0.1; done
	t0=$(cpu_ticks $P)
	threads=$((c < 2 ? 1 : 2))
	raw=$(BATCH=$b "$WRK" -t"$threads" -c"$c" -d"$DURATION" --timeout 30s -s scripts/wrk/events.lua "http://127.0.0.1:$PORT/api/v1/events" 2>&1) || true
	out=$(grep '^{"requests"' <<<"$raw") || { echo "wrk-matrix: cell $cell: no result from wrk:" >&2; echo "$raw" >&2; tail -5 "$D.log" >&2; exit 1; }
	t1=$(cpu_ticks $P)
	rss=$(awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$P/status")
	objects=$(metric producer_batch_records_count)
	writes=$(metric 'buffer_manifest_writes{role="producer"}')
	conflicts=$(metric 'buffer_manifest_conflicts{role="producer"}')
	kill $P
	wait $P 2>/dev/null || true
	python3 - "$out" "$b" "$c" "$(( (t1 - t0) ))" "$hz" "$rss" "${objects:-0}" "${writes:-0}" "${conflicts:-0}" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); b = int(sys.argv[2]); c = sys.argv[3]
ticks, hz, rss = int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
objects, writes, conflicts = (int(float(x)) for x in sys.argv[7:10])
events = r["requests"] * b
eps = events / r["duration_s"]
cpu_us = ticks / hz * 1e6 / max(events, 1)
per_m = objects * 1e6 / max(events, 1)
bad = r["non_2xx"] + r["socket_errors"]
per_m_w = writes * 1e6 / max(events, 1)
conf = conflicts * 1000 / max(writes, 1)
print(f'| {c} | {b} | {eps:,.0f} | {r["p50_ms"]:.1f} / {r["p99_ms"]:.1f} | {bad} | {cpu_us:.0f} | {rss} | {per_m:,.0f} | {per_m_w:,.0f} | {conf:.0f} |')
PY
	rm -f "$D.log"
	done_dirs+=("$D")
done
echo "# done $(date -u +%FT%TZ) loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
