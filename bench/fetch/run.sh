#!/usr/bin/env bash
# The seeds' slow-upstream story, side by side in one run: an upstream that answers after 3 s,
# N clients at once each calling an endpoint that calls it once. Peers: roost's /proxy; FastAPI
# (uvicorn, one worker) with async def + a shared httpx.AsyncClient, def + requests (thread
# pool) and, when asked, async def + requests (the trap). The load generator is burst.c (C, one
# thread, epoll), built here with cc. Each peer and N gets a fresh server, one at a time; per
# row: wall time for all N, p50/p99, the server's CPU (schedstat, ns) and its peak RSS (VmHWM).
#   bash bench/fetch/run.sh        (about 5 min; NS="100 1000 max 10000" TIMEOUT=30 PEERS=...)
# PEERS (default "floor roost httpx threads"; add "trap", slow: one call at a time). The "floor"
# row: the same burst at roost's own /slow-async?seconds=3, no upstream call: what the
# generator, the accept path and the machine cost. NS: "max" is the largest N the descriptor
# limit allows roost, which holds a client and an upstream socket per call; above it, calls
# wait for a descriptor (roost_upstream_out_of_fds_total, the notes column).
# UPSTREAM=roost (default): the 3 s upstream is a second roost's /slow-async?seconds=3;
# UPSTREAM=py: tests/e2e/upstream.py (Python asyncio, one thread) instead.
# ROOSTS="before=/path/to/old/roost after=build/roost" runs several roost binaries side by side.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOST_BIN=${ROOST_BIN:-build/roost}
NS=${NS:-"100 1000 max 10000"}
TIMEOUT=${TIMEOUT:-30}
ROOSTS=${ROOSTS:-"roost=$ROOST_BIN"}
PEERS=${PEERS:-"floor roost httpx threads"}
UPSTREAM=${UPSTREAM:-roost}
ulimit -n "$(ulimit -Hn)"
source bench/common.sh
tmp=$bench_tmp
cc -O2 -o "$tmp/burst" bench/fetch/burst.c

# roost's own budget: a client and an upstream socket per call, ~100 for the rest (listeners,
# loops, the database, libcurl's own), rounded down to a hundred.
n_max=$((($(ulimit -Hn) - 100) / 2 / 100 * 100))

# CPU time of each thread of PID, "tid ns" lines (schedstat's first field: exact, where
# /proc/PID/stat's utime + stime count 10 ms ticks). The burst's CPU is the sum over the threads
# alive at its end of their time since its start; a thread that exits during the burst takes
# its time with it, so the tick count is kept as a check (the notes column says when it is more).
cpu_ns() {
    for t in /proc/"$1"/task/*; do
        echo "${t##*/} $(cut -d' ' -f1 "$t/schedstat" 2>/dev/null)"
    done
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# The machine's count of connections a full listen queue refused (SYNs dropped, retried after
# 1 s): across every process of the machine, so only a hint of whose queue it was.
listen_drops() {
    awk '/^TcpExt:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "ListenDrops") c = i; h = 1 }
                      else print $c }' /proc/net/netstat
}
hz=$(getconf CLK_TCK)

up_port=$(bench_free_port)
first_bin=${ROOSTS%% *}
first_bin=${first_bin#*=}
if [ "$UPSTREAM" = roost ]; then
    "$first_bin" --port "$up_port" --data-dir "$tmp/updata" >"$tmp/upstream.log" 2>&1 &
    bench_track $!
    bench_wait_http "http://127.0.0.1:$up_port/healthz"
    up_path="/slow-async?seconds=3"
else
    $PY tests/e2e/upstream.py "$up_port" >"$tmp/upstream.log" 2>&1 &
    bench_track $!
    bench_wait_http "http://127.0.0.1:$up_port/stats"
    up_path="/sleep?ms=3000"
fi
echo "upstream: $UPSTREAM ($up_path); descriptors: hard limit $(ulimit -Hn), so N max for roost" \
    "$n_max; $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg); timeout ${TIMEOUT} s"
echo
echo "| peer | N | ok | wall s | p50 s | p99 s | connected s | server CPU s | server peak RSS MiB |" \
    "idle RSS MiB | client CPU s | errors, notes |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"

# stop PID: SIGTERM, then SIGKILL after 3 s (a FastAPI left with thousands of calls can take
# minutes to drain, and its figures are taken already).
stop() {
    kill "$1" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# measure NAME N PID URL [METRICS_URL]: one burst of N at URL, the server being PID.
measure() {
    local name=$1 n=$2 pid=$3 url=$4 metrics=${5:-} idle t0 t1 d0 d1 hwm out fds=""
    idle=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    echo 5 >"/proc/$pid/clear_refs" # resets VmHWM: the peak of this burst only
    cpu_ns "$pid" >"$tmp/cpu0"
    t0=$(cpu_ticks "$pid")
    d0=$(listen_drops)
    out=$("$tmp/burst" "$url" "$n" "$TIMEOUT")
    cpu_ns "$pid" >"$tmp/cpu1"
    t1=$(cpu_ticks "$pid")
    d1=$(listen_drops)
    hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
    if [ -n "$metrics" ]; then
        fds=$(curl -s --max-time 5 "$metrics" |
            awk '/^roost_upstream_out_of_fds_total/ {print $2}') || true
    fi
    $PY - "$name" "$n" "$n_max" "$out" "$tmp/cpu0" "$tmp/cpu1" "$t0" "$t1" "$hz" "$hwm" "$idle" \
        "$fds" "$TIMEOUT" $((d1 - d0)) <<'PYEOF'
import json, sys
name, n, n_max, out, c0, c1, t0, t1, hz, hwm, idle, fds, timeout, drops = sys.argv[1:]
r, n = json.loads(out), int(n)
ns = lambda path: dict(map(int, l.split()) for l in open(path) if len(l.split()) == 2)
start, end = ns(c0), ns(c1)
cpu = sum(v - start.get(tid, 0) for tid, v in end.items()) / 1e9
ticks = (int(t1) - int(t0)) / int(hz)
notes = [f"{v:,} x {k}" for k, v in r["statuses"].items() if not k.startswith("2")]
notes += [f"{v:,} x {k}" for k, v in r["errors"].items()]
if r["slow_connects"]:
    notes.append(f"{r['slow_connects']:,} connects over 0.9 s (SYN dropped)")
if int(drops):
    notes.append(f"{int(drops):,} listen-queue drops on the machine")
if fds and float(fds):
    notes.append(f"{int(float(fds)):,} waits for a descriptor")
if ticks > cpu + 0.05:  # a thread exited during the burst, with its time: count ticks
    notes.append(f"CPU in ticks (schedstat: {cpu:.2f} s)")
    cpu = ticks
timed_out = sum(v for k, v in r["errors"].items() if k.startswith("timeout"))
wall = f"- (> {timeout} s)" if timed_out else "-" if r["wall_s"] is None else f"{r['wall_s']:.2f}"
f = lambda v: "-" if v is None else f"{v:.2f}"
label = f"{n:,}" + (" (fd max)" if n == int(n_max) else "")
print(f"| {name} | {label} | {r['ok']:,} | {wall} | {f(r['p50_s'])} | {f(r['p99_s'])} | "
      f"{r['connected_s']:.2f} | {cpu:.2f} | {int(hwm) / 1024:.1f} | {int(idle) / 1024:.1f} | "
      f"{r['client_cpu_s']:.2f} | {'; '.join(notes) or 'none'} |")
PYEOF
}

start_roost() { # binary [flags]: sets pid and port
    port=$(bench_free_port)
    "$@" --port "$port" --data-dir "$tmp/data-$port" >"$tmp/roost-$port.log" 2>&1 &
    pid=$!
    bench_track "$pid"
    bench_wait_http "http://127.0.0.1:$port/healthz"
    sleep 1 # idle RSS after start-up, not during it
}
start_fastapi() {
    port=$(bench_free_port)
    UPSTREAM="http://127.0.0.1:$up_port" UPSTREAM_PATH="$up_path" \
        $PY -m uvicorn --app-dir bench/fetch fastapi_app:app \
        --port "$port" --log-level warning --backlog 16384 >"$tmp/fastapi-$port.log" 2>&1 &
    pid=$!
    bench_track "$pid"
    bench_wait_http "http://127.0.0.1:$port/docs"
    sleep 1
}
has_peer() { [[ " $PEERS " == *" $1 "* ]]; }

for n in $NS; do
    [ "$n" = max ] && n=$n_max
    if has_peer floor; then
        start_roost "$first_bin"
        measure "floor: roost /slow-async, no upstream" "$n" "$pid" \
            "http://127.0.0.1:$port/slow-async?seconds=3"
        stop "$pid"
    fi
    if has_peer roost; then
        for spec in $ROOSTS; do
            start_roost "${spec#*=}" --upstream "up=http://127.0.0.1:$up_port max_conns=20000 \
max_queue=20000 connect_timeout_ms=60000 timeout_ms=120000"
            measure "${spec%%=*} /proxy" "$n" "$pid" "http://127.0.0.1:$port/proxy/up$up_path" \
                "http://127.0.0.1:$port/metrics"
            stop "$pid"
        done
    fi
    for ep in httpx threads trap; do
        has_peer "$ep" || continue
        start_fastapi
        measure "FastAPI $ep" "$n" "$pid" "http://127.0.0.1:$port/$ep"
        stop "$pid"
    done
done
