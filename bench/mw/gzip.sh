#!/usr/bin/env bash
# gzip side by side in one run: GET /large-data (10,000 items, 1.2 MB of JSON, a shared body made
# once) with Accept-Encoding: gzip from roost (libdeflate, --gzip-level 1 and 6, compressing each
# request with --gzip-cache-bytes 0, then with its gzip kept, the default), nginx serving the same
# bytes as a static file (`gzip on`, gzip_comp_level 1, its default, and 6; then `gzip_static on`
# with a .gz made beforehand, its twin of roost's kept gzip), and FastAPI with
# GZipMiddleware(minimum_size=1000); then the filter's cost on /json (27 bytes, below the
# minimum: not compressed) as roost --gzip on vs --gzip off, alternated three times. One server at a
# time, each with 2 threads / workers; wrk -t1 for WRK_SECONDS after a 2 s warm-up.
#   bash bench/mw/gzip.sh           WRK_SECONDS=5 ROOST_BIN=build/roost
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOST_BIN=${ROOST_BIN:-build/roost}
SECS=${WRK_SECONDS:-10}
PY=/usr/bin/python3
ulimit -n "$(ulimit -Hn)"
source bench/common.sh
tmp=$bench_tmp
chmod 755 "$tmp" # nginx's workers read the file there
# CPU time (clock ticks) of the server $spid and its child processes (nginx's and uvicorn's workers)
cpu_ticks() {
    local t=0 p
    for p in $spid $(pgrep -P "$spid" 2>/dev/null); do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo "$t"
}
# wrk on url with conns connections, after a 2 s warm-up: "req/s | server CPU ms a request" (the
# CPU figure is the one the neighbours on a shared machine move least)
load() { # url conns [header]
    local h=() t0 t1 out
    [ $# -ge 3 ] && h=(-H "$3")
    wrk -t1 -c"$2" -d2s --timeout 30s "${h[@]}" "$1" >/dev/null 2>&1
    t0=$(cpu_ticks)
    out=$(wrk -t1 -c"$2" -d"${SECS}s" --timeout 30s "${h[@]}" "$1")
    t1=$(cpu_ticks)
    echo "$out" | awk -v ticks=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" '
        / requests in / {n = $1} /Requests\/sec/ {r = $2}
        END {printf "%.1f | %.3f", r, n ? ticks * 1000 / hz / n : 0}'
}
rps_of() { echo "${1%% |*}"; }
gz_bytes() { curl -s -H 'Accept-Encoding: gzip' "$1" | wc -c; }

start_roost() { # args...
    port=$(bench_free_port)
    "$ROOST_BIN" --port "$port" --threads 2 --data-dir "$tmp/data" "$@" >"$tmp/roost.log" 2>&1 &
    spid=$!
    bench_track $spid
    bench_wait_http "http://127.0.0.1:$port/healthz"
}
stop() { kill "$spid"; wait "$spid" 2>/dev/null || true; sleep 1; }

GZ='Accept-Encoding: gzip'
echo "| /large-data, Accept-Encoding: gzip, 16 connections | level | gzip bytes | req/s | server CPU ms/req |"
echo "|---|---:|---:|---:|---:|"
declare -A rps
for lvl in 1 6; do
    start_roost --gzip-level "$lvl" --gzip-cache-bytes 0
    url="http://127.0.0.1:$port/large-data"
    curl -s "$url" >"$tmp/large.json" # the same bytes for nginx
    rps[roost$lvl]=$(load "$url" 16 "$GZ")
    echo "| roost (libdeflate), compressed per request | $lvl | $(gz_bytes "$url") | ${rps[roost$lvl]} |"
    stop
done
for lvl in 1 6; do
    start_roost --gzip-level "$lvl"
    url="http://127.0.0.1:$port/large-data"
    rps[roostc$lvl]=$(load "$url" 16 "$GZ")
    echo "| roost (libdeflate), gzip kept (--gzip-cache-bytes default) | $lvl | $(gz_bytes "$url") | ${rps[roostc$lvl]} |"
    stop
done

mkdir -p "$tmp/www"
cp "$tmp/large.json" "$tmp/www/large-data"
for lvl in 1 6 static; do
    gz="gzip on;"
    if [ "$lvl" = static ]; then # the .gz made once beforehand, at level 6
        gzip -6 -c "$tmp/www/large-data" >"$tmp/www/large-data.gz"
        gz="gzip_static on;"
    fi
    port=$(bench_free_port)
    cat >"$tmp/nginx.conf" <<NGX
worker_processes 2;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $tmp/cb; proxy_temp_path $tmp/px; fastcgi_temp_path $tmp/fc;
    uwsgi_temp_path $tmp/uw; scgi_temp_path $tmp/sc;
    server {
        listen 127.0.0.1:$port;
        root $tmp/www;
        default_type application/json;
        $gz
        gzip_types application/json;
        gzip_min_length 1000;
        gzip_comp_level ${lvl/static/6};
    }
}
NGX
    nginx -p "$tmp" -c "$tmp/nginx.conf" -g 'daemon off;' 2>>"$tmp/nginx-error.log" &
    spid=$!
    bench_track $spid
    bench_wait_http "http://127.0.0.1:$port/large-data"
    url="http://127.0.0.1:$port/large-data"
    rps[nginx$lvl]=$(load "$url" 16 "$GZ")
    what="gzip on (static file)"
    [ "$lvl" = static ] && what="gzip_static on (a .gz made beforehand)"
    echo "| nginx $what | ${lvl/static/6} | $(gz_bytes "$url") | ${rps[nginx$lvl]} |"
    stop
done

port=$(bench_free_port)
$PY -m uvicorn --app-dir bench/mw fastapi_gzip:app --port "$port" --workers 2 \
    --log-level warning --no-access-log >"$tmp/fastapi.log" 2>&1 &
spid=$!
bench_track $spid
bench_wait_http "http://127.0.0.1:$port/json"
url="http://127.0.0.1:$port/large-data"
rps[fastapi]=$(load "$url" 16 "$GZ")
echo "| FastAPI GZipMiddleware (2 workers) | 9 | $(gz_bytes "$url") | ${rps[fastapi]} |"
stop

echo
ratio() { # of req/s
    local a b
    a=$(rps_of "$1")
    b=$(rps_of "$2")
    $PY -c "print(f'{$a/max($b,0.1):.2f}x')"
}
cpu_ratio() { # CPU a request of the second over the first's: how many times less roost spends
    $PY -c "print(f'{${2##*| }/max(${1##*| },0.000001):.2f}x')"
}
echo "Per request: roost 1 / nginx 1: $(ratio "${rps[roost1]}" "${rps[nginx1]}");" \
    "roost 6 / nginx 6: $(ratio "${rps[roost6]}" "${rps[nginx6]}");" \
    "roost 6 / nginx 1: $(ratio "${rps[roost6]}" "${rps[nginx1]}")." \
    "Kept: roost 1 / nginx gzip_static: $(ratio "${rps[roostc1]}" "${rps[nginxstatic]}");" \
    "roost 1 kept / nginx 1 (each default): $(ratio "${rps[roostc1]}" "${rps[nginx1]}");" \
    "roost 1 / FastAPI: $(ratio "${rps[roost1]}" "${rps[fastapi]}")."
echo "CPU a request, nginx over roost: level 1 $(cpu_ratio "${rps[roost1]}" "${rps[nginx1]}"), level 6" \
    "$(cpu_ratio "${rps[roost6]}" "${rps[nginx6]}"); kept, gzip_static over roost:" \
    "$(cpu_ratio "${rps[roostc6]}" "${rps[nginxstatic]}")"
echo
echo "| /json, 64 connections | run 1 req/s | run 2 req/s | run 3 req/s | mean |"
echo "|---|---:|---:|---:|---:|"
declare -A js
for run in 1 2 3; do
    for mode in on off; do
        start_roost --gzip "$mode"
        js[$mode$run]=$(rps_of "$(load "http://127.0.0.1:$port/json" 64 "$GZ")")
        stop
    done
done
for mode in off on; do
    echo "| roost --gzip $mode | ${js[${mode}1]} | ${js[${mode}2]} | ${js[${mode}3]} |" \
        "$($PY -c "print(round((${js[${mode}1]} + ${js[${mode}2]} + ${js[${mode}3]}) / 3))") |"
done
$PY -c "on=${js[on1]}+${js[on2]}+${js[on3]}; off=${js[off1]}+${js[off2]}+${js[off3]}; print(f'filter cost on /json: {(1-on/off)*100:+.1f}% of req/s (negative: on was faster, i.e. noise)')"
