#!/usr/bin/env bash
# promtool.sh [ARGS...] — run promtool (pinned, built once per machine from
# the Prometheus Go module into the tool cache: no binary download) with ARGS.
# The first run builds it: 10-20 minutes on 2 cores with a cold module cache.
#   scripts/promtool.sh --install-only   install and print the binary's path
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=v0.316.0 # Prometheus 3.x module version
TOOLS="${BUCKETQ_TOOLS_DIR:-$HOME/.cache/bucketq-tools}"
BIN="$TOOLS/promtool-$VERSION/promtool"
if [ ! -x "$BIN" ]; then
	echo "promtool.sh: building promtool $VERSION into $(dirname "$BIN") (once per machine; minutes)" >&2
	mkdir -p "$(dirname "$BIN")"
	GOBIN="$(dirname "$BIN")" "${GO:-go}" install "github.com/prometheus/prometheus/cmd/promtool@$VERSION"
fi
if [ "${1:-}" = "--install-only" ]; then
	echo "$BIN"
	exit 0
fi
exec "$BIN" "$@"
