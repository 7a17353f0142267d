#!/usr/bin/env bash
# Job queue throughput: N no-op jobs submitted by many concurrent clients, timed until every one
# has completed; roost (build/roost, durable SQLite WAL queue, --job-workers = cores) beside
# Celery 5 (prefork worker, concurrency = cores, Redis broker and result backend), one after the
# other in one run on the same machine. Prints a Markdown table with roost / Celery.
#
#   bench/jobs/run.sh            # N=20000, 32 clients
#   N=5000 CLIENTS=16 bench/jobs/run.sh
#   ROOST_ARGS=--job-fsync bench/jobs/run.sh   # extra roost flags (here: fsync every commit)
#   PEERS=roost bench/jobs/run.sh              # roost alone (no Celery run, no ratio)
#
# roost's clients: bench/jobs/postload.c (C, keep-alive, one request in flight per connection)
# posting {"type":"noop"} to /tasks. Celery's: bench/jobs/submit.py, noop.delay() from
# 4 processes x CLIENTS/4 threads. Completion: roost's /metrics (roost_jobs{status=...}),
# Celery's result count (DBSIZE of the backend's Redis database).
set -euo pipefail
N=${N:-${1:-20000}}
CLIENTS=${CLIENTS:-32}
CELERY_PROCS=${CELERY_PROCS:-4}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CORES=$(nproc)
PY=/usr/bin/python3
TMP=$(mktemp -d /tmp/roost-jobs-bench.XXXXXX)
PIDS=()

cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 50); do
        alive=0
        for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

for tool in redis-server redis-cli curl cc; do
    command -v $tool >/dev/null || { echo "bench/jobs: $tool missing (scripts/deps.sh)" >&2; exit 1; }
done
$PY -c 'import celery, redis' 2>/dev/null || { echo "bench/jobs: python3-celery/python3-redis missing (scripts/deps.sh)" >&2; exit 1; }
[ -x "$ROOT/build/roost" ] || { echo "bench/jobs: build/roost missing: make build/roost" >&2; exit 1; }
cc -O2 -o "$TMP/postload" "$HERE/postload.c"

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
# CPU seconds (user + system) used so far by the given pids (and not their children).
cpu_s() {
    local ticks=0 p
    for p in "$@"; do
        [ -r "/proc/$p/stat" ] || continue
        ticks=$((ticks + $(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$p/stat")))
    done
    echo "$ticks $(getconf CLK_TCK)" | awk '{ printf "%.2f", $1 / $2 }'
}
field() { $PY -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
wait_until() { # wait_until SECONDS CMD...: poll CMD every 50 ms until it succeeds
    local end=$(($(date +%s) + $1)); shift
    until "$@"; do
        [ "$(date +%s)" -lt $end ] || return 1
        sleep 0.05
    done
}

echo "bench/jobs: N=$N, $CLIENTS clients, $CORES cores, temp $TMP" >&2

# ---------------------------------------------------------------- roost
RPORT=$(free_port)
mkdir -p "$TMP/roost"
(cd "$TMP/roost" && exec "$ROOT/build/roost" --port "$RPORT" --data-dir "$TMP/roost/data" \
    --job-workers "$CORES" ${ROOST_ARGS:-} >"$TMP/roost.log" 2>&1) &
ROOST_PID=$!
PIDS+=($ROOST_PID)
wait_until 10 curl -sf "http://127.0.0.1:$RPORT/healthz" -o /dev/null ||
    { echo "roost did not start:" >&2; tail "$TMP/roost.log" >&2; exit 1; }

roost_count() { curl -sf "http://127.0.0.1:$RPORT/metrics" | awk -v s="$1" '$1 == "roost_jobs{status=\"" s "\"}" { print $2 + 0 }'; }
roost_all_done() {
    local c; c=$(roost_count completed)
    [ "${c:-0}" -ge "$1" ] && [ "$(roost_count pending)" = 0 ] && [ "$(roost_count running)" = 0 ]
}
# warm-up: one job through the queue
curl -sf -X POST -H 'Content-Type: application/json' -d '{"type":"noop"}' \
    "http://127.0.0.1:$RPORT/tasks" -o /dev/null
wait_until 10 roost_all_done 1
R_CPU0=$(cpu_s $ROOST_PID)
R_SUB=$("$TMP/postload" 127.0.0.1 "$RPORT" /tasks '{"type":"noop"}' "$N" "$CLIENTS" 201)
wait_until 300 roost_all_done $((N + 1)) || { echo "roost: jobs left after 300 s" >&2; exit 1; }
R_END=$(now)
R_CPU=$(echo "$(cpu_s $ROOST_PID) $R_CPU0" | awk '{ printf "%.2f", $1 - $2 }')
R_FAILED=$(roost_count failed)
R_COMMITS=$(curl -sf "http://127.0.0.1:$RPORT/metrics" | awk '$1 == "roost_job_store_commits_total" { print $2 }')
kill -TERM $ROOST_PID; wait $ROOST_PID 2>/dev/null || true
echo "roost: ${R_COMMITS:-?} store commits for $((N + 1)) jobs (${ROOST_ARGS:-default flags})" >&2
if [ "${PEERS:-roost,celery}" = roost ]; then
    $PY - "$R_SUB" "$R_END" <<'PYEOF'
import json, sys
s, t = json.loads(sys.argv[1]), float(sys.argv[2])
total = t - s["t0"]
print(f"roost alone: {s['ok']:,} jobs, {s['ok'] / s['seconds']:,.0f} submits/s, "
      f"p50 {s['p50_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms, all completed in {total:.2f} s: "
      f"{s['ok'] / total:,.0f} jobs/s end to end")
PYEOF
    exit 0
fi

# ---------------------------------------------------------------- Celery + Redis
CPORT=$(free_port)
mkdir -p "$TMP/redis"
redis-server --port "$CPORT" --bind 127.0.0.1 --dir "$TMP/redis" --save "" --appendonly no \
    >"$TMP/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=($REDIS_PID)
wait_until 10 redis-cli -p "$CPORT" ping >/dev/null 2>&1
export REDIS_URL="redis://127.0.0.1:$CPORT"
(cd "$HERE" && exec $PY -m celery -A celery_app worker --concurrency "$CORES" --pool prefork \
    --loglevel WARNING --without-gossip --without-mingle --without-heartbeat \
    >"$TMP/celery.log" 2>&1) &
CELERY_PID=$!
PIDS+=($CELERY_PID)
results() { redis-cli -p "$CPORT" -n 1 dbsize; }
# warm-up: one task through the worker, which also tells us that it consumes
(cd "$HERE" && timeout 60 $PY -c 'from celery_app import noop; noop.delay().get(timeout=50)') ||
    { echo "celery did not start:" >&2; tail "$TMP/celery.log" >&2; exit 1; }
C_BASE=$(results)
CELERY_ALL=("$CELERY_PID" $(pgrep -P "$CELERY_PID" || true) "$REDIS_PID")
C_CPU0=$(cpu_s "${CELERY_ALL[@]}")
C_SUB=$($PY "$HERE/submit.py" "$N" "$CELERY_PROCS" $(( (CLIENTS + CELERY_PROCS - 1) / CELERY_PROCS )))
C_OK=$(field "$C_SUB" ok)
celery_done() { [ "$(results)" -ge $((C_BASE + C_OK)) ]; }
wait_until 300 celery_done || { echo "celery: results missing after 300 s" >&2; exit 1; }
C_END=$(now)
C_CPU=$(echo "$(cpu_s "${CELERY_ALL[@]}") $C_CPU0" | awk '{ printf "%.2f", $1 - $2 }')

# ---------------------------------------------------------------- table
$PY - "$N" "$CLIENTS" "$CORES" "$R_SUB" "$R_END" "$R_CPU" "${R_FAILED:-0}" "$C_SUB" "$C_END" "$C_CPU" <<'PYEOF'
import json, sys
n, clients, cores = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rows = []
for name, sub, end, cpu in (("roost (SQLite WAL, durable)", sys.argv[4], sys.argv[5], sys.argv[6]),
                            ("Celery 5 + Redis", sys.argv[8], sys.argv[9], sys.argv[10])):
    s = json.loads(sub)
    total = float(end) - s["t0"]
    rows.append(dict(name=name, ok=s["ok"], submit_s=s["seconds"], submit_rate=s["ok"] / s["seconds"],
                     p50=s["p50_ms"], p99=s["p99_ms"], total=total, rate=s["ok"] / total,
                     cpu=float(cpu)))
print(f"{n:,} no-op jobs, {clients} concurrent clients, {cores} cores, job concurrency {cores}\n")
print("| peer | accepted | submit s | submits/s | submit p50 ms | submit p99 ms | all completed s | jobs/s end to end | server CPU s |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    print(f"| {r['name']} | {r['ok']:,} | {r['submit_s']:.2f} | {r['submit_rate']:,.0f} | {r['p50']:.2f} | "
          f"{r['p99']:.2f} | {r['total']:.2f} | {r['rate']:,.0f} | {r['cpu']:.2f} |")
r, c = rows
print(f"\nroost / Celery: x{r['rate'] / c['rate']:.2f} jobs/s end to end, "
      f"x{r['submit_rate'] / c['submit_rate']:.2f} submits/s, "
      f"submit p99 x{r['p99'] / c['p99']:.2f}, server CPU per job x{(r['cpu'] / r['ok']) / (c['cpu'] / c['ok']):.2f}")
if int(sys.argv[7]):
    print(f"\nroost: {sys.argv[7]} jobs failed")
PYEOF
