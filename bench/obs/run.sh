#!/usr/bin/env bash
# The cost of observability on GET /json: one binary started twice, with per-route metrics and
# tracing on (the defaults) and with --metrics off --tracing off, side by side; wrk -t1 -c64
# against each in turn, ROUNDS times alternated, so drift on a shared machine hits both alike.
# Beside req/s, each round reads the server's CPU time (all threads' utime + stime from
# /proc/PID/stat, 10 ms ticks: ~1% of a 3 s round) over the requests wrk counted: CPU per
# request moves less than req/s when other processes take the cores (a machine shared by agents).
# Prints each round and a Markdown table of the medians with the cost in percent (target <= 3).
#   ROOST_BIN (build/roost)  WRK_SECONDS (5)  ROUNDS (5)  CONNS (64)  THREADS (1)
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${ROOST_BIN:=build/roost}" "${WRK_SECONDS:=5}" "${ROUNDS:=5}" "${CONNS:=64}" "${THREADS:=1}"
PY=/usr/bin/python3

for tool in wrk "$ROOST_BIN"; do
    command -v "$tool" >/dev/null || { echo "missing: $tool (make; scripts/deps.sh)" >&2; exit 1; }
done
WORK=$(mktemp -d /tmp/roost-bench-obs.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() { # NAME ARGS...: starts a server; sets PORT and PID (not in a subshell: the EXIT trap
          # must see every PID, or the servers outlive the script)
    local name=$1
    shift
    PORT=$(free_port)
    mkdir -p "$WORK/$name"
    "$ROOST_BIN" --port "$PORT" --threads "$THREADS" --data-dir "$WORK/$name" "$@" \
        >"$WORK/$name.log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
    for _ in $(seq 200); do
        curl -s -o /dev/null "http://127.0.0.1:$PORT/json" && return 0
        sleep 0.1
    done
    echo "$name did not start: $(tail -5 "$WORK/$name.log")" >&2
    exit 1
}

TICK_NS=$((1000000000 / $(getconf CLK_TCK)))
cpu_ns() { # PID: CPU time of all its threads so far (utime + stime, in ns;
           # mawk: %d stops at 2^31, hence %.0f)
    awk -v tick="$TICK_NS" '{sub(/.*\) /, ""); printf "%.0f", ($12 + $13) * tick}' /proc/"$1"/stat
}

round() { # PORT PID -> "req/s CPU-us-per-request"
    local before after
    before=$(cpu_ns "$2")
    wrk -t1 -c"$CONNS" -d"${WRK_SECONDS}s" "http://127.0.0.1:$1/json" >"$WORK/wrk.out"
    after=$(cpu_ns "$2")
    awk -v cpu=$((after - before)) '/ requests in / {n = $1} /^Requests\/sec/ {r = $2}
        END {printf "%s %.3f\n", r, cpu / n / 1000}' "$WORK/wrk.out"
}

start on
ON=$PORT ON_PID=$PID
start off --metrics off --tracing off
OFF=$PORT OFF_PID=$PID
round "$ON" "$ON_PID" >/dev/null # warm both up
round "$OFF" "$OFF_PID" >/dev/null
on_all=() off_all=() on_cpu=() off_cpu=()
for r in $(seq "$ROUNDS"); do
    if ((r % 2)); then
        a=($(round "$ON" "$ON_PID")) b=($(round "$OFF" "$OFF_PID"))
    else
        b=($(round "$OFF" "$OFF_PID")) a=($(round "$ON" "$ON_PID"))
    fi
    on_all+=("${a[0]}") on_cpu+=("${a[1]}")
    off_all+=("${b[0]}") off_cpu+=("${b[1]}")
    echo "round $r: on ${a[0]} req/s ${a[1]} us/req, off ${b[0]} req/s ${b[1]} us/req" >&2
done
$PY - "${on_all[*]}" "${off_all[*]}" "${on_cpu[*]}" "${off_cpu[*]}" <<'PYEOF'
import statistics, sys
on, off, con, coff = ([float(x) for x in a.split()] for a in sys.argv[1:5])
med = statistics.median
print(f"| /json, wrk -t1 -c64 | median req/s | median CPU us/request | req/s rounds |")
print("|---|---:|---:|---|")
print(f"| metrics + tracing on | {med(on):,.0f} | {med(con):.2f} | "
      f"{' '.join(f'{x:,.0f}' for x in on)} |")
print(f"| --metrics off --tracing off | {med(off):,.0f} | {med(coff):.2f} | "
      f"{' '.join(f'{x:,.0f}' for x in off)} |")
# Rounds are pairs run back to back: the median of the pairs' costs is the steadier number on a
# shared machine, whose load drifts between rounds more than between the two halves of one.
pairs = sorted(100 * (b - a) / b for a, b in zip(on, off))
cpairs = sorted(100 * (a - b) / b for a, b in zip(con, coff))
print(f"\nreq/s: cost of the medians {100 * (med(off) - med(on)) / med(off):+.1f}%, median of the "
      f"{len(pairs)} paired rounds' costs {med(pairs):+.1f}%; CPU per request: "
      f"{100 * (med(con) - med(coff)) / med(coff):+.1f}% of the medians, {med(cpairs):+.1f}% "
      f"paired (target <= 3%)")
PYEOF
