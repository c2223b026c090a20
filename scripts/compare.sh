#!/usr/bin/env bash
# scripts/compare.sh [build] — `make compare`: bucketq beside an OpenTelemetry
# Collector that is durable on one local disk, same generator, same run.
#
# A benchmark, not a test: `make test` does not run it. Everything runs on
# loopback, one side after the other, never both at once.
#
# Builds once and caches in the tool cache ($BUCKETQ_TOOLS_DIR, default
# ~/.cache/bucketq-tools, as scripts/lib/service.sh does):
#   - telemetrygen (OTel contrib, COMPARE_TELEMETRYGEN_VERSION, v0.161.0),
#     the load generator;
#   - otelcol-compare, a collector built with the collector builder (ocb)
#     COMPARE_OTEL_VERSION (v0.162.0): receiver otlp, exporter otlp_http
#     (otlphttp), extension file_storage, all at that version. Its first
#     build takes several minutes of CPU.
# Then, per cell (workers 1, 4, 8, 64 by default):
#   - collector: otlp receiver -> otlp_http exporter with a persistent sending
#     queue on file_storage (fsync: true), no batch processor, so a request is
#     acked once it is written (and fsynced) to the local queue; the exporter
#     sends to a local no-op OTLP/HTTP sink (internal/tools/otlpnullsink);
#   - bucketq: `bucketq produce` on a fresh directory bucket, defaults plus
#     COMPARE_BUCKETQ_FLAGS (acks once the batch and its manifest entry are
#     durable).
# Each side is a fresh process per cell, the first side alternating per row;
# telemetrygen (logs, gRPC, 100 logs per request, --rate 0) runs for
# COMPARE_DURATION against it. logs/s = the sum of the workers' "logs
# generated" counts (an export error is fatal to telemetrygen, and then this
# script fails, so all were acked) / telemetrygen's wall time; CPU seconds =
# utime+stime of the server process (/proc/PID/stat) over that run; peak RSS
# = its VmHWM (/proc/PID/status) just before it is stopped. telemetrygen's
# own CPU per log is printed too, and what twice the collector's logs/s
# would cost it in cores: the generator shares the machine, so where that
# nears nproc no server can reach 2× here.
#
# `scripts/compare.sh build` only builds (and caches) the tools.
#
# Knobs (environment): COMPARE_WORKERS ("1 4 8 64"), COMPARE_DURATION (10s),
# COMPARE_BATCH (100 logs per request), COMPARE_BUCKETQ_FLAGS,
# COMPARE_OTEL_VERSION, COMPARE_TELEMETRYGEN_VERSION.
# Output: the table on stdout; logs and state under .cache/compare/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TOOLS="${BUCKETQ_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/bucketq-tools}"
OTEL_VERSION="${COMPARE_OTEL_VERSION:-v0.162.0}"
# telemetrygen v0.162.0 is not served by the Go module proxy (403 "not
# available"); v0.161.0 is the newest that resolves. It only generates load.
TELEMETRYGEN_VERSION="${COMPARE_TELEMETRYGEN_VERSION:-v0.161.0}"
WORKERS="${COMPARE_WORKERS:-1 4 8 64}"
DURATION="${COMPARE_DURATION:-10s}"
BATCH="${COMPARE_BATCH:-100}"
WORK="$ROOT/.cache/compare"

log() { echo "compare: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# retry_install WHAT CMD...: run CMD (at most 30 min) up to twice.
retry_install() {
	local what="$1" attempt
	shift
	for attempt in 1 2; do
		timeout 1800 "$@" && return 0
		log "$what failed (attempt $attempt)"
	done
	return 1
}

TELEMETRYGEN="$TOOLS/bin/telemetrygen"
BUILDER="$TOOLS/bin/ocb"
OTELCOL="$TOOLS/bin/otelcol-compare"

# The builder manifest. Its hash is part of the cached binary's stamp, so
# editing it rebuilds.
manifest() {
	local v="${OTEL_VERSION}"
	cat <<EOF
dist:
  name: otelcol-compare
  description: bucketq make compare collector (otlp -> otlphttp, file_storage queue)
  output_path: $TOOLS/otelcol-compare-src
receivers:
  - gomod: go.opentelemetry.io/collector/receiver/otlpreceiver $v
exporters:
  - gomod: go.opentelemetry.io/collector/exporter/otlphttpexporter $v
extensions:
  - gomod: github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/filestorage $v
EOF
}

# cached BIN STAMP WANT: true if BIN exists and STAMP holds WANT.
cached() { [[ -x "$1" && "$(cat "$2" 2>/dev/null)" == "$3" ]]; }

build_tools() {
	mkdir -p "$TOOLS/bin"
	if ! cached "$TELEMETRYGEN" "$TELEMETRYGEN.version" "$TELEMETRYGEN_VERSION"; then
		log "building telemetrygen $TELEMETRYGEN_VERSION into $TELEMETRYGEN (first run only)"
		retry_install "go install telemetrygen" env GOBIN="$TOOLS/bin" go install \
			"github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen@$TELEMETRYGEN_VERSION" ||
			die "could not build telemetrygen $TELEMETRYGEN_VERSION"
		echo "$TELEMETRYGEN_VERSION" >"$TELEMETRYGEN.version"
	fi
	if ! cached "$BUILDER" "$BUILDER.version" "$OTEL_VERSION"; then
		log "building the collector builder (ocb) $OTEL_VERSION into $BUILDER (first run only)"
		local gobin
		gobin="$(mktemp -d)"
		retry_install "go install builder" env GOBIN="$gobin" go install \
			"go.opentelemetry.io/collector/cmd/builder@$OTEL_VERSION" ||
			die "could not build the collector builder $OTEL_VERSION"
		mv "$gobin/builder" "$BUILDER"
		rm -rf "$gobin"
		echo "$OTEL_VERSION" >"$BUILDER.version"
	fi
	local want
	want="$OTEL_VERSION $(manifest | sha256sum | cut -c1-16)"
	if ! cached "$OTELCOL" "$OTELCOL.version" "$want"; then
		log "building otelcol-compare with ocb $OTEL_VERSION into $OTELCOL (first run only; several minutes of CPU)"
		mkdir -p "$TOOLS/otelcol-compare-src"
		manifest >"$TOOLS/otelcol-compare-src/builder.yaml"
		retry_install "ocb" "$BUILDER" --config "$TOOLS/otelcol-compare-src/builder.yaml" ||
			die "could not build the collector (ocb $OTEL_VERSION)"
		mv "$TOOLS/otelcol-compare-src/otelcol-compare" "$OTELCOL"
		echo "$want" >"$OTELCOL.version"
	fi
}

if [[ "${1:-}" == build ]]; then
	build_tools
	exit 0
fi

command -v curl >/dev/null || die "curl is required"
build_tools
rm -rf "$WORK"
mkdir -p "$WORK/bin"
log "building bucketq and otlpnullsink from this checkout"
go build -o "$WORK/bin/bucketq" ./cmd/bucketq || die "go build ./cmd/bucketq failed"
go build -o "$WORK/bin/otlpnullsink" ./internal/tools/otlpnullsink || die "go build otlpnullsink failed"

# Processes this script started and has not stopped yet: stopped on exit,
# also on failure or Ctrl-C.
PIDS=()
stop_pid() {
	local pid="$1"
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}
forget_pid() {
	local p keep=()
	for p in "${PIDS[@]}"; do [[ "$p" == "$1" ]] || keep+=("$p"); done
	PIDS=("${keep[@]}")
}
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
	PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
	local p
	for _ in $(seq 1 50); do
		# Below Linux's ephemeral range (32768+), so no outgoing
		# connection's local port takes it between the check and the bind.
		p=$((20000 + RANDOM % 12000))
		if port_free "$p"; then echo "$p"; return 0; fi
	done
	die "no free port found"
}

# wait_port PID PORT LOG: wait (30 s) until PORT accepts connections; dies
# with LOG if PID exits first.
wait_port() {
	local pid="$1" port="$2" logf="$3"
	for _ in $(seq 1 300); do
		kill -0 "$pid" 2>/dev/null || { cat "$logf" >&2; die "process $pid exited at start (log above, $logf)"; }
		port_free "$port" || return 0
		sleep 0.1
	done
	cat "$logf" >&2
	die "nothing listens on 127.0.0.1:$port after 30s (log: $logf)"
}

CLK_TCK="$(getconf CLK_TCK)"
# cpu_ticks PID: utime+stime of PID in clock ticks (/proc/PID/stat fields
# 14 and 15, counted after the ")" that ends the command name).
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
# peak_rss_mib PID: VmHWM of PID in MiB.
peak_rss_mib() { awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

SINK_PORT="$(free_port)"
"$WORK/bin/otlpnullsink" --listen "127.0.0.1:$SINK_PORT" >"$WORK/sink.log" 2>&1 &
SINK_PID=$!
PIDS+=("$SINK_PID")
wait_port "$SINK_PID" "$SINK_PORT" "$WORK/sink.log"

# sink_requests: export requests the sink has answered so far.
sink_requests() { curl -sf --max-time 5 "http://127.0.0.1:$SINK_PORT/stats" | awk '/^requests/ {print $2}'; }

# start_side SIDE DIR GRPC_PORT: start a fresh collector or bucketq serving
# OTLP/gRPC on GRPC_PORT with its state under DIR, as a child of this shell
# (not in a command substitution's subshell); its pid goes to PIDS and
# SIDE_PID.
start_side() {
	local side="$1" dir="$2" grpc="$3" logf="$2/$1.log"
	mkdir -p "$dir"
	case "$side" in
	collector)
		mkdir -p "$dir/queue"
		cat >"$dir/otelcol.yaml" <<YAML
extensions:
  file_storage:
    directory: $dir/queue
    fsync: true
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:$grpc
exporters:
  otlp_http:
    endpoint: http://127.0.0.1:$SINK_PORT
    sending_queue:
      enabled: true
      storage: file_storage
      # Blocks the receiver (no error to the client) if the sink ever
      # falls behind; the sink answers at once, so it should not.
      block_on_overflow: true
service:
  extensions: [file_storage]
  telemetry:
    logs:
      level: warn
    metrics:
      level: none
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [otlp_http]
YAML
		"$OTELCOL" --config "$dir/otelcol.yaml" >"$logf" 2>&1 &
		;;
	bucketq)
		# shellcheck disable=SC2086 # COMPARE_BUCKETQ_FLAGS is a list of flags
		"$WORK/bin/bucketq" produce --create-bucket-dir --bucket-dir "$dir/bucket" --listen "127.0.0.1:$(free_port)" \
			--otlp-grpc "127.0.0.1:$grpc" --otlp-http= --log-level warn ${COMPARE_BUCKETQ_FLAGS:-} >"$logf" 2>&1 &
		;;
	esac
	SIDE_PID=$!
	PIDS+=("$SIDE_PID")
}

# run_cell SIDE WORKERS: one server, one telemetrygen run; sets R_RATE,
# R_CPU, R_RSS, and R_GEN (telemetrygen's CPU µs per log).
run_cell() {
	local side="$1" workers="$2" dir="$WORK/$1-w$2" grpc pid tg t0 t1 c0 c1 s0 s1 logs
	export GEN_TICKS="$dir/gen.ticks"
	grpc="$(free_port)"
	start_side "$side" "$dir" "$grpc"
	pid="$SIDE_PID"
	wait_port "$pid" "$grpc" "$dir/$side.log"
	s0="$(sink_requests)"
	c0="$(cpu_ticks "$pid")"
	t0="$(date +%s.%N)"
	# In the background and waited for, so a signal to this script is
	# handled at once (bash runs traps only between foreground commands).
	# Through a shell that, once telemetrygen is reaped, writes its CPU
	# ticks (the shell's cutime+cstime: its waited-for children) to
	# gen.ticks: the generator shares the cores with the server.
	sh -c '"$@"; rc=$?; sed "s/.*) //" /proc/$$/stat | awk "{print \$14 + \$15}" >"$GEN_TICKS"; exit $rc' sh \
		timeout 120 "$TELEMETRYGEN" logs --otlp-endpoint "127.0.0.1:$grpc" --otlp-insecure \
		--workers "$workers" --rate 0 --duration "$DURATION" --batch=true --batch-size "$BATCH" \
		>"$dir/telemetrygen.log" 2>&1 &
	tg=$!
	PIDS+=("$tg")
	if ! wait "$tg"; then
		tail -20 "$dir/telemetrygen.log" >&2
		tail -20 "$dir/$side.log" >&2
		die "telemetrygen against $side with $workers workers failed (logs: $dir)"
	fi
	t1="$(date +%s.%N)"
	forget_pid "$tg"
	kill -0 "$pid" 2>/dev/null || die "$side exited during the run (log: $dir/$side.log)"
	c1="$(cpu_ticks "$pid")"
	R_RSS="$(peak_rss_mib "$pid")"
	s1="$(sink_requests)"
	stop_pid "$pid"
	forget_pid "$pid"
	# Every worker logs `logs generated {"worker": N, "logs": COUNT}` once;
	# an export failure is fatal (non-zero exit, caught above), so the sum
	# is what the server acked.
	logs="$(grep -o '"logs": [0-9]*' "$dir/telemetrygen.log" | awk '{s += $2; n++} END {print s + 0, n + 0}')"
	[[ "${logs#* }" == "$workers" ]] || die "telemetrygen reported ${logs#* } of $workers workers (log: $dir/telemetrygen.log)"
	logs="${logs% *}"
	R_RATE="$(awk -v n="$logs" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", n / (b - a)}')"
	R_CPU="$(awk -v a="$c0" -v b="$c1" -v hz="$CLK_TCK" 'BEGIN {printf "%.1f", (b - a) / hz}')"
	R_GEN="$(awk -v t="$(cat "$GEN_TICKS")" -v n="$logs" -v hz="$CLK_TCK" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')"
	log "$side, $workers workers: $logs logs in $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')s = $R_RATE logs/s, CPU ${R_CPU}s (telemetrygen ${R_GEN} µs/log), peak RSS ${R_RSS} MiB$(
		[[ "$side" == collector ]] && echo ", exported to the sink during the run: $((s1 - s0)) requests of $((logs / BATCH))")"
	# The cells' state is deleted only after the last cell (see "Deleting").
}

START="$(date -u +%FT%TZ)"
LOAD0="$(cut -d' ' -f1-3 /proc/loadavg)"
rows=()
i=0
for w in $WORKERS; do
	# Alternate which side goes first, so drift in the machine's load
	# does not always favour the same one.
	if ((i % 2 == 0)); then order="collector bucketq"; else order="bucketq collector"; fi
	i=$((i + 1))
	for side in $order; do
		run_cell "$side" "$w"
		case "$side" in
		collector) c_rate="$R_RATE" c_cpu="$R_CPU" c_rss="$R_RSS" c_gen="$R_GEN" ;;
		bucketq) b_rate="$R_RATE" b_cpu="$R_CPU" b_rss="$R_RSS" b_gen="$R_GEN" ;;
		esac
	done
	ratio="$(awk -v b="$b_rate" -v c="$c_rate" 'BEGIN {if (c > 0) printf "%.3f", b / c; else print "-"}')"
	# What twice the collector's rate would cost the generator alone, in
	# cores (at its cheaper µs/log of the two runs): when that nears nproc,
	# no server can reach 2× on this machine, however little CPU it uses.
	gen2x="$(awk -v r="$c_rate" -v a="$c_gen" -v b="$b_gen" 'BEGIN {g = (a < b ? a : b); printf "%.2f", 2 * r * g / 1e6}')"
	rows+=("| $w | $c_rate | $b_rate | $ratio | $c_cpu | $b_cpu | $c_gen / $b_gen | $gen2x | $c_rss | $b_rss |")
done

echo "# make compare $START..$(date -u +%FT%TZ) nproc=$(nproc) loadavg=$LOAD0 -> $(cut -d' ' -f1-3 /proc/loadavg) $(go version | cut -d' ' -f3-)"
echo "# telemetrygen $TELEMETRYGEN_VERSION logs, gRPC, $BATCH logs/request, --rate 0, $DURATION per cell; collector otelcol-compare (ocb $OTEL_VERSION) file_storage fsync queue; bucketq produce, directory bucket${COMPARE_BUCKETQ_FLAGS:+, flags: $COMPARE_BUCKETQ_FLAGS}"
echo "| workers | collector logs/s | bucketq logs/s | bucketq ÷ collector | collector CPU s | bucketq CPU s | telemetrygen CPU µs/log (vs collector / vs bucketq) | telemetrygen cores at 2× the collector's logs/s (of $(nproc)) | collector peak RSS MiB | bucketq peak RSS MiB |"
echo "|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
# Deleting: on ext4 without a journal (this project's CI machines) a new
# file's inode is allocated past every inode freed in the last minute or
# more, one lookup each, so deleting a cell's tens of thousands of batch
# files between cells made the next cells' file creations several times
# dearer (BENCHMARKS.md §7). They go after the table instead.
rm -rf "$WORK"/*-w*
