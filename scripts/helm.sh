#!/usr/bin/env bash
# helm.sh [ARGS...] — run helm (pinned, built once per machine from its Go
# module into the tool cache: no binary download) with ARGS. The first run
# builds it: about 8 minutes on 2 cores with a cold module cache.
#   scripts/helm.sh --install-only   install and print the binary's path
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=v4.3.2
TOOLS="${BUCKETQ_TOOLS_DIR:-$HOME/.cache/bucketq-tools}"
BIN="$TOOLS/helm-$VERSION/helm"
if [ ! -x "$BIN" ]; then
	echo "helm.sh: building helm $VERSION into $(dirname "$BIN") (once per machine; minutes)" >&2
	mkdir -p "$(dirname "$BIN")"
	GOBIN="$(dirname "$BIN")" "${GO:-go}" install "helm.sh/helm/v4/cmd/helm@$VERSION"
fi
if [ "${1:-}" = "--install-only" ]; then
	echo "$BIN"
	exit 0
fi
exec "$BIN" "$@"
