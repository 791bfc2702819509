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
