#!/usr/bin/env bash
# The cost of observability on GET /json: one binary started twice, with per-route metrics and
# tracing on (the defaults) and with --metrics off --tracing off, side by side; wrk -t1 -c64
# against each in turn, ROUNDS times alternated, so drift on a shared machine hits both alike.
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

start() { # NAME ARGS...: starts a server, prints its port
    local name=$1 port
    shift
    port=$(free_port)
    mkdir -p "$WORK/$name"
    "$ROOST_BIN" --port "$port" --threads "$THREADS" --data-dir "$WORK/$name" "$@" \
        >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 200); do
        curl -s -o /dev/null "http://127.0.0.1:$port/json" && { echo "$port"; return 0; }
        sleep 0.1
    done
    echo "$name did not start: $(tail -5 "$WORK/$name.log")" >&2
    exit 1
}

rps() { # PORT
    wrk -t1 -c"$CONNS" -d"${WRK_SECONDS}s" "http://127.0.0.1:$1/json" |
        awk '/^Requests\/sec/ {print $2}'
}

ON=$(start on)
OFF=$(start off --metrics off --tracing off)
rps "$ON" >/dev/null # warm both up
rps "$OFF" >/dev/null
on_all=() off_all=()
for r in $(seq "$ROUNDS"); do
    if ((r % 2)); then a=$(rps "$ON"); b=$(rps "$OFF"); else b=$(rps "$OFF"); a=$(rps "$ON"); fi
    on_all+=("$a")
    off_all+=("$b")
    echo "round $r: on $a req/s, off $b req/s" >&2
done
$PY - "${on_all[*]}" "${off_all[*]}" <<'PYEOF'
import statistics, sys
on = [float(x) for x in sys.argv[1].split()]
off = [float(x) for x in sys.argv[2].split()]
mon, moff = statistics.median(on), statistics.median(off)
print("| /json, wrk -t1 -c64 | median req/s | rounds |")
print("|---|---|---|")
print(f"| metrics + tracing on | {mon:,.0f} | {' '.join(f'{x:,.0f}' for x in on)} |")
print(f"| --metrics off --tracing off | {moff:,.0f} | {' '.join(f'{x:,.0f}' for x in off)} |")
# Rounds are pairs run back to back: the median of the pairs' costs is the steadier number on a
# shared machine, whose load drifts between rounds more than between the two halves of one.
pairs = sorted(100 * (b - a) / b for a, b in zip(on, off))
print(f"\ncost of the medians: {100 * (moff - mon) / moff:+.1f}%; median of the {len(pairs)} "
      f"paired rounds' costs: {statistics.median(pairs):+.1f}% (target <= 3%)")
PYEOF
