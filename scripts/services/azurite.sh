#!/usr/bin/env bash
# scripts/services/azurite.sh up|down|env — a local Azure Blob emulator for tests.
#
# Runs Azurite's blob service (MIT) with node on 127.0.0.1, on a free port,
# data under STATE/azurite-data, log in STATE/azurite.log, where STATE is
# $BUCKETQ_SERVICE_STATE (with-services.sh sets a fresh one per run) or
# .cache. Azurite is installed once with npm into .cache/azurite.
# `up` creates the container and writes STATE/env/azurite.env with
# BUCKETQ_TEST_AZURE_ENDPOINT (blob service URL incl. the account),
# _ACCOUNT, _KEY (Azurite's well-known dev account) and _CONTAINER; `down`
# stops it and removes its data; `env` prints the env file.
#
# Azurite enforces If-Match (412) and If-None-Match: * (409) on Put Blob;
# manifest/cas/azurestore's TestEmulatorEnforcesPreconditions fails if a new
# version stops doing so. 3.35.0 is the newest release that supports node 20
# (3.36 wants node >= 21, 3.37 node >= 22).
set -euo pipefail

AZURITE_VERSION="${AZURITE_VERSION:-3.35.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="$ROOT/.cache"
# Installed tools live outside the checkout (BUCKETQ_TOOLS_DIR, set by the
# Makefile) so a fresh clone on the same machine reuses them.
TOOLS="${BUCKETQ_TOOLS_DIR:-$CACHE}"
PREFIX="$TOOLS/azurite"
BIN="$PREFIX/node_modules/.bin/azurite-blob"
STATE="${BUCKETQ_SERVICE_STATE:-$CACHE}"
DATA="$STATE/azurite-data"
PIDFILE="$STATE/azurite.pid"
LOG="$STATE/azurite.log"
ENVFILE="$STATE/env/azurite.env"
ACCOUNT="devstoreaccount1"
KEY="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
CONTAINER="bucketq-test"

log() { echo "azurite.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

install() {
	command -v node >/dev/null || die "node is not installed (Azurite needs it)"
	local pkg="$PREFIX/node_modules/azurite/package.json"
	if [[ -x "$BIN" && -f "$pkg" ]] && grep -q "\"version\": \"$AZURITE_VERSION\"" "$pkg"; then
		return 0
	fi
	command -v npm >/dev/null || die "npm is not installed"
	log "installing azurite $AZURITE_VERSION into $PREFIX (first run only, ~2 min)"
	local start=$SECONDS
	for attempt in 1 2; do
		if timeout 600 npm install --prefix "$PREFIX" "azurite@$AZURITE_VERSION" \
			--no-audit --no-fund --no-save --loglevel=error; then
			log "installed in $((SECONDS - start))s"
			return 0
		fi
		log "npm install azurite failed (attempt $attempt)"
	done
	die "could not install azurite $AZURITE_VERSION"
}

running() { [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
	local p
	for _ in $(seq 1 50); do
		p=$((20000 + RANDOM % 30000))
		if port_free "$p"; then echo "$p"; return 0; fi
	done
	die "no free port found"
}

# create_container URL: a Shared Key signed Create Container request (node
# is there anyway; curl cannot sign it). Prints the HTTP status; 201 or 409
# (already exists) are fine.
create_container() {
	ACCOUNT="$ACCOUNT" KEY="$KEY" CONTAINER="$CONTAINER" SERVICE="$1" node -e '
const crypto = require("crypto"), http = require("http");
const {ACCOUNT, KEY, CONTAINER, SERVICE} = process.env;
const u = new URL(SERVICE + "/" + CONTAINER + "?restype=container");
const date = new Date().toUTCString(), version = "2021-12-02";
const toSign = ["PUT", "", "", "", "", "", "", "", "", "", "", "",
  "x-ms-date:" + date, "x-ms-version:" + version,
  "/" + ACCOUNT + u.pathname, "restype:container"].join("\n");
const sig = crypto.createHmac("sha256", Buffer.from(KEY, "base64")).update(toSign, "utf8").digest("base64");
const req = http.request(u, {method: "PUT", timeout: 5000, headers: {
  "x-ms-date": date, "x-ms-version": version, "Content-Length": 0,
  "Authorization": "SharedKey " + ACCOUNT + ":" + sig}}, (res) => {
  let body = ""; res.on("data", (d) => body += d);
  res.on("end", () => { console.log(res.statusCode); if (res.statusCode >= 300 && res.statusCode != 409) console.error(body); });
});
req.on("error", (e) => { console.error(e.message); console.log("000"); });
req.on("timeout", () => req.destroy(new Error("timeout")));
req.end();'
}

up() {
	install
	if running && [[ -f "$ENVFILE" ]]; then
		log "already running (pid $(cat "$PIDFILE")); env in $ENVFILE"
		return 0
	fi
	rm -rf "$DATA"
	mkdir -p "$DATA" "$(dirname "$ENVFILE")"
	local port url code=000
	port="$(free_port)"
	url="http://127.0.0.1:$port/$ACCOUNT"
	nohup "$BIN" --blobHost 127.0.0.1 --blobPort "$port" --location "$DATA" \
		--skipApiVersionCheck --disableProductStyleUrl --silent \
		>"$LOG" 2>&1 </dev/null &
	echo $! >"$PIDFILE"
	for _ in $(seq 1 150); do
		if ! running; then
			cat "$LOG" >&2 || true
			die "azurite exited at start (log above, $LOG)"
		fi
		# Any HTTP answer (403 for an unsigned request) means it is serving.
		code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url?comp=list" || true)"
		[[ "$code" != "000" ]] && break
		sleep 0.1
	done
	[[ "$code" != "000" ]] || { down; die "azurite did not answer on $url within 15s (log: $LOG)"; }
	code="$(create_container "$url")"
	[[ "$code" == "201" || "$code" == "409" ]] || { down; die "creating container $CONTAINER answered HTTP $code, want 201 (log: $LOG)"; }
	cat >"$ENVFILE" <<ENV
export BUCKETQ_TEST_AZURE_ENDPOINT=$url
export BUCKETQ_TEST_AZURE_ACCOUNT=$ACCOUNT
export BUCKETQ_TEST_AZURE_KEY=$KEY
export BUCKETQ_TEST_AZURE_CONTAINER=$CONTAINER
ENV
	log "azurite $AZURITE_VERSION serving $url (container $CONTAINER, pid $(cat "$PIDFILE")); env in $ENVFILE"
}

down() {
	if running; then
		local pid
		pid="$(cat "$PIDFILE")"
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null || true
		log "stopped azurite (pid $pid)"
	fi
	rm -f "$PIDFILE" "$ENVFILE"
	rm -rf "$DATA"
}

case "${1:-}" in
up) up ;;
down) down ;;
env) [[ -f "$ENVFILE" ]] && cat "$ENVFILE" || die "not running (no $ENVFILE); run: $0 up" ;;
*) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac
