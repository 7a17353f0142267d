#!/usr/bin/env bash
# The response cache's cost, side by side in one run: wrk -t1 -c64 on roost's GET /json (no
# middleware beyond the timing header) and on GET /expensive-query once cached (a HIT), then
# the same two on FastAPI (uvicorn, one worker) with the seed's SimpleCache decorator
# (bench/mw/fastapi_mw.py). Target: a roost HIT >= 0.9x roost's /json. One server at a time.
#   bash bench/mw/cache.sh            DURATION=10s ROOST_BIN=build/roost THREADS=2
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOST_BIN=${ROOST_BIN:-build/roost}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
source bench/common.sh
rps() { wrk -t1 -c64 -d"$DURATION" "$1" | awk '/Requests\/sec/ {print $2}'; }

declare -A R
port=$(bench_free_port)
"$ROOST_BIN" --port "$port" --threads "$THREADS" --data-dir "$bench_tmp/data" >"$bench_tmp/roost.log" 2>&1 &
rpid=$!
bench_track "$rpid"
bench_wait_http "http://127.0.0.1:$port/healthz"
curl -s -o /dev/null "http://127.0.0.1:$port/expensive-query" # the one fill, 2 s
[[ $(curl -s -D - -o /dev/null "http://127.0.0.1:$port/expensive-query") == *"X-Cache: HIT"* ]]
R[roost_json]=$(rps "http://127.0.0.1:$port/json")
R[roost_hit]=$(rps "http://127.0.0.1:$port/expensive-query")
hits=$(curl -s "http://127.0.0.1:$port/metrics" | awk -F' ' '/roost_cache_lookups_total\{result="hit"\}/ {print $2}')
kill "$rpid"

port=$(bench_free_port)
$PY -m uvicorn --app-dir bench/mw fastapi_mw:app --port "$port" --log-level warning \
    >"$bench_tmp/fastapi.log" 2>&1 &
fpid=$!
bench_track "$fpid"
bench_wait_http "http://127.0.0.1:$port/json"
curl -s -o /dev/null "http://127.0.0.1:$port/expensive-query"
R[fastapi_json]=$(rps "http://127.0.0.1:$port/json")
R[fastapi_hit]=$(rps "http://127.0.0.1:$port/expensive-query")
kill "$fpid"

echo "| server | GET /json req/s | GET /expensive-query HIT req/s | HIT / json |"
echo "|---|---:|---:|---:|"
for s in roost fastapi; do
    j=${R[${s}_json]} h=${R[${s}_hit]}
    echo "| $s | $j | $h | $(awk -v h="$h" -v j="$j" 'BEGIN {printf "%.2f", h / j}') |"
done
echo
echo "roost HIT vs FastAPI SimpleCache HIT: $(awk -v a="${R[roost_hit]}" -v b="${R[fastapi_hit]}" 'BEGIN {printf "%.1fx", a / b}'); roost cache hits counted: $hits"
