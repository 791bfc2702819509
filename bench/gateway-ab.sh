#!/usr/bin/env bash
# A/B of two gateway binaries in bench/gateway.sh's rig: mock-upstream (and wrk) on one
# core, both gateways pinned to the other, measured in alternating rounds so that the
# machine's drift hits both alike. Per round: wrk -c$CONNS req/s and the gateway's CPU
# per request (from /proc/PID/stat); then one c1 latency run timing direct, A and B in
# the same rounds. Prints each round and the median and range of B/A.
#
# Usage: bench/gateway-ab.sh A_BIN B_BIN
#   (env: ROUNDS=5 DURATION=5s CONNS=64 MODEL=gpt-4o-mini|resilient KEY_NAME=plain|limited
#    LAT_REQUESTS=20000 MOCK_CPU=0 GW_CPU=1 RT=1)
# `MODEL=resilient KEY_NAME=limited` is the feature-tax path of bench/gateway.sh (its
# config comes from bench/lib.sh). Builds the rig (bench/lib.sh's rig_init); A and B are
# built by the caller (e.g. copies of target/release/gateway from two commits).
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
source bench/lib.sh
rig_init wrk taskset curl

start_server mock "$MOCK_CPU" mock "$bin/mock-upstream" --listen 127.0.0.1:0 --threads 1
# The second deployment of `resilient`, as in bench/gateway.sh.
start_server mockb "$MOCK_CPU" mockb "$bin/mock-upstream" --listen 127.0.0.1:0 --threads 1
gateway_config "$work/gateway.yaml" "$mock" "$mockb"
key=sk-lab-key
[ "${KEY_NAME:-plain}" = limited ] && key=sk-limited
declare -A pid addr
for v in a b; do
    bin_v=${v}_bin
    start_server "addr[$v]" "$GW_CPU" "$v" "${!bin_v}" --config "$work/gateway.yaml"
    pid[$v]=$server_pid
done
hz=$(getconf CLK_TCK)
# run V -> "RPS CPU_US" of one wrk run against gateway V
run() {
    local t0 out n
    t0=$(cpu_ticks "${pid[$1]}")
    out=$(export GW_KEY=$key GW_MODEL="$MODEL"; pin_exec "$MOCK_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" \
        --timeout 30s -s bench/gateway-post.lua "http://${addr[$1]}")
    grep -q Non-2xx <<<"$out" && echo "Warning: $1: non-2xx answers" >&2
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    awk -v r="$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")" -v t="$(($(cpu_ticks "${pid[$1]}") - t0))" \
        -v n="$n" -v hz="$hz" 'BEGIN { printf "%.0f %.2f\n", r, t * 1e6 / hz / n }'
}

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
    (pin_exec "$MOCK_CPU" "$bin/examples/latency" --direct "$mock" --gateway "${addr[a]}" \
        --also "${addr[b]}" --key "$key" --model "$MODEL" --requests "${LAT_REQUESTS:-20000}") >"$work/lat.txt"
    lat() { awk -v s="$1" -v c="$2" '$1 == s { print $c }' "$work/lat.txt"; }
    echo "c1 added latency p50 / p99: A $(lat added 2) / $(lat added 4) us, B $(lat added_also 2) / $(lat added_also 4) us"
fi
