#!/usr/bin/env bash
# roost's data endpoints beside the seeds' FastAPI + async SQLAlchemy app (fastapi_app.py), in
# one run, on SQLite and on a PostgreSQL this script starts (initdb in a temporary folder,
# pg_ctl on a free port; as root through runuser -u postgres): seeds USERS users in each, then
# wrk GET /users/{id} (ids rotating) and POST /users (new names), and roost's own /json, and
# prints a Markdown table with roost's ratio to the FastAPI app. Stops everything it started.
#   ROOST_BIN (build/roost)  WRK_SECONDS (10)  CONNS (64)  USERS (1000)
#   ENGINES ("sqlite postgresql")  KEEP=1 keeps the wrk outputs (their folder is printed)
#   ROOST_BEFORE (unset): another roost binary (an older build) run the same way beside, as
#   "before", for a before/after table in the same run  ENDPOINTS ("get post"): the wrk runs
# On PostgreSQL each POST run also records pg_stat_wal's wal_sync and wal_write (WAL flushes
# and writes) around it, for flushes per request.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOST_BIN=${ROOST_BIN:-build/roost}
WRK_SECONDS=${WRK_SECONDS:-10}
CONNS=${CONNS:-64}
USERS=${USERS:-1000}
ENGINES=${ENGINES:-"sqlite postgresql"}
ROOST_BEFORE=${ROOST_BEFORE:-}
ENDPOINTS=${ENDPOINTS:-"get post"}
PY=/usr/bin/python3 # Debian's python sees python3-fastapi, -sqlalchemy, -aiosqlite, -asyncpg
HERE=bench/data

for tool in wrk "$ROOST_BIN"; do
    command -v "$tool" >/dev/null || { echo "missing: $tool (make; scripts/deps.sh)" >&2; exit 1; }
done
WORK=$(mktemp -d /tmp/roost-bench-data.XXXXXX)
chmod 755 "$WORK" # the postgres user must reach its folder inside
PIDS=()
PG_DATA=""

as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cleanup() {
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true
    done
    if [ -n "$PG_DATA" ]; then
        as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null 2>&1 || true
    fi
    if [ "${KEEP:-0}" = 1 ]; then echo "wrk outputs kept in $WORK/out" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() {
    $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_http() { # PORT PATH
    for _ in $(seq 200); do
        curl -s -o /dev/null "http://127.0.0.1:$1$2" && return 0
        sleep 0.1
    done
    echo "nothing answers on port $1" >&2
    return 1
}

stop_pid() {
    kill "$1" 2>/dev/null && wait "$1" 2>/dev/null || true
}

pg_start() {
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    local dir=$WORK/pg
    mkdir -p "$dir"
    [ "$(id -u)" -ne 0 ] || chown postgres: "$dir"
    as_postgres "$PG_BIN/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --no-sync \
        >"$dir/initdb.log" 2>&1
    PG_PORT=$(free_port)
    PG_DATA=$dir/data
    as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$dir/server.log" -w \
        -o "-p $PG_PORT -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200" start \
        >/dev/null
    for db in roost fastapi roost_before; do
        psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -c "CREATE DATABASE $db" postgres
    done
}

# pg_stat_wal's "wal_sync wal_write" (PostgreSQL 14+). A backend publishes its counts when idle
# for a second, or 10 s after its last report: wait that out before reading.
pg_wal() {
    sleep 11
    psql -X -q -A -t -F' ' -h 127.0.0.1 -p "$PG_PORT" -U postgres \
        -c "SELECT wal_sync, wal_write FROM pg_stat_wal" postgres 2>/dev/null || echo "0 0"
}

# wrk_to FILE URL [SCRIPT ARG]: a 2 s warm-up (FILE.warm), then the measured run. WAL=1: the
# WAL counters before the warm-up and after the run go to FILE.wal.
wrk_to() {
    local file=$1 url=$2
    local warm=("$url") run=("$url")
    if [ $# -ge 4 ]; then # the script's argument differs per run: POST /users needs new names
        warm=(-s "$3" "$url" -- "$4-warm")
        run=(-s "$3" "$url" -- "$4-run")
    fi
    [ "${WAL:-0}" = 0 ] || pg_wal >"$file.wal"
    wrk -t1 -c"$CONNS" -d2s "${warm[@]}" >"$file.warm" 2>&1 || true
    wrk -t1 -c"$CONNS" -d"${WRK_SECONDS}s" --latency "${run[@]}" >"$file" 2>&1 || true
    [ "${WAL:-0}" = 0 ] || pg_wal >>"$file.wal"
}

# start_roost NAME BIN DB: a roost on a free port; sets rport and rpid
start_roost() {
    rport=$(free_port)
    "$2" --port "$rport" --data-dir "$WORK/$1-$engine" --database "$3" \
        >"$WORK/$1-$engine.log" 2>&1 &
    rpid=$!
    PIDS+=("$rpid")
    wait_http "$rport" /healthz
    $PY "$HERE/seed.py" "$rport" "$USERS"
}

mkdir -p "$WORK/out"
for engine in $ENGINES; do
    if [ "$engine" = postgresql ]; then
        [ -n "$PG_DATA" ] || pg_start
        roost_db="postgresql://postgres@127.0.0.1:$PG_PORT/roost"
        before_db="postgresql://postgres@127.0.0.1:$PG_PORT/roost_before"
        fastapi_db="postgresql+asyncpg://postgres@127.0.0.1:$PG_PORT/fastapi"
    else
        roost_db="sqlite:$WORK/roost-sqlite/roost.db"
        before_db="sqlite:$WORK/before-sqlite/roost.db"
        fastapi_db="sqlite+aiosqlite:///$WORK/fastapi.db"
    fi
    bport="" bpid=""
    if [ -n "$ROOST_BEFORE" ]; then
        start_roost before "$ROOST_BEFORE" "$before_db"
        bport=$rport bpid=$rpid
    fi
    start_roost roost "$ROOST_BIN" "$roost_db"
    fport=$(free_port)
    (ulimit -n 65536 2>/dev/null || true
     cd "$HERE" && DATABASE_URL=$fastapi_db exec $PY -m uvicorn fastapi_app:app \
        --host 127.0.0.1 --port "$fport" --loop uvloop --http httptools --backlog 4096 \
        --no-access-log --log-level warning) >"$WORK/fastapi-$engine.log" 2>&1 &
    fpid=$!
    PIDS+=("$fpid")
    wait_http "$fport" /json
    $PY "$HERE/seed.py" "$fport" "$USERS"
    echo "== $engine: roost (pid $rpid, port $rport), FastAPI (pid $fpid, port $fport)" \
        "${bpid:+before (pid $bpid, port $bport)}" >&2
    for server in roost ${ROOST_BEFORE:+before} fastapi; do
        port=$rport
        [ "$server" = roost ] || port=$fport
        [ "$server" != before ] || port=$bport
        if [[ " $ENDPOINTS " = *" get "* ]]; then
            wrk_to "$WORK/out/$engine-$server-get.txt" "http://127.0.0.1:$port" \
                "$HERE/get_user.lua" "$USERS"
        fi
        if [[ " $ENDPOINTS " = *" post "* ]]; then
            WAL=$([ "$engine" = postgresql ] && echo 1 || echo 0) \
                wrk_to "$WORK/out/$engine-$server-post.txt" "http://127.0.0.1:$port" \
                "$HERE/post_user.lua" "$server$engine"
        fi
    done
    [[ " $ENDPOINTS " != *" get "* ]] ||
        wrk_to "$WORK/out/$engine-roost-json.txt" "http://127.0.0.1:$rport/json"
    stop_pid "$rpid"
    stop_pid "$fpid"
    [ -z "$bpid" ] || stop_pid "$bpid"
done

echo "wrk -t1 -c$CONNS -d${WRK_SECONDS}s --latency, $USERS users seeded, $(nproc) cores," \
    "$(date -u +%Y-%m-%d)"
echo
$PY "$HERE/report.py" "$WORK/out"
