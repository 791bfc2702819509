#!/bin/bash
# A second Docker engine beside the first, standing for another machine (see README
# "Two or more machines"): its own data root, exec root and socket, no bridge, the same
# storage driver as the first. Used by the lab's Docker test; handy to try LAB_ENGINE_*.
#   bench/second-engine.sh start DIR   -> prints unix://DIR/docker.sock once it answers
#   bench/second-engine.sh stop DIR    -> stops it (containers die with it) and cleans DIR
set -euo pipefail
cmd=${1:?usage: $0 start|stop DIR}
dir=${2:?usage: $0 start|stop DIR}
case "$cmd" in
start)
    mkdir -p "$dir/data" "$dir/exec"
    driver=$(docker info --format '{{.Driver}}' 2>/dev/null || echo overlay2)
    cat > "$dir/daemon.json" <<JSON
{"data-root": "$dir/data", "exec-root": "$dir/exec", "pidfile": "$dir/docker.pid",
 "hosts": ["unix://$dir/docker.sock"], "storage-driver": "$driver",
 "bridge": "none", "iptables": false, "ip-masq": false}
JSON
    # containerd of its own too: the first engine's would mix the two engines' tasks.
    nohup dockerd --config-file "$dir/daemon.json" --containerd-namespace lab2 \
        --containerd-plugins-namespace lab2p > "$dir/dockerd.log" 2>&1 8>&- 9>&- &
    for _ in $(seq 1 60); do
        if DOCKER_HOST="unix://$dir/docker.sock" docker version >/dev/null 2>&1; then
            echo "unix://$dir/docker.sock"
            exit 0
        fi
        sleep 0.5
    done
    echo "the second engine did not answer within 30 s; its log:" >&2
    tail -20 "$dir/dockerd.log" >&2
    exit 1
    ;;
stop)
    if [ -f "$dir/docker.pid" ]; then
        pid=$(cat "$dir/docker.pid")
        DOCKER_HOST="unix://$dir/docker.sock" docker rm -f $(DOCKER_HOST="unix://$dir/docker.sock" docker ps -aq) >/dev/null 2>&1 || true
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    fi
    # Data-root mounts must go before the directory can.
    grep " $dir/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$dir"
    ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 64 ;;
esac
