#!/usr/bin/env bash
# Jobs across nodes: N no-op jobs submitted round-robin to three roost nodes that share one
# PostgreSQL queue (--database postgresql://..., each node --job-workers = cores), timed until
# every one has completed; beside Celery 5 with three worker processes (each --concurrency =
# cores) on one Redis broker, one after the other in one run on the same machine. Prints a
# Markdown table.
#
#   bench/scale/jobs.sh                  # N=20000, 48 clients (16 per node)
#   N=6000 CLIENTS=24 bench/scale/jobs.sh
#   PEERS=roost bench/scale/jobs.sh      # roost alone
#
# PostgreSQL runs with its defaults (fsync and synchronous_commit on: a commit is durable), in a
# temporary cluster on a free port. roost's clients: bench/jobs/postload.c, one instance per
# node; Celery's: bench/jobs/submit.py (the same as bench/jobs/run.sh). Completion: roost's
# roost_jobs{status} (any node: the queue is shared), Celery's result count in Redis.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
N=${N:-${1:-20000}}
CLIENTS=${CLIENTS:-48}
CELERY_PROCS=${CELERY_PROCS:-4}
JOBS="$ROOT/bench/jobs"
CORES=$(nproc)
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
AS_PG=()
[ "$(id -u)" = 0 ] && AS_PG=(runuser -u postgres --)
. "$ROOT/bench/common.sh"
TMP=$bench_tmp
stop_all() { # PostgreSQL is not a child: pg_ctl stops it
    [ -f "$TMP/pg/postmaster.pid" ] && "${AS_PG[@]}" "$PGBIN/pg_ctl" -D "$TMP/pg" -m fast stop >/dev/null 2>&1
    bench_cleanup
}
trap stop_all EXIT

[ -x "$PGBIN/initdb" ] || { echo "bench/scale: PostgreSQL missing (scripts/deps.sh)" >&2; exit 1; }
[ -x "$ROOT/build/roost" ] || { echo "bench/scale: build/roost missing: make build/roost" >&2; exit 1; }
cc -O2 -o "$TMP/postload" "$JOBS/postload.c"
now() { date +%s.%N; }
# until SECONDS CMD...: CMD every 50 ms until it succeeds, for at most SECONDS
until_ok() {
    local tries=$(($1 * 20)); shift
    while ! "$@"; do
        tries=$((tries - 1))
        [ $tries -gt 0 ] || return 1
        sleep 0.05
    done
}
echo "bench/scale/jobs: N=$N, $CLIENTS clients, $CORES cores, temp $TMP" >&2

# ---------------------------------------------------------------- PostgreSQL
PGPORT=$(bench_free_port)
mkdir -p "$TMP/pg" && [ "$(id -u)" = 0 ] && chown postgres "$TMP" "$TMP/pg"
"${AS_PG[@]}" "$PGBIN/initdb" -D "$TMP/pg" -A trust -U postgres -E UTF8 --no-instructions >/dev/null
setsid "${AS_PG[@]}" "$PGBIN/pg_ctl" -D "$TMP/pg" -l "$TMP/pg/log" -w -o \
    "-p $PGPORT -k $TMP -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
DB="postgresql://postgres@127.0.0.1:$PGPORT/postgres"

# ---------------------------------------------------------------- three roost nodes
RPORTS=()
RPIDS=()
for i in 1 2 3; do
    port=$(bench_free_port)
    mkdir -p "$TMP/roost$i"
    (cd "$TMP/roost$i" && exec "$ROOT/build/roost" --port "$port" --data-dir "$TMP/roost$i/data" \
        --database "$DB" --job-workers "$CORES" >"$TMP/roost$i.log" 2>&1) &
    RPIDS+=($!)
    bench_track $!
    RPORTS+=("$port")
done
for i in 0 1 2; do
    until_ok 20 curl -sf "http://127.0.0.1:${RPORTS[$i]}/healthz" -o /dev/null ||
        { echo "roost node $i did not start:" >&2; tail "$TMP/roost$((i + 1)).log" >&2; exit 1; }
done
P0=${RPORTS[0]}
# The shared queue as any node sees it: at least $1 completed, none pending or running. Sets
# R_FAILED.
roost_all_done() {
    local line
    line=$(curl -sf "http://127.0.0.1:$P0/metrics" | $PY -c '
import re, sys
n = dict(re.findall(r"^roost_jobs\{status=\"(\w+)\"\} (\d+)", sys.stdin.read(), re.M))
print(n.get("completed", 0), n.get("pending", 0), n.get("running", 0), n.get("failed", 0))')
    read -r done pending running R_FAILED <<<"$line"
    [ -n "$line" ] || { echo "bench/scale: no answer from roost (PostgreSQL: $TMP/pg/log)" >&2; exit 1; }
    [ "$done" -ge "$1" ] && [ "$pending" = 0 ] && [ "$running" = 0 ]
}
curl -sf -X POST -H 'Content-Type: application/json' -d '{"type":"noop"}' \
    "http://127.0.0.1:$P0/tasks" -o /dev/null
until_ok 10 roost_all_done 1
for i in 0 1 2; do
    "$TMP/postload" 127.0.0.1 "${RPORTS[$i]}" /tasks '{"type":"noop"}' $((N / 3)) $((CLIENTS / 3)) 201 \
        >"$TMP/sub$i.json" &
    SUBS[$i]=$!
done
for i in 0 1 2; do wait "${SUBS[$i]}"; done
until_ok 600 roost_all_done $((N / 3 * 3 + 1)) || { echo "roost: jobs left after 600 s" >&2; exit 1; }
R_END=$(now)
STARTED=()
for i in 0 1 2; do
    STARTED+=("$(curl -sf "http://127.0.0.1:${RPORTS[$i]}/metrics" |
        awk '$1 == "roost_job_events_total{event=\"started\"}" { print $2 + 0 }')")
done
for p in "${RPIDS[@]}"; do kill -TERM "$p"; done
for p in "${RPIDS[@]}"; do wait "$p" 2>/dev/null || true; done
echo "roost: jobs started per node: ${STARTED[*]}" >&2

# ---------------------------------------------------------------- Celery: three workers, one Redis
C_SUB='{}'
C_END=0
if [ "${PEERS:-roost,celery}" != roost ]; then
    CPORT=$(bench_free_port)
    mkdir -p "$TMP/redis"
    redis-server --port "$CPORT" --bind 127.0.0.1 --dir "$TMP/redis" --save "" --appendonly no \
        >"$TMP/redis.log" 2>&1 &
    bench_track $!
    until_ok 10 redis-cli -p "$CPORT" ping >/dev/null 2>&1
    export REDIS_URL="redis://127.0.0.1:$CPORT"
    for i in 1 2 3; do
        (cd "$JOBS" && exec $PY -m celery -A celery_app worker -n "w$i@%h" --concurrency "$CORES" \
            --pool prefork --loglevel WARNING --without-gossip --without-mingle --without-heartbeat \
            >"$TMP/celery$i.log" 2>&1) &
        bench_track $!
    done
    results() { redis-cli -p "$CPORT" -n 1 dbsize; }
    (cd "$JOBS" && timeout 60 $PY -c 'from celery_app import noop; noop.delay().get(timeout=50)') ||
        { echo "celery did not start:" >&2; tail "$TMP/celery1.log" >&2; exit 1; }
    C_BASE=$(results)
    C_SUB=$($PY "$JOBS/submit.py" "$N" "$CELERY_PROCS" $(( (CLIENTS + CELERY_PROCS - 1) / CELERY_PROCS )))
    C_OK=$($PY -c 'import json,sys; print(json.loads(sys.argv[1])["ok"])' "$C_SUB")
    celery_done() { [ "$(results)" -ge $((C_BASE + C_OK)) ]; }
    until_ok 600 celery_done || { echo "celery: results missing after 600 s" >&2; exit 1; }
    C_END=$(now)
fi

# ---------------------------------------------------------------- table
$PY - "$N" "$CLIENTS" "$CORES" "$R_END" "${R_FAILED:-0}" "$C_SUB" "$C_END" "$TMP"/sub*.json <<'PYEOF'
import json, sys
n, clients, cores, r_end, failed, c_sub, c_end = sys.argv[1:8]
subs = [json.load(open(p)) for p in sys.argv[8:]]
rows = []
ok = sum(s["ok"] for s in subs)
t0 = min(s["t0"] for s in subs)
sub_s = max(s["t0"] + s["seconds"] for s in subs) - t0
rows.append(("roost x3 (PostgreSQL, durable)", ok, sub_s, max(s["p99_ms"] for s in subs),
             float(r_end) - t0))
c = json.loads(c_sub)
if c:
    rows.append(("Celery 5 x3 workers + Redis", c["ok"], c["seconds"], c["p99_ms"],
                 float(c_end) - c["t0"]))
print(f"{int(n):,} no-op jobs, {clients} concurrent clients, {cores} cores, 3 nodes/workers "
      f"x {cores} job concurrency each\n")
print("| peer | accepted | submits/s | submit p99 ms | all completed s | jobs/s end to end |")
print("|---|---:|---:|---:|---:|---:|")
for name, k, s, p99, total in rows:
    print(f"| {name} | {k:,} | {k / s:,.0f} | {p99:.2f} | {total:.2f} | {k / total:,.0f} |")
if len(rows) == 2:
    print(f"\nroost / Celery: x{(rows[0][1] / rows[0][4]) / (rows[1][1] / rows[1][4]):.2f} jobs/s end to end")
if int(failed):
    print(f"\nroost: {failed} jobs failed")
PYEOF
