#!/usr/bin/env bash
# The load generator's own speed: mock-upstream pinned to CPU $MOCK_CPU (one runtime
# thread), then, against its non-streaming endpoint with the same connections and duration,
# first wrk and then `orchestrator load --threads 1`, both pinned to CPU $GEN_CPU.
# Prints both requests/s and the ratio (target: orchestrator >= 50,000/s and >= 85% of wrk).
# Then `loadbench` compares hyper's client::conn::http1 with the generator's own HTTP/1.1
# client on one current-thread runtime (why the generator does not use hyper's client).
#
# Usage: bench/loadgen.sh     (env: DURATION=10s CONNS=64 MOCK_CPU=0 GEN_CPU=1)
# Needs: wrk (Debian package `wrk`), taskset (util-linux), curl.
# Figures are only meaningful on an otherwise idle machine.
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
MOCK_CPU=${MOCK_CPU:-0}
GEN_CPU=${GEN_CPU:-1}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}

source bench/lib.sh
need_tools wrk taskset curl

cargo build --release -p mock-upstream -p orchestrator >&2
mock="$CARGO_TARGET_DIR/release/mock-upstream"
orch="$CARGO_TARGET_DIR/release/orchestrator"
loadbench=$(cargo bench -p orchestrator --bench loadbench --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -n1)
[ -x "$loadbench" ] || { echo "Error: could not build the loadbench benchmark" >&2; exit 1; }

tmp=$(mktemp -d)
taskset -c "$MOCK_CPU" "$mock" --listen 127.0.0.1:0 --threads 1 >"$tmp/mock.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT

addr=$(wait_addr "$tmp/mock.log" "$pid")

# The exact body `orchestrator load` sends by default, so both tools ask for the same thing.
body='{"max_tokens":16,"messages":[{"content":"Say hello.","role":"user"}],"model":"gpt-4o-mini","stream":false}'
cat >"$tmp/post.lua" <<LUA
wrk.method = "POST"
wrk.path = "/v1/chat/completions"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-lab-key"
wrk.body = '$body'
LUA
curl -fsS "http://$addr/v1/chat/completions" -H 'content-type: application/json' -d "$body" | grep -q '"choices"' \
    || { echo "Error: unexpected answer from mock-upstream" >&2; exit 1; }

echo "== mock-upstream on CPU $MOCK_CPU (--threads 1); generators on CPU $GEN_CPU; $CONNS connections, $DURATION"
echo "== wrk -t1 -c$CONNS"
taskset -c "$GEN_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" --latency -s "$tmp/post.lua" "http://$addr" | tee "$tmp/wrk.txt"
wrk_rps=$(awk '/^Requests\/sec:/ {print $2}' "$tmp/wrk.txt")

echo
echo "== orchestrator load --threads 1 --vus $CONNS"
taskset -c "$GEN_CPU" "$orch" load --url "http://$addr" --vus "$CONNS" --duration "$DURATION" \
    --threads 1 --api-key sk-lab-key --json "$tmp/load.json" | tee "$tmp/load.txt"
orch_rps=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["phases"][0]["throughput"]["requests_per_s"])' "$tmp/load.json")
errors=$(python3 -c 'import json,sys; p=json.load(open(sys.argv[1]))["phases"][0]["requests"]; print(p["total"]-p["ok"])' "$tmp/load.json")

echo
printf '== requests/s: wrk %.0f, orchestrator load %.0f, ratio %.3f (orchestrator errors: %s)\n' \
    "$wrk_rps" "$orch_rps" "$(python3 -c "print($orch_rps / $wrk_rps)")" "$errors"

echo
echo "== loadbench: hyper client::conn::http1 vs the generator's client, $CONNS connections, one thread"
secs=$(python3 -c "import re,sys; d=sys.argv[1]; m=re.fullmatch(r'([0-9.]+)(ms|s|m)?', d); print(float(m.group(1)) * {'ms': 0.001, 's': 1, 'm': 60, None: 1}[m.group(2)])" "$DURATION")
taskset -c "$GEN_CPU" "$loadbench" --url "http://$addr" --conns "$CONNS" --secs "$secs"
