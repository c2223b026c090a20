#!/usr/bin/env bash
# scripts/services/azurite.sh up|down|env — a local Azure Blob emulator for tests.
#
# Runs Azurite's blob service (MIT) with node on 127.0.0.1, on a free port,
# data under STATE/azurite-data, log in STATE/azurite.log, where STATE is
# $BUCKETQ_SERVICE_STATE (with-services.sh sets a fresh one per run) or
# .cache. Azurite is installed once with npm into $BUCKETQ_TOOLS_DIR/azurite.
# `up` creates the container and writes STATE/env/azurite.env with
# BUCKETQ_TEST_AZURE_ENDPOINT (blob service URL incl. the account),
# _ACCOUNT, _KEY (Azurite's well-known dev account) and _CONTAINER; `down`
# stops it and removes its data; `env` prints the env file. The shared
# service logic is in scripts/lib/service.sh.
#
# Azurite enforces If-Match (412) and If-None-Match: * (409) on Put Blob;
# manifest/cas/azurestore's TestEmulatorEnforcesPreconditions fails if a new
# version stops doing so. 3.35.0 is the newest release that supports node 20
# (3.36 wants node >= 21, 3.37 node >= 22).
set -euo pipefail

SERVICE=azurite PROG=azurite PROG_VERSION="${AZURITE_VERSION:-3.35.0}"
# shellcheck source=../lib/service.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/service.sh"

PREFIX="$TOOLS/azurite"
BIN="$PREFIX/node_modules/.bin/azurite-blob"
ACCOUNT="devstoreaccount1"
KEY="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
CONTAINER="bucketq-test"

install() {
	command -v node >/dev/null || die "node is not installed (Azurite needs it)"
	local pkg="$PREFIX/node_modules/azurite/package.json"
	if [[ -x "$BIN" && -f "$pkg" ]] && grep -q "\"version\": \"$PROG_VERSION\"" "$pkg"; then
		return 0
	fi
	command -v npm >/dev/null || die "npm is not installed"
	log "installing azurite $PROG_VERSION into $PREFIX (first run only, ~2 min)"
	local start=$SECONDS
	retry_install "npm install azurite" npm install --prefix "$PREFIX" "azurite@$PROG_VERSION" \
		--no-audit --no-fund --no-save --loglevel=error ||
		die "could not install azurite $PROG_VERSION"
	log "installed in $((SECONDS - start))s"
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
	already_up && return 0
	fresh_state
	local port url code
	port="$(free_port)"
	url="http://127.0.0.1:$port/$ACCOUNT"
	start_bg "$BIN" --blobHost 127.0.0.1 --blobPort "$port" --location "$DATA" \
		--skipApiVersionCheck --disableProductStyleUrl --silent
	# Any HTTP answer (403 for an unsigned request) means it is serving.
	wait_http 15 any "$url" '?comp=list'
	code="$(create_container "$url")"
	[[ "$code" == "201" || "$code" == "409" ]] || { down; die "creating container $CONTAINER answered HTTP $code, want 201 (log: $LOG)"; }
	write_env "$url" "container $CONTAINER" <<ENV
export BUCKETQ_TEST_AZURE_ENDPOINT=$url
export BUCKETQ_TEST_AZURE_ACCOUNT=$ACCOUNT
export BUCKETQ_TEST_AZURE_KEY=$KEY
export BUCKETQ_TEST_AZURE_CONTAINER=$CONTAINER
ENV
}

service_main "$@"
