#!/usr/bin/env bash
# Contract test of the live API against its own /openapi.json with schemathesis (pinned below):
# starts a private cluster under a temporary FINTRAIL_HOME and the server, issues a staff admin
# token, runs every check, and fails on any 5xx or any response that violates the schema.
#
# Usage: crates/api/schemathesis.sh [BIN [EXTRA_SCHEMATHESIS_ARGS...]]
#   BIN  a binary with `serve --listen ADDR`, `token create --role admin`, `db stop` (the
#        `fintrail` binary, built in release when BIN is omitted).
# Bounded: ~2 minutes (--max-examples per operation, a wall-clock timeout).
set -euo pipefail

SCHEMATHESIS_VERSION="4.32.5"
MAX_EXAMPLES="${MAX_EXAMPLES:-25}"
TIMEOUT_S="${TIMEOUT_S:-240}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

if ! python3 -m schemathesis.cli --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  python3 -m pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

BIN="${1:-}"
if [ -z "$BIN" ]; then
  (cd "$ROOT" && cargo build --release -p fintrail)
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/fintrail"
fi

export FINTRAIL_HOME
FINTRAIL_HOME="$(mktemp -d /tmp/fintrail-schemathesis.XXXXXX)"
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  "$BIN" db stop >/dev/null 2>&1 || true
  rm -rf "$FINTRAIL_HOME"
}
trap cleanup EXIT

# Migrate + start the cluster once (token create does both), then serve.
TOKEN="$("$BIN" token create --role admin --ttl 1h --label schemathesis)"
"$BIN" seed >/dev/null 2>&1 || true  # demo data when the binary has it (ids that exist)
"$BIN" serve --listen "127.0.0.1:$PORT" --checkpoint-interval-secs 0 >"$FINTRAIL_HOME/serve.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then break; fi
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null

# Integer literals only in bodies (issue 16 item 11): the hook sends integers as the document's
# words say, which JSON Schema 2020-12 cannot (see the hook's docstring).
export SCHEMATHESIS_HOOKS="$ROOT/crates/api/schemathesis_hooks.py"
timeout "$TIMEOUT_S" python3 -m schemathesis.cli run "http://127.0.0.1:$PORT/openapi.json" \
  --checks all \
  --header "Authorization: Bearer $TOKEN" \
  --max-examples "$MAX_EXAMPLES" \
  --request-timeout 10 \
  --seed 1 \
  "${@:2}"
echo "schemathesis: no 5xx, no schema violation"
