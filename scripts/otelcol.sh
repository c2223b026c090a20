#!/usr/bin/env bash
# scripts/otelcol.sh build|path|smoke|bump VERSION — the bucketq OpenTelemetry
# Collector distribution (otelcol-bucketq/builder-config.yaml).
#
#   build   build bin/otelcol-bucketq with the collector builder (ocb) at the
#           pinned collector version (`make otelcol`). ocb is installed once
#           into the tool cache ($BUCKETQ_TOOLS_DIR, ~/.cache/bucketq-tools,
#           shared with scripts/compare.sh). The binary is rebuilt only when
#           the builder config or the exporter's or root module's Go files
#           changed (a stamp of their hash). The first build takes several
#           minutes of CPU.
#   path    build if needed, print the binary's path (internal/otelcole2e
#           runs this on first use, so `make test` builds it when missing).
#   telemetrygen  install telemetrygen once into the tool cache, print its
#           path (internal/otelcole2e uses it the same way).
#   smoke   build if needed, then telemetrygen logs -> otelcol-bucketq ->
#           a fresh directory bucket, and `bucketq inspect manifest` must
#           list entries (about 30 s once built).
#   e2e     build if needed, then only the Go end-to-end tests
#           internal/otelcole2e (also part of `make test`, which builds on
#           first use) with the test services up.
#   bump V  move the one pinned collector release to V (v0.N.0; the stable
#           modules go to v1.(N-94).0): rewrites builder-config.yaml and
#           exporter/bucketqexporter/go.mod, then go mod tidy there.
#
# The pinned version lives in exactly those two files; the unstable (v0.x)
# exporterhelper line of exporter/bucketqexporter/go.mod is the source of
# truth, and `build` refuses a builder config that disagrees with it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TOOLS="${BUCKETQ_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/bucketq-tools}"
CONFIG=otelcol-bucketq/builder-config.yaml
EXPMOD=exporter/bucketqexporter
BIN="$ROOT/bin/otelcol-bucketq"
# telemetrygen v0.162.0 is not served by the Go module proxy here; v0.161.0
# is the newest that resolves (scripts/compare.sh). It only generates load.
TELEMETRYGEN_VERSION="${OTELCOL_TELEMETRYGEN_VERSION:-v0.161.0}"

log() { echo "otelcol: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# pinned: the collector's unstable version the exporter is built against.
pinned() {
	awk '$1 == "go.opentelemetry.io/collector/exporter/exporterhelper" {print $2}' "$EXPMOD/go.mod"
}

# stable V0: v0.N.0 -> v1.(N-94).0 (core versions.yaml pairs them).
stable() {
	local n="${1#v0.}"
	n="${n%%.*}"
	echo "v1.$((n - 94)).0"
}

check_config() {
	local v bad
	v="$(pinned)"
	[[ -n "$v" ]] || die "no exporterhelper version in $EXPMOD/go.mod"
	bad="$(grep -E 'go.opentelemetry.io/collector/[^ ]+ v[0-9]' "$CONFIG" | grep -v " $v\$" || true)"
	[[ -z "$bad" ]] || die "$CONFIG is not at the pinned collector version $v (run scripts/otelcol.sh bump $v):
$bad"
}

install_ocb() {
	local v="$1" gobin
	OCB="$TOOLS/bin/ocb"
	if [[ -x "$OCB" && "$(cat "$OCB.version" 2>/dev/null)" == "$v" ]]; then
		return
	fi
	log "installing the collector builder (ocb) $v into $OCB (first run only)"
	mkdir -p "$TOOLS/bin"
	gobin="$(mktemp -d)"
	GOBIN="$gobin" go install "go.opentelemetry.io/collector/cmd/builder@$v" || die "could not install ocb $v"
	mv "$gobin/builder" "$OCB"
	rm -rf "$gobin"
	echo "$v" >"$OCB.version"
}

# install_telemetrygen: $TG, telemetrygen at TELEMETRYGEN_VERSION, installed
# once into the tool cache (shared with scripts/compare.sh).
install_telemetrygen() {
	TG="$TOOLS/bin/telemetrygen"
	mkdir -p "$TOOLS/bin"
	exec 9>"$TOOLS/bin/telemetrygen.lock"
	flock 9
	if [[ -x "$TG" && "$(cat "$TG.version" 2>/dev/null)" == "$TELEMETRYGEN_VERSION" ]]; then
		return
	fi
	log "installing telemetrygen $TELEMETRYGEN_VERSION into $TG (first run only)"
	mkdir -p "$TOOLS/bin"
	GOBIN="$TOOLS/bin" go install "github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen@$TELEMETRYGEN_VERSION" >&2 ||
		die "could not install telemetrygen $TELEMETRYGEN_VERSION"
	echo "$TELEMETRYGEN_VERSION" >"$TG.version"
}

# stamp: what the binary was built from.
stamp() {
	{
		cat "$CONFIG"
		git ls-files -co --exclude-standard -- '*.go' go.mod go.sum "$EXPMOD" |
			grep -v '_test\.go$' | sort | xargs cat
	} | sha256sum | cut -c1-16
}

build() {
	check_config
	local v want
	# One build at a time per checkout (make otelcol beside make test's
	# first-use build would both write otelcol-bucketq/_build).
	mkdir -p "$ROOT/.cache"
	exec 8>"$ROOT/.cache/otelcol-build.lock"
	flock 8
	v="$(pinned)"
	want="$v $(stamp)"
	if [[ -x "$BIN" && "$(cat "$BIN.stamp" 2>/dev/null)" == "$want" ]]; then
		return
	fi
	install_ocb "$v"
	log "building $BIN with ocb $v (several minutes of CPU the first time)"
	# ocb only writes the sources; go build compiles them WITHOUT ocb's
	# -trimpath, so the compiled packages (grpc, pdata, the object-store
	# SDKs, bucketq's own) are shared through the Go build cache with
	# `go test` of both modules (a -trimpath build cannot reuse them).
	"$OCB" --config "$CONFIG" --skip-compilation >&2 || die "ocb failed"
	mkdir -p "$(dirname "$BIN")"
	(cd otelcol-bucketq/_build && go build -ldflags='-s -w' -o "$BIN.tmp" .) >&2 || die "go build of the distribution failed"
	mv "$BIN.tmp" "$BIN"
	echo "$want" >"$BIN.stamp"
}

bump() {
	local v="$1" s
	[[ "$v" =~ ^v0\.[0-9]+\.[0-9]+$ ]] || die "want a collector release such as v0.163.0, got '$v'"
	s="$(stable "$v")"
	log "bumping the collector to $v / $s"
	sed -E -i "s#(go.opentelemetry.io/collector/[^ ]+) v0\.[0-9]+\.[0-9]+#\1 $v#" "$CONFIG"
	(
		cd "$EXPMOD"
		sed -E -i -e "s#(go.opentelemetry.io/collector/[^ ]+) v0\.[0-9]+\.[0-9]+#\1 $v#" \
			-e "s#(go.opentelemetry.io/collector/[^ ]+) v1\.[0-9]+\.[0-9]+#\1 $s#" go.mod
		go mod tidy
	)
	check_config
	log "done; run make otelcol and make test"
}

smoke() {
	build
	local work tg bq port pid i n
	work="$ROOT/.cache/otelcol-smoke"
	rm -rf "$work"
	mkdir -p "$work/bucket" "$TOOLS/bin"
	install_telemetrygen
	tg="$TG"
	bq="$work/bucketq"
	go build -o "$bq" ./cmd/bucketq
	port=$((20000 + RANDOM % 12000))
	cat >"$work/otelcol.yaml" <<YAML
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:$port
processors:
  memory_limiter:
    check_interval: 1s
    limit_percentage: 80
    spike_limit_percentage: 20
exporters:
  bucketq:
    bucket_dir: $work/bucket
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    logs:
      receivers: [otlp]
      processors: [memory_limiter]
      exporters: [bucketq]
YAML
	"$BIN" --config "$work/otelcol.yaml" >"$work/otelcol.log" 2>&1 &
	pid=$!
	trap 'kill -TERM '"$pid"' 2>/dev/null || true' EXIT
	for i in $(seq 1 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
		kill -0 "$pid" 2>/dev/null || { cat "$work/otelcol.log" >&2; die "the collector exited at start"; }
		sleep 0.1
	done
	log "telemetrygen: 1000 logs in 10 per request, 4 workers"
	"$tg" logs --otlp-endpoint "127.0.0.1:$port" --otlp-insecure --workers 4 --logs 250 --rate 0 --batch=true --batch-size 10 \
		--telemetry-attributes 'subject="customer-1"' >"$work/telemetrygen.log" 2>&1 ||
		{ tail -20 "$work/telemetrygen.log" >&2; die "telemetrygen failed"; }
	kill -TERM "$pid"
	wait "$pid" || { tail -20 "$work/otelcol.log" >&2; die "the collector did not stop cleanly"; }
	trap - EXIT
	"$bq" inspect manifest --bucket-dir "$work/bucket" | tee "$work/inspect.txt"
	n="$(grep -c 'otlp-protobuf' "$work/inspect.txt" || true)"
	[[ "$n" -gt 0 ]] || die "no OTLP entries in the manifest (see $work)"
	log "ok: $n manifest entries with OTLP logs"
}

e2e() {
	build
	install_telemetrygen
	BUCKETQ_OTELCOL_BIN="$BIN" BUCKETQ_TELEMETRYGEN_BIN="$TG" ./scripts/with-services.sh go test -count=1 -v -run . ./internal/otelcole2e
}

case "${1:-}" in
build) build ;;
e2e) e2e ;;
path) build; echo "$BIN" ;;
telemetrygen) install_telemetrygen; echo "$TG" ;;
smoke) smoke ;;
bump) [[ $# -eq 2 ]] || die "usage: $0 bump v0.N.0"; bump "$2" ;;
*) die "usage: $0 build|path|telemetrygen|smoke|e2e|bump VERSION" ;;
esac
