#!/usr/bin/env bash
# Throughput of mock-upstream on ONE core: the mock pinned to CPU $MOCK_CPU with one
# runtime thread, wrk pinned to CPU $WRK_CPU, keep-alive, default knobs (16 tokens).
# Prints wrk's figures for non-streaming answers, then for streaming answers.
#
# Usage: bench/mock.sh   (env: DURATION=10s CONNS=64 MOCK_CPU=0 WRK_CPU=1, and
#        MOCK_BENCH_HEADERS="x-mock-token-delay-ms: 5" to send knob headers)
# Needs: wrk (Debian package `wrk`), taskset (util-linux), curl.
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
MOCK_CPU=${MOCK_CPU:-0}
WRK_CPU=${WRK_CPU:-1}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}

source bench/lib.sh
need_tools wrk taskset curl

cargo build --release -p mock-upstream >&2
bin="$CARGO_TARGET_DIR/release/mock-upstream"

log=$(mktemp)
taskset -c "$MOCK_CPU" "$bin" --listen 127.0.0.1:0 --threads 1 >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$log"' EXIT

addr=$(wait_addr "$log" "$pid")
url="http://$addr/v1/chat/completions"

# Sanity check: one real answer before measuring.
curl -fsS "$url" -H 'content-type: application/json' \
    -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}' | grep -q '"completion_tokens":16' \
    || { echo "Error: unexpected answer from $url" >&2; exit 1; }

echo "== mock-upstream on CPU $MOCK_CPU (--threads 1), wrk on CPU $WRK_CPU: $CONNS connections, $DURATION, keep-alive"
echo "== non-streaming POST /v1/chat/completions (16 tokens)"
taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" --latency -s bench/mock-post.lua "http://$addr"
echo
echo "== streaming POST /v1/chat/completions (16 tokens, include_usage, no delays)"
MOCK_BENCH_STREAM=1 taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" --latency -s bench/mock-post.lua "http://$addr"
echo
echo "== mock metrics after the run"
curl -fsS "http://$addr/metrics" | grep -E '^mock_(requests_total|in_flight)'
