#!/usr/bin/env bash
# The rate limit's cost on GET /json, side by side in one run: the same roost binary twice, one
# with no rate limit, one with a --rate-limit on /json that always allows (so every request pays
# the glob match, the client's address, the striped table's lock and GCRA, and the five header
# fields), both running at once, measured in turns A B A B with wrk -t1 -c64. Target: <= 5%.
# Besides req/s (which the other sessions on these 2 cores move by +-40% from one run to the
# next), each run reports the server's CPU time per request (the sum of its threads'
# /proc/PID/task/*/schedstat run time over the run, divided by the requests served): what the
# middleware costs, whatever the neighbours do to the wall clock.
# With --redis, a third server in the same turns: the same policy shared through a local
# redis-server (--redis; issue 16), one Lua call per request, so its row shows what a shared
# limit costs against the local table (a round trip to Redis and back on the loop).
#   bash bench/mw/ratelimit.sh [--redis]  ROUNDS=3 DURATION=8s ROOST_BIN=build/roost THREADS=2
set -euo pipefail
SHARED=0
[[ ${1:-} == --redis ]] && SHARED=1
cd "$(dirname "$0")/../.."
ROOST_BIN=${ROOST_BIN:-build/roost}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8s}
THREADS=${THREADS:-2}
source bench/common.sh
tmp=$bench_tmp

cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'; }
# run URL PID: prints "req/s cpu_us_per_request"
run() {
    local c0 c1 out
    c0=$(cpu_ns "$2")
    out=$(wrk -t1 -c64 -d"$DURATION" "$1")
    c1=$(cpu_ns "$2")
    echo "$out" | awk -v c="$((c1 - c0))" '/requests in/ {n = $1} /Requests\/sec/ {r = $2}
        END {printf "%s %.2f\n", r, c / n / 1000}'
}

start() { # name, flags...
    local name=$1 port
    shift
    port=$(bench_free_port)
    "$ROOST_BIN" --port "$port" --threads "$THREADS" --data-dir "$tmp/$name" "$@" \
        >"$tmp/$name.log" 2>&1 &
    bench_track $!
    eval "pid_$name=$!"
    bench_wait_http "http://127.0.0.1:$port/healthz"
    eval "port_$name=$port"
}

POLICY='/json rate=1000000/s burst=1000000 key=ip name=bench'
start none
start ratelimit --rate-limit "$POLICY"
[[ $(curl -s -D - -o /dev/null "http://127.0.0.1:$port_ratelimit/json") == *'RateLimit: "bench"'* ]]
if ((SHARED)); then
    rport=$(bench_free_port)
    redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" \
        >"$tmp/redis.log" 2>&1 &
    bench_track $!
    for _ in $(seq 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
    start shared --rate-limit "$POLICY" --redis "redis://127.0.0.1:$rport/0"
    [[ $(curl -s -D - -o /dev/null "http://127.0.0.1:$port_shared/json") == *'RateLimit: "bench"'* ]]
fi

if ((SHARED)); then
    echo "| round | none req/s | rate limit req/s | shared (Redis) req/s | none CPU us/req |" \
        "rate limit CPU us/req | shared CPU us/req | CPU cost | shared CPU cost |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
else
    echo "| round | none req/s | rate limit req/s | none CPU us/req | rate limit CPU us/req | CPU cost |"
    echo "|---|---:|---:|---:|---:|---:|"
fi
pct() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%+.1f%%", (b - a) / a * 100}'; }
all=""
for r in $(seq 1 "$ROUNDS"); do
    read -r ra ca < <(run "http://127.0.0.1:$port_none/json" "$pid_none")
    read -r rb cb < <(run "http://127.0.0.1:$port_ratelimit/json" "$pid_ratelimit")
    if ((SHARED)); then
        read -r rc cc < <(run "http://127.0.0.1:$port_shared/json" "$pid_shared")
        all="$all $ra $rb $rc $ca $cb $cc"
        echo "| $r | $ra | $rb | $rc | $ca | $cb | $cc | $(pct "$ca" "$cb") | $(pct "$ca" "$cc") |"
    else
        all="$all $ra $rb $ca $cb"
        echo "| $r | $ra | $rb | $ca | $cb | $(pct "$ca" "$cb") |"
    fi
done
if ((SHARED)); then
    echo "$all" | awk '{for (i = 1; i <= NF; i += 6) {ra += $i; rb += $(i+1); rc += $(i+2);
        ca += $(i+3); cb += $(i+4); cc += $(i+5); n++}
        printf "| mean | %.0f | %.0f | %.0f | %.2f | %.2f | %.2f | %+.1f%% | %+.1f%% |\n", ra/n, rb/n,
            rc/n, ca/n, cb/n, cc/n, (cb-ca)/ca*100, (cc-ca)/ca*100}'
    shared_allowed=$(curl -s "http://127.0.0.1:$port_shared/metrics" |
        awk '/roost_rate_limit_total\{policy="bench",result="allowed"\}/ {print $2}')
    shared_failed=$(curl -s "http://127.0.0.1:$port_shared/metrics" |
        awk '/roost_redis_shared_failures_total/ {s += $2} END {print s + 0}')
    echo
    echo "shared: requests checked in Redis and allowed: $shared_allowed; not answered in time: $shared_failed"
else
    echo "$all" | awk '{for (i = 1; i <= NF; i += 4) {ra += $i; rb += $(i+1); ca += $(i+2); cb += $(i+3); n++}
        printf "| mean | %.0f | %.0f | %.2f | %.2f | %+.1f%% |\n", ra/n, rb/n, ca/n, cb/n, (cb-ca)/ca*100}'
fi
allowed=$(curl -s "http://127.0.0.1:$port_ratelimit/metrics" |
    awk '/roost_rate_limit_total\{policy="bench",result="allowed"\}/ {print $2}')
echo
echo "requests the policy checked and allowed: $allowed"
echo "CPU cost: the rate-limited server's CPU time per request over the plain one's, minus one"

# Instructions per request (callgrind, the loop thread only, one request at a time on one
# connection, N then 2N requests: bench/core/instr.sh): a count that the neighbours on the
# machine do not move, unlike req/s and CPU time. "old" has no rate limit, "new" the policy.
# CALLGRIND=0 skips it.
[ "${CALLGRIND:-1}" = 1 ] && command -v valgrind >/dev/null || exit 0
echo
N=${N:-5000} NEW_ARGS="--rate-limit '/json rate=1000000/s burst=1000000 key=ip name=bench'" \
    bash bench/core/instr.sh "$ROOST_BIN" "$ROOST_BIN" /json
