#!/usr/bin/env bash
# A/B of two gateway binaries in bench/gateway.sh's rig: mock-upstream (and wrk) on one
# core, both gateways pinned to the other, measured in alternating rounds so that the
# machine's drift hits both alike. Per round: wrk -c$CONNS req/s and the gateway's CPU
# per request (from /proc/PID/stat); then one c1 latency run timing direct, A and B in
# the same rounds. Prints each round and the median and range of B/A.
#
# Usage: bench/gateway-ab.sh A_BIN B_BIN
#   (env: ROUNDS=5 DURATION=5s CONNS=64 MODEL=gpt-4o-mini KEY_NAME=plain|limited
#    LAT_REQUESTS=20000 MOCK_CPU=0 GW_CPU=1)
# Builds mock-upstream and the latency example; A and B are built by the caller (e.g.
# copies of target/release/gateway from two commits).
set -euo pipefail
self=$(realpath "$0")
cd "$(dirname "$self")/.."
[ $# -eq 2 ] || { echo "usage: $0 A_BIN B_BIN" >&2; exit 2; }
a_bin=$(realpath "$1")
b_bin=$(realpath "$2")
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-64}
MODEL=${MODEL:-gpt-4o-mini}
MOCK_CPU=${MOCK_CPU:-0}
GW_CPU=${GW_CPU:-1}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
source "$(dirname "$self")/lib.sh"
need_tools wrk taskset curl
ulimit -n 16384 2>/dev/null || true

cargo build --release -p mock-upstream >&2
cargo build --release -p gateway --example latency >&2
bin="$CARGO_TARGET_DIR/release"
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

taskset -c "$MOCK_CPU" "$bin/mock-upstream" --listen 127.0.0.1:0 --threads 1 >"$work/mock.log" 2>&1 &
pids+=("$!")
mock=$(wait_addr "$work/mock.log" "$!")
cat >"$work/gateway.yaml" <<EOF
listen: 127.0.0.1:0
threads: 1
api_keys: [sk-lab-key]
keys: [{name: team-a, key: sk-limited, rpm: 1000000000, tpm: 1000000000000}]
limits: {max_body_bytes: 1048576, upstream_timeout_ms: 120000}
forward_headers: [x-mock-]
providers:
  mock: {type: openai, base_url: "http://$mock/v1"}
models:
  - {name: gpt-4o-mini, provider: mock}
  - {name: resilient, routing: latency, retries: 2, deployments: [{provider: mock}, {provider: mock}]}
EOF
key=sk-lab-key
[ "${KEY_NAME:-plain}" = limited ] && key=sk-limited
declare -A pid addr
for v in a b; do
    bin_v=${v}_bin
    taskset -c "$GW_CPU" "${!bin_v}" --config "$work/gateway.yaml" >"$work/$v.log" 2>&1 &
    pid[$v]=$!
    pids+=("$!")
    addr[$v]=$(wait_addr "$work/$v.log" "$!")
done
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
# run V I -> "RPS CPU_US" of one wrk run against gateway V
run() {
    local t0 out n
    t0=$(ticks "${pid[$1]}")
    out=$(env GW_KEY=$key GW_MODEL="$MODEL" taskset -c "$MOCK_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" \
        --timeout 30s -s bench/gateway-post.lua "http://${addr[$1]}")
    grep -q Non-2xx <<<"$out" && echo "Warning: $1: non-2xx answers" >&2
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    awk -v r="$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")" -v t="$(($(ticks "${pid[$1]}") - t0))" \
        -v n="$n" -v hz="$hz" 'BEGIN { printf "%.0f %.2f\n", r, t * 1e6 / hz / n }'
}
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
range() { sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.3f-%.3f", lo, hi }'; }

echo "round | A req/s | B req/s | B/A | A CPU us/req | B CPU us/req | B/A"
for i in $(seq "$ROUNDS"); do
    # Alternate which goes first, so neither always gets the warmer machine.
    if [ $((i % 2)) = 1 ]; then ra=$(run a); rb=$(run b); else rb=$(run b); ra=$(run a); fi
    read -r a_rps a_cpu <<<"$ra"
    read -r b_rps b_cpu <<<"$rb"
    rr=$(awk -v a="$a_rps" -v b="$b_rps" 'BEGIN { printf "%.3f", b / a }')
    cr=$(awk -v a="$a_cpu" -v b="$b_cpu" 'BEGIN { printf "%.3f", b / a }')
    echo "$i | $a_rps | $b_rps | $rr | $a_cpu | $b_cpu | $cr"
    echo "$rr $cr" >>"$work/ratios"
done
echo "B/A req/s: median $(cut -d' ' -f1 "$work/ratios" | median) (range $(cut -d' ' -f1 "$work/ratios" | range))"
echo "B/A CPU per request: median $(cut -d' ' -f2 "$work/ratios" | median) (range $(cut -d' ' -f2 "$work/ratios" | range))"
if [ "${LAT_REQUESTS:-20000}" -gt 0 ]; then
    taskset -c "$MOCK_CPU" "$bin/examples/latency" --direct "$mock" --gateway "${addr[a]}" \
        --also "${addr[b]}" --key "$key" --model "$MODEL" --requests "${LAT_REQUESTS:-20000}" >"$work/lat.txt"
    lat() { awk -v s="$1" -v c="$2" '$1 == s { print $c }' "$work/lat.txt"; }
    echo "c1 added latency p50 / p99: A $(lat added 2) / $(lat added 4) us, B $(lat added_also 2) / $(lat added_also 4) us"
fi
