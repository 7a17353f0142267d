#!/usr/bin/env bash
# TLS, roost beside nginx in one run with the same certificate (RSA 2048, made here by a
# throw-away CA): full handshakes a second (wrk over https with Connection: close, so each
# request is a new connection and a full handshake: wrk keeps no session) and /plaintext req/s
# over kept-alive TLS connections. nginx: 2 workers, TLS 1.2-1.3, tickets; roost: --threads 2.
# Rounds alternate nginx, roost so that a noisy neighbour hurts both alike; beside req/s, the
# server's CPU time per 1,000 requests (from /proc, all threads or workers) is a figure that a
# loaded machine disturbs less: on a shared 2-core box the client, not the server, is the limit.
#   bash bench/tls/run.sh [ROOST_BIN]          (ROUNDS=2, WRK_SECONDS=8, CONNS=64)
# Instructions per kept-alive TLS request (callgrind; the count a busy machine cannot move):
#   TLS=1 bash bench/core/instr.sh OLD_ROOST NEW_ROOST /plaintext
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$(realpath "${1:-$here/../../build/roost}")
rounds=${ROUNDS:-2}
secs=${WRK_SECONDS:-8}
conns=${CONNS:-64}
source "$here/../common.sh"
work=$bench_tmp

cd "$work"
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
    -subj "/CN=bench CA" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=localhost 2>/dev/null
echo "subjectAltName=DNS:localhost,IP:127.0.0.1" > ext.cnf
openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 \
    -extfile ext.cnf 2>/dev/null

nginx_port=$(bench_free_port)
mkdir -p nginx
cat > nginx/nginx.conf <<EOF
worker_processes 2;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    server_tokens off;
    keepalive_timeout 65s;
    keepalive_requests 1000000;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    server {
        listen 127.0.0.1:$nginx_port ssl backlog=4096;
        ssl_certificate $work/srv.pem;
        ssl_certificate_key $work/srv.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_tickets on;
        location = /plaintext { default_type text/plain; return 200 "Hello, World!"; }
    }
}
EOF
nginx -p "$work/nginx" -e "$work/nginx/error.log" -c "$work/nginx/nginx.conf" -g 'daemon off;' &
bench_track $!
nginx_pid=$!

roost_port=$(bench_free_port)
"$bin" --port "$roost_port" --threads 2 --tls-cert srv.pem --tls-key srv.key \
    --data-dir "$work/data" 2> roost.log &
bench_track $!
roost_pid=$!

for port in $nginx_port $roost_port; do
    for _ in $(seq 1 100); do
        curl -sf --cacert ca.pem "https://localhost:$port/plaintext" >/dev/null && break
        sleep 0.1
    done
done

# CPU ticks (utime + stime) of a process and its children (nginx's workers).
ticks() {
    local sum=0 p
    for p in "$1" $(pgrep -P "$1" || true); do
        sum=$((sum + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$sum"
}
hz=$(getconf CLK_TCK)
# Runs wrk against a server pid; prints "req/s cpu-ms-per-1000-requests".
measure() {
    local pid=$1
    shift
    local t0 t1 out
    t0=$(ticks "$pid")
    out=$(wrk "$@" 2>&1)
    t1=$(ticks "$pid")
    echo "$out" | awk -v t=$((t1 - t0)) -v hz="$hz" '
        / requests in / {n = $1}
        /Requests\/sec/ {r = $2}
        END {printf "%s %.1f\n", r, n ? t * 1000 / hz * 1000 / n : 0}'
}

declare -A hs ka hsc kac
for r in $(seq 1 "$rounds"); do
    for peer in nginx roost; do
        port=$nginx_port pid=$nginx_pid
        [ "$peer" = roost ] && port=$roost_port pid=$roost_pid
        read -r h hc < <(measure "$pid" -t2 -c32 -d"${secs}s" -H 'Connection: close' \
            "https://127.0.0.1:$port/plaintext")
        read -r k kc < <(measure "$pid" -t2 -c"$conns" -d"${secs}s" \
            "https://127.0.0.1:$port/plaintext")
        echo "round $r $peer: handshakes/s $h ($hc CPU ms/1k), keep-alive req/s $k ($kc CPU ms/1k)" >&2
        hs[$peer]="${hs[$peer]:-} $h"
        ka[$peer]="${ka[$peer]:-} $k"
        hsc[$peer]="${hsc[$peer]:-} $hc"
        kac[$peer]="${kac[$peer]:-} $kc"
    done
done

best() { tr ' ' '\n' | grep -v '^$' | sort -g | tail -1; }
least() { tr ' ' '\n' | grep -v '^$' | sort -g | head -1; }
echo "| peer | full handshakes/s | CPU ms / 1k handshakes | kept-alive /plaintext req/s | CPU ms / 1k requests |"
echo "| --- | ---: | ---: | ---: | ---: |"
for peer in nginx roost; do
    echo "| $peer | $(echo "${hs[$peer]}" | best) | $(echo "${hsc[$peer]}" | least) |" \
        "$(echo "${ka[$peer]}" | best) | $(echo "${kac[$peer]}" | least) |"
done
echo "(handshakes: wrk -t2 -c32 -H 'Connection: close'; kept-alive: wrk -t2 -c$conns)" 
echo "(best of $rounds rounds of ${secs}s each; wrk -t2; nginx 2 workers, roost --threads 2)"
