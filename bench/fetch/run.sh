#!/usr/bin/env bash
# The seeds' slow-upstream story, side by side in one run: an upstream that answers after 3 s,
# N clients at once each calling an endpoint that calls it once. Peers: FastAPI (uvicorn, one
# worker) with async def + requests (the trap), def + requests (thread pool), async def + a
# shared httpx.AsyncClient; and roost's /proxy. Per peer and N: wall time for all N, p50/p99,
# the server's CPU seconds and its peak RSS during the burst. One server runs at a time.
#   bash bench/fetch/run.sh                 NS="100 10000" TIMEOUT=60 ROOST_BIN=build/roost
# ROOSTS="before=/path/to/old/roost after=build/roost" runs several roost binaries side by side.
# UPSTREAM=roost: the 3 s upstream is a second roost process's /slow-async?seconds=3 (C, one
# listener per loop) instead of tests/e2e/upstream.py (Python asyncio, one thread, backlog
# 4096); every peer calls the same one. PEERS="roost httpx threads trap" picks the peers.
# The "floor" row: the same burst straight at the upstream-less /slow-async?seconds=3 of the
# first roost: what the client and the machine cost with no upstream call at all.
# The process's file limit caps N: roost holds a client and an upstream connection per call,
# so N=10,000 needs 20,000 descriptors and some more (calls short of one wait for a free one).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOST_BIN=${ROOST_BIN:-build/roost}
NS=${NS:-"100 10000"}
TIMEOUT=${TIMEOUT:-60}
ulimit -n "$(ulimit -Hn)"
source bench/common.sh
tmp=$bench_tmp
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

ROOSTS=${ROOSTS:-"roost=$ROOST_BIN"}
PEERS=${PEERS:-"floor roost httpx threads trap"}
UPSTREAM=${UPSTREAM:-py}
up_port=$(bench_free_port)
if [ "$UPSTREAM" = roost ]; then
    first_bin=${ROOSTS%% *}
    "${first_bin#*=}" --port "$up_port" --data-dir "$tmp/updata" >"$tmp/upstream.log" 2>&1 &
    bench_track $!
    bench_wait_http "http://127.0.0.1:$up_port/healthz"
    up_path="/slow-async?seconds=3"
else
    $PY tests/e2e/upstream.py "$up_port" >"$tmp/upstream.log" 2>&1 &
    bench_track $!
    bench_wait_http "http://127.0.0.1:$up_port/stats"
    up_path="/sleep?ms=3000"
fi
hz=$(getconf CLK_TCK)
echo "upstream: $UPSTREAM ($up_path); file limit $(ulimit -n); $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo

echo "| peer | N | ok / N | wall s | p50 s | p99 s | server CPU s | server peak RSS MiB | idle RSS MiB | errors |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
run_peer() { # name pid url
    local name=$1 pid=$2 url=$3 idle
    idle=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    for n in $NS; do
        echo 5 >"/proc/$pid/clear_refs" # resets VmHWM: the peak of this burst only
        local c0 c1 out
        c0=$(cpu_ticks "$pid")
        out=$($PY bench/fetch/burst.py "$url" "$n" "$TIMEOUT")
        c1=$(cpu_ticks "$pid")
        local hwm
        hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
        $PY - "$name" "$n" "$out" "$c0" "$c1" "$hz" "$hwm" "$idle" <<'PYEOF'
import json, sys
name, n, out, c0, c1, hz, hwm, idle = sys.argv[1:]
r = json.loads(out)
print(f"| {name} | {int(n):,} | {r['ok']:,} | {r['wall_s']} | {r['p50_s']} | {r['p99_s']} | "
      f"{(int(c1) - int(c0)) / int(hz):.2f} | {int(hwm) / 1024:.1f} | {int(idle) / 1024:.1f} | "
      f"{r['errors'] or 'none'} |")
PYEOF
        sleep 1
    done
}

has_peer() { [[ " $PEERS " == *" $1 "* ]]; }
start_roost() { # binary [flags]: sets rpid and port
    port=$(bench_free_port)
    "$@" --port "$port" --data-dir "$tmp/data-$port" >"$tmp/roost-$port.log" 2>&1 &
    rpid=$!
    bench_track "$rpid"
    bench_wait_http "http://127.0.0.1:$port/healthz"
    sleep 1 # idle RSS after start-up, not during it
}
if has_peer floor; then
    first_bin=${ROOSTS%% *}
    start_roost "${first_bin#*=}"
    run_peer "floor: ${first_bin%%=*} /slow-async, no upstream" "$rpid" \
        "http://127.0.0.1:$port/slow-async?seconds=3"
    kill "$rpid"
fi
if has_peer roost; then
    for spec in $ROOSTS; do
        start_roost "${spec#*=}" --upstream "up=http://127.0.0.1:$up_port max_conns=20000 \
max_queue=20000 connect_timeout_ms=60000 timeout_ms=120000"
        run_peer "${spec%%=*} /proxy" "$rpid" "http://127.0.0.1:$port/proxy/up${up_path}"
        kill "$rpid"
    done
fi

for ep in httpx threads trap; do
    has_peer "$ep" || continue
    port=$(bench_free_port)
    UPSTREAM="http://127.0.0.1:$up_port" UPSTREAM_PATH="$up_path" \
        $PY -m uvicorn --app-dir bench/fetch fastapi_app:app \
        --port "$port" --log-level warning --backlog 16384 >"$tmp/fastapi.log" 2>&1 &
    fpid=$!
    bench_track "$fpid"
    bench_wait_http "http://127.0.0.1:$port/docs"
    sleep 1
    run_peer "FastAPI $ep" "$fpid" "http://127.0.0.1:$port/$ep"
    kill "$fpid"
    sleep 1
done
