#!/usr/bin/env bash
# The seeds' slow-upstream story, side by side in one run: an upstream that answers after 3 s,
# N clients at once each calling an endpoint that calls it once. Peers: FastAPI (uvicorn, one
# worker) with async def + requests (the trap), def + requests (thread pool), async def + a
# shared httpx.AsyncClient; and roost's /proxy. Per peer and N: wall time for all N, p50/p99,
# the server's CPU seconds and its peak RSS during the burst. One server runs at a time.
#   bash bench/fetch/run.sh                 NS="100 10000" TIMEOUT=60 ROOST_BIN=build/roost
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOST_BIN=${ROOST_BIN:-build/roost}
NS=${NS:-"100 10000"}
TIMEOUT=${TIMEOUT:-60}
ulimit -n "$(ulimit -Hn)"
source bench/common.sh
tmp=$bench_tmp
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

up_port=$(bench_free_port)
$PY tests/e2e/upstream.py "$up_port" >"$tmp/upstream.log" 2>&1 &
bench_track $!
bench_wait_http "http://127.0.0.1:$up_port/stats"
hz=$(getconf CLK_TCK)

echo "| peer | N | ok / N | wall s | p50 s | p99 s | server CPU s | server peak RSS MiB | errors |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
run_peer() { # name pid url
    local name=$1 pid=$2 url=$3
    for n in $NS; do
        echo 5 >"/proc/$pid/clear_refs" # resets VmHWM: the peak of this burst only
        local c0 c1 out
        c0=$(cpu_ticks "$pid")
        out=$($PY bench/fetch/burst.py "$url" "$n" "$TIMEOUT")
        c1=$(cpu_ticks "$pid")
        local hwm
        hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
        $PY - "$name" "$n" "$out" "$c0" "$c1" "$hz" "$hwm" <<'PYEOF'
import json, sys
name, n, out, c0, c1, hz, hwm = sys.argv[1:]
r = json.loads(out)
print(f"| {name} | {int(n):,} | {r['ok']:,} | {r['wall_s']} | {r['p50_s']} | {r['p99_s']} | "
      f"{(int(c1) - int(c0)) / int(hz):.2f} | {int(hwm) / 1024:.1f} | {r['errors'] or 'none'} |")
PYEOF
        sleep 1
    done
}

port=$(bench_free_port)
"$ROOST_BIN" --port "$port" --data-dir "$tmp/data" \
    --upstream "up=http://127.0.0.1:$up_port max_conns=20000 max_queue=20000 connect_timeout_ms=60000 timeout_ms=120000" \
    >"$tmp/roost.log" 2>&1 &
rpid=$!
bench_track "$rpid"
bench_wait_http "http://127.0.0.1:$port/healthz"
run_peer "roost /proxy" "$rpid" "http://127.0.0.1:$port/proxy/up/sleep?ms=3000"
kill "$rpid"

for ep in httpx threads trap; do
    port=$(bench_free_port)
    UPSTREAM="http://127.0.0.1:$up_port" $PY -m uvicorn --app-dir bench/fetch fastapi_app:app \
        --port "$port" --log-level warning --backlog 16384 >"$tmp/fastapi.log" 2>&1 &
    fpid=$!
    bench_track "$fpid"
    bench_wait_http "http://127.0.0.1:$port/docs"
    run_peer "FastAPI $ep" "$fpid" "http://127.0.0.1:$port/$ep"
    kill "$fpid"
    sleep 1
done
