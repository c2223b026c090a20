#!/usr/bin/env bash
# fuzz.sh [DURATION] — run every Go fuzz target in the repository, one after
# the other, each for DURATION (default 5s; anything `go test -fuzztime`
# accepts, e.g. 30s or 10000x). Stops at the first failing target; the
# failing input is left in <pkg>/testdata/fuzz/<FuzzName>/ by `go test`.
#
# Targets are found by grepping *_test.go files for `func FuzzXxx(`, so a new
# target is picked up without editing this script.
set -euo pipefail

duration="${1:-5s}"
GO="${GO:-go}"
cd "$(dirname "$0")/.."

mapfile -t targets < <(
	grep -rEo --include='*_test.go' \
		--exclude-dir=.git --exclude-dir=.cache --exclude-dir=vendor --exclude-dir=node_modules \
		'^func Fuzz[A-Za-z0-9_]*\(' . |
		sed -E 's#^(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]*)\($#\1 \2#' |
		sort -u
)

if [ "${#targets[@]}" -eq 0 ]; then
	echo "fuzz.sh: no fuzz targets found (looked for 'func FuzzXxx(' in *_test.go)" >&2
	exit 1
fi

echo "fuzz.sh: ${#targets[@]} targets, ${duration} each"
passed=()
for t in "${targets[@]}"; do
	pkg="${t% *}"
	name="${t#* }"
	echo "=== fuzz ${name} in ${pkg} for ${duration}"
	if ! "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$duration" "$pkg"; then
		echo "FAIL: fuzz target ${name} in ${pkg} (failing input, if any, is in ${pkg#./}/testdata/fuzz/${name}/)" >&2
		exit 1
	fi
	passed+=("${pkg}.${name}")
done
echo "fuzz.sh: all ${#passed[@]} targets passed: ${passed[*]}"
