#!/usr/bin/env bash
# Rooms across nodes, side by side in one run: three server processes and one Redis behind one
# nginx (round-robin, WebSocket upgrade passed through), N subscribers in one room spread by the
# balancer over the three, M messages published by POST /broadcast through the same balancer
# (so round-robin through all three) at RATE/s. The load generator is the shared kit's wsbench
# (deliveries, losses, duplicates, publish-to-receive latency, the three processes' CPU and RSS).
#   roost     3 x build/roost --redis (one loop thread each)
#   fastapi   3 x uvicorn (1 worker each) running the seed's design: a ConnectionManager per
#             worker and Redis pub/sub written by hand (fastapi_redis_chat.py)
#   socketio  3 x node running Socket.IO with @socket.io/redis-adapter (sio/server.js)
# Usage: bench/scale/rooms.sh   (N=10000 M=1000 RATE=100 PUB_CONNS=64 PEERS=roost,fastapi,socketio)
# PUB_CONNS: wsbench's publishers, one POST in flight each: with its default 8 and POSTs taking
# ~0.5-1 s through a loaded balancer, the publisher itself capped the rate at 8-16/s (published
# < M when the schedule's grace ran out), for every peer.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/../common.sh"
N=${N:-10000}
M=${M:-1000}
RATE=${RATE:-100}
PUB_CONNS=${PUB_CONNS:-64}
PEERS=${PEERS:-roost,fastapi,socketio}
ROOST=${ROOST_BIN:-$root/build/roost}
# the shared kit beside the checkout (a worktree's ../shared may be another worktree: look for
# the tool itself)
kit=/work/shared/bench
[[ -f $root/../shared/bench/tools/wsbench.c ]] && kit=$(cd "$root/../shared/bench" && pwd)
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cc -O2 -o "$bench_tmp/wsbench" "$kit/tools/wsbench.c"
if [[ ,$PEERS, == *,socketio,* && ! -d $here/sio/node_modules ]]; then
    (cd "$here/sio" && npm ci --no-audit --no-fund --silent)
fi

# nginx in front of three backends: start_lb PORT DIR B1 B2 B3 (two workers: a proxied WebSocket
# holds two descriptors, and one worker could not hold 10,000 of them under a 20,000 limit)
start_lb() {
    local port=$1 dir=$2
    shift 2
    mkdir -p "$dir"
    chmod 755 "$dir"
    {
        echo "worker_processes 2; pid $dir/nginx.pid; error_log $dir/error.log warn;"
        echo "worker_rlimit_nofile 19000; events { worker_connections 18000; }"
        echo "http { access_log off; client_body_temp_path $dir; proxy_temp_path $dir;"
        echo " upstream nodes { keepalive 64;"
        for b in "$@"; do echo "  server 127.0.0.1:$b;"; done
        echo " }"
        echo " map \$http_upgrade \$connection_upgrade { default upgrade; '' ''; }"
        echo " server { listen 127.0.0.1:$port backlog=16384 reuseport;"
        echo "  location / { proxy_pass http://nodes; proxy_http_version 1.1;"
        echo "   proxy_set_header Upgrade \$http_upgrade;"
        echo "   proxy_set_header Connection \$connection_upgrade;"
        echo "   proxy_read_timeout 600s; proxy_buffering off; } } }"
    } >"$dir/nginx.conf"
    nginx -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' 2>>"$dir/error.log" &
    bench_track $!
}

start_redis() {
    local port=$1 dir=$2
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
        --maxclients 20000 --loglevel warning >"$dir/redis.log" 2>&1 &
    bench_track $!
    for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && return 0; sleep 0.1; done
    return 1
}

# run_peer NAME: starts Redis, three nodes and the balancer, runs wsbench, stops them all.
run_peer() {
    local name=$1 dir="$bench_tmp/$1" rp lb path pids=() ports=()
    rp=$(bench_free_port)
    lb=$(bench_free_port)
    start_redis "$rp" "$dir/redis"
    for i in 1 2 3; do
        local p
        p=$(bench_free_port)
        ports+=("$p")
        case $name in
        roost)
            "$ROOST" --port "$p" --threads 1 --redis "redis://127.0.0.1:$rp/0" --node-id "n$i" \
                --data-dir "$dir/n$i" >"$dir/n$i.log" 2>&1 &
            path="/ws/bench/u{i}" ;;
        fastapi)
            ROOST_REDIS_URL="redis://127.0.0.1:$rp" $PY -m uvicorn fastapi_redis_chat:app \
                --app-dir "$here" --host 127.0.0.1 --port "$p" --loop uvloop --http httptools \
                --ws websockets --backlog 4096 --no-access-log --log-level warning \
                >"$dir/n$i.log" 2>&1 &
            path="/ws/bench/u{i}" ;;
        socketio)
            node "$here/sio/server.js" "$p" "redis://127.0.0.1:$rp" >"$dir/n$i.log" 2>&1 &
            path="/socket.io/?EIO=3&transport=websocket&room=bench" ;;
        esac
        pids+=($!)
        bench_track $!
    done
    mkdir -p "$dir"
    for p in "${ports[@]}"; do bench_wait_http "http://127.0.0.1:$p/rooms/bench/count"; done
    start_lb "$lb" "$dir/lb" "${ports[@]}"
    bench_wait_http "http://127.0.0.1:$lb/rooms/bench/count"
    "$bench_tmp/wsbench" -u "ws://127.0.0.1:$lb$path" -n "$N" -m "$M" -r "$RATE" \
        --pub-url "http://127.0.0.1:$lb/broadcast" --pub-body '{"room":"bench","message":"{msg}"}' \
        --ready-url "http://127.0.0.1:$lb/rooms/bench/count" --ready-max 60 \
        --pub-conns "$PUB_CONNS" --connect-max 120 --settle-max 60 \
        --pids "$(IFS=,; echo "${pids[*]}")" --max-time 300 --label "$name" \
        --json "$bench_tmp/$name.json" >"$dir/wsbench.out" 2>&1 || true
    grep -E "^(connections|ready|settle|publish|delivery|latency|cpu|frames)" "$dir/wsbench.out" >&2 || true
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    redis-cli -p "$rp" shutdown nosave >/dev/null 2>&1 || true
    pkill -f "nginx -p $dir/lb" 2>/dev/null || true
    sleep 1
}

IFS=, read -ra peers <<<"$PEERS"
for p in "${peers[@]}"; do run_peer "$p"; done

$PY - "$bench_tmp" "${peers[@]}" <<'PYEOF'
import json, sys, os
tmp, peers = sys.argv[1], sys.argv[2:]
rows = {}
for p in peers:
    f = os.path.join(tmp, p + ".json")
    rows[p] = json.load(open(f)) if os.path.exists(f) else None
print("| peer (3 nodes + Redis) | subscribers | published | delivered/s | lost | dups | p50 ms | p99 ms | CPU s | RSS MiB after |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for p, r in rows.items():
    if not r:
        print(f"| {p} | - | - | - | - | - | - | - | - | - |"); continue
    print(f"| {p} | {r['established']} | {r['published']} | {r['deliveries_per_s']:,.0f} | {r['lost']} | {r['dups']} "
          f"| {r['lat_p50_ms']:.1f} | {r['lat_p99_ms']:.1f} | {r['server_cpu_s']:.2f} | {r['rss_after_kb']/1024:.0f} |")
ok = {p: r for p, r in rows.items() if r and p != "roost"}
if rows.get("roost") and ok:
    best = max(ok, key=lambda p: ok[p]["deliveries_per_s"])
    r, b = rows["roost"], ok[best]
    print(f"\nroost / best peer ({best}): deliveries/s {r['deliveries_per_s']/max(b['deliveries_per_s'],1):.2f}x, "
          f"p99 {r['lat_p99_ms']/max(b['lat_p99_ms'],0.001):.2f}x")
PYEOF
