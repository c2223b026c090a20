#!/usr/bin/env bash
# staticcheck.sh [PKGS...] — run staticcheck (installed once per machine into
# the tool cache, pinned) on PKGS (default ./...). Part of `make lint`.
# PKGS are relative to the repository root, or to STATICCHECK_DIR (a nested
# module such as exporter/bucketqexporter) when set.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=v0.8.2 # staticcheck 2026.2.2
TOOLS="${BUCKETQ_TOOLS_DIR:-$HOME/.cache/bucketq-tools}"
BIN="$TOOLS/staticcheck-$VERSION/staticcheck"
if [ ! -x "$BIN" ]; then
	echo "staticcheck.sh: installing staticcheck $VERSION into $(dirname "$BIN")" >&2
	mkdir -p "$(dirname "$BIN")"
	GOBIN="$(dirname "$BIN")" "${GO:-go}" install "honnef.co/go/tools/cmd/staticcheck@$VERSION"
fi
if [ $# -eq 0 ]; then set -- ./...; fi
cd "${STATICCHECK_DIR:-.}"
exec "$BIN" "$@"
