# Shared by the bench scripts: `source "$(dirname "$0")/lib.sh"` (or via the resolved path).

# need_tools TOOL... -> exits with a clear error when one is missing
need_tools() {
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { echo "Error: $tool is missing (apt-get install wrk util-linux curl)" >&2; exit 1; }
    done
}

# wait_addr LOGFILE PID -> prints the address from the server's "listening on" line
wait_addr() {
    local addr=""
    for _ in $(seq 200); do
        addr=$(sed -n 's/^listening on //p' "$1" 2>/dev/null | head -n1)  # the log may not exist yet
        [ -n "$addr" ] && { echo "$addr"; return 0; }
        kill -0 "$2" 2>/dev/null || { echo "Error: process exited:" >&2; cat "$1" >&2; return 1; }
        sleep 0.05
    done
    echo "Error: no 'listening on' line in $1" >&2
    return 1
}

# free_port -> a TCP port on 127.0.0.1 nothing listens on (for servers that cannot take port 0)
free_port() {
    local port
    for port in $(seq 18080 18999); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return 0; }
    done
    echo "Error: no free port in 18080-18999" >&2
    return 1
}

# --- The rig bench/gateway.sh and bench/gateway-ab.sh share (mock-upstream and the gateway
# on their own cores). Callers cd to the repository root first.

# pin_exec CPU CMD... -> replaces the shell with CMD pinned to CPU (and under SCHED_FIFO
# when RT is set). Run it backgrounded (`pin_exec ... &`, so that $! is CMD's own pid, the
# one whose CPU time is read) or in a subshell, never in the script's own shell.
pin_exec() {
    local cpu=$1
    shift
    if [ -n "${RT:-}" ]; then exec taskset -c "$cpu" chrt -f 10 "$@"; fi
    exec taskset -c "$cpu" "$@"
}

# rig_init TOOL... -> checks the tools, raises the fd limit, builds what the rig runs
# (the same package set for every script, so that switching scripts rebuilds nothing),
# sets $bin and a scratch dir $work; on exit every pid in $pids is killed and $work removed.
rig_init() {
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
    need_tools "$@"
    # 1000 client connections + 1000 upstream connections need more than the default 1024 fds.
    ulimit -n 16384 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    cargo build --release -p gateway -p mock-upstream -p orchestrator >&2
    cargo build --release -p gateway --example latency >&2
    bin="$CARGO_TARGET_DIR/release"
    work=$(mktemp -d)
    pids=()
    trap rig_cleanup EXIT
}

rig_cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}

# start_server VAR CPU NAME CMD... -> starts CMD (a server that prints "listening on ADDR")
# pinned to CPU with its output in $work/NAME.log, and stores its address in VAR; its pid
# is added to $pids and left in $server_pid.
start_server() {
    # (No local named like a caller's VAR: `printf -v` would set the local.)
    local var=$1 cpu=$2 log="$work/$3.log" found
    shift 3
    pin_exec "$cpu" "$@" >"$log" 2>&1 &
    server_pid=$!
    pids+=("$server_pid")
    found=$(wait_addr "$log" "$server_pid") || exit 1
    printf -v "$var" '%s' "$found"
}

# gateway_config FILE MOCK MOCK_B [PROVIDERS] [MODELS] -> the measured gateway config: key
# sk-lab-key, a named key sk-limited with rpm/tpm limits far above the load (the feature
# tax), model gpt-4o-mini on MOCK and model resilient (latency routing, retries 2) over
# MOCK and MOCK_B; PROVIDERS and MODELS are extra YAML lines (two-space indented).
gateway_config() {
    cat >"$1" <<EOT
listen: 127.0.0.1:0
threads: 1
api_keys: [sk-lab-key]
keys: [{name: team-a, key: sk-limited, rpm: 1000000000, tpm: 1000000000000}]
limits: {max_body_bytes: 1048576, upstream_timeout_ms: 120000}
forward_headers: [x-mock-]
providers:
  mock: {type: openai, base_url: "http://$2/v1"}
  mock_b: {type: openai, base_url: "http://$3/v1"}
${4:-}
models:
  - {name: gpt-4o-mini, provider: mock}
  - {name: resilient, routing: latency, retries: 2, deployments: [{provider: mock}, {provider: mock_b}]}
${5:-}
EOT
}

# cpu_ticks PID... -> CPU time (clock ticks, user + system) these processes have used so far
cpu_ticks() { for p in "$@"; do awk '{print $14 + $15}' "/proc/$p/stat"; done | awk '{ n += $1 } END { print n + 0 }'; }

# host_cpu -> the machine's CPU ticks so far as "TOTAL IDLE STEAL" (the cpu line of
# /proc/stat; steal is time the hypervisor gave other guests while ours wanted the core)
host_cpu() { awk '$1 == "cpu" { t = 0; for (i = 2; i <= 9; i++) t += $i; print t, $5 + $6, $9; exit }' /proc/stat; }

# host_steal "BEFORE" "AFTER" -> steal as a % of the machine's CPU time between two host_cpu readings
host_steal() {
    awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " "); d = y[1] - x[1]
        printf "%.1f\n", (d > 0 ? 100 * (y[3] - x[3]) / d : 0) }'
}

# median -> the middle of the numbers on stdin
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# range [DECIMALS] -> "LO-HI" of the numbers on stdin (3 decimals unless told)
range() { sort -g | awk -v d="${1:-3}" 'NR == 1 { lo = $1 } { hi = $1 } END { f = "%." d "f"; printf f "-" f, lo, hi }'; }
