#!/usr/bin/env bash
# tool.sh NAME [ARGS...] — run a pinned checking tool, installing it once per
# machine into the tool cache ($BUCKETQ_TOOLS_DIR, ~/.cache/bucketq-tools)
# from a registry the project's machines reach (no binary download):
#
#   helm      v4.3.2, built from its Go module (helm.sh/helm/v4), stripped.
#             Cold (empty Go caches, 2 cores): several minutes.
#   promtool  2.42.0, extracted from Debian's `prometheus` package with
#             `apt-get download` + `dpkg-deb` (no root, no daemon, no
#             postinst): seconds. Without apt-get, built from the Prometheus
#             Go module (v0.316.0, -tags remove_all_sd): 10+ minutes.
#   wrk       4.1.0, the HTTP load generator issue 10's figures were first
#             taken with (scripts/wrk-matrix.sh), from Debian's `wrk` and
#             `libluajit-5.1-2` packages the same way; run through a wrapper
#             that points the loader at the extracted library: seconds.
#             Needs apt-get (no Go build of it exists).
#
#   tool.sh --install-only NAME   install NAME if missing; print its path
#   tool.sh --installed NAME      print NAME's path if installed, else exit 1
#                                 (what the tests call: they never install)
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="${BUCKETQ_TOOLS_DIR:-$HOME/.cache/bucketq-tools}"
GO="${GO:-go}"
HELM_VERSION=v4.3.2
PROMTOOL_DEB=2.42.0         # Debian bookworm's prometheus; supports our rule files
PROMTOOL_MOD=v0.316.0       # Prometheus 3.x module, where apt-get is missing
WRK_DEB=4.1.0               # Debian bookworm's wrk
LUAJIT_DEB=2.1.0            # and the libluajit-5.1-2 it links

log() { echo "tool.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

mode=run
case "${1:-}" in
--install-only) mode=install; shift ;;
--installed) mode=installed; shift ;;
esac
name="${1:-}"
[ -n "$name" ] || die "usage: tool.sh [--install-only|--installed] helm|promtool|wrk [ARGS...]"
shift

# go_install DIR PKG@VERSION [GO FLAGS...]: build into DIR (atomically: a
# killed build leaves no half binary).
go_install() {
	local dir="$1" pkg="$2"
	shift 2
	log "building $pkg into $dir (once per machine; minutes)"
	local tmp
	tmp="$(mktemp -d "$TOOLS/.build.XXXXXX")"
	GOBIN="$tmp" "$GO" install -ldflags='-s -w' "$@" "$pkg" || { rm -rf "$tmp"; die "go install $pkg failed"; }
	mkdir -p "$dir"
	mv "$tmp"/* "$dir"/
	rmdir "$tmp"
}

# deb_extract DIR PACKAGE VERSION_PREFIX FILE: apt-get download PACKAGE and
# copy FILE out of it into DIR, after checking the version.
deb_extract() {
	local dir="$1" pkg="$2" want="$3" file="$4"
	local tmp
	tmp="$(mktemp -d "$TOOLS/.deb.XXXXXX")"
	log "downloading Debian package $pkg $want (for $(basename "$file"))"
	if ! (cd "$tmp" && apt-get download "$pkg" >/dev/null 2>"$tmp/apt.log"); then
		# A clean machine may have no package lists yet.
		if [ "$(id -u)" = 0 ]; then
			apt-get update -qq >/dev/null 2>&1 || true
		fi
		(cd "$tmp" && apt-get download "$pkg" >/dev/null 2>"$tmp/apt.log") || { cat "$tmp/apt.log" >&2; rm -rf "$tmp"; die "apt-get download $pkg failed"; }
	fi
	local deb
	deb="$(ls "$tmp"/"${pkg}"_*.deb)"
	local ver
	ver="$(dpkg-deb -f "$deb" Version)"
	case "$ver" in
	"$want"*) ;;
	*) rm -rf "$tmp"; die "Debian $pkg is $ver, want $want (update the pinned version in tool.sh after checking the tool with it)" ;;
	esac
	# FILE may be a symlink to a versioned file (a shared library): take
	# both, and keep the link.
	dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" --wildcards ".$file*"
	mkdir -p "$dir"
	mv "$tmp$file"* "$dir/"
	rm -rf "$tmp"
}

case "$name" in
helm)
	BIN="$TOOLS/helm-$HELM_VERSION/helm"
	install() { go_install "$(dirname "$BIN")" "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"; }
	;;
promtool)
	if command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null; then
		BIN="$TOOLS/promtool-deb-$PROMTOOL_DEB/promtool"
		install() { deb_extract "$(dirname "$BIN")" prometheus "$PROMTOOL_DEB" /usr/bin/promtool; }
	else
		BIN="$TOOLS/promtool-$PROMTOOL_MOD/promtool"
		# remove_all_sd: leave out the service-discovery plugins promtool
		# does not need to check rules.
		install() { go_install "$(dirname "$BIN")" "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_MOD" -tags remove_all_sd; }
	fi
	;;
wrk)
	command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || die "wrk is installed from Debian's packages: apt-get and dpkg-deb are needed"
	BIN="$TOOLS/wrk-deb-$WRK_DEB/wrk"
	install() {
		local dir
		dir="$(dirname "$BIN")"
		deb_extract "$dir/lib" libluajit-5.1-2 "$LUAJIT_DEB" /usr/lib/x86_64-linux-gnu/libluajit-5.1.so.2
		deb_extract "$dir/lib" wrk "$WRK_DEB" /usr/bin/wrk
		printf '#!/bin/sh\nexec env LD_LIBRARY_PATH="$(dirname "$0")/lib" "$(dirname "$0")/lib/wrk" "$@"\n' > "$BIN.tmp"
		chmod +x "$BIN.tmp"
		mv "$BIN.tmp" "$BIN"
	}
	;;
*) die "unknown tool $name (helm, promtool, wrk)" ;;
esac

if [ "$mode" = installed ]; then
	[ -x "$BIN" ] || exit 1
	echo "$BIN"
	exit 0
fi
if [ ! -x "$BIN" ]; then
	mkdir -p "$TOOLS"
	install
fi
if [ "$mode" = install ]; then
	echo "$BIN"
	exit 0
fi
exec "$BIN" "$@"
