#!/usr/bin/env bash
# Static files side by side in one run: a 1 KB and a 1 MB file served by roost (--static,
# --threads 2) and by nginx (2 workers, sendfile on, tcp_nopush on, no open_file_cache: roost
# has none either), each loaded alone with wrk -t1 -c64 keep-alive after a warm-up.
# Prints a Markdown table with req/s, MB/s, p50/p99 and roost's ratio.
#   bash bench/mw/static.sh            WRK_SECONDS=10 ROOST_BIN=build/roost
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOST_BIN=${ROOST_BIN:-build/roost}
WRK_SECONDS=${WRK_SECONDS:-10}
PY=/usr/bin/python3
ulimit -n "$(ulimit -Hn)"
tmp=$(mktemp -d)
chmod 755 "$tmp" # nginx's workers run as an unprivileged user when started by root
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "${KEEP_TMP:-}" ] && echo "kept $tmp" >&2 || rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { $PY -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; return 1; }

mkdir -p "$tmp/www"
head -c 1024 /dev/urandom >"$tmp/www/1k.bin"
head -c 1048576 /dev/urandom >"$tmp/www/1m.bin"
chmod -R a+rX "$tmp/www"

nginx_port=$(free_port)
mkdir -p "$tmp/nginx"
cat >"$tmp/nginx/nginx.conf" <<EOF
worker_processes 2;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    server_tokens off;
    keepalive_requests 1000000;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path $tmp/nginx/body;
    proxy_temp_path $tmp/nginx/proxy;
    fastcgi_temp_path $tmp/nginx/fastcgi;
    uwsgi_temp_path $tmp/nginx/uwsgi;
    scgi_temp_path $tmp/nginx/scgi;
    server {
        listen 127.0.0.1:$nginx_port backlog=4096;
        location /static/ { alias $tmp/www/; }
    }
}
EOF
nginx -p "$tmp/nginx" -e "$tmp/nginx/error.log" -c "$tmp/nginx/nginx.conf" -g 'daemon off;' &
pids+=($!)

roost_port=$(free_port)
"$ROOST_BIN" --port "$roost_port" --threads 2 --data-dir "$tmp/data" \
    --static "/static=$tmp/www" >"$tmp/roost.log" 2>&1 &
pids+=($!)

wait_http "http://127.0.0.1:$nginx_port/static/1k.bin"
wait_http "http://127.0.0.1:$roost_port/static/1k.bin"
for port in "$nginx_port" "$roost_port"; do # both answer the same bytes
    curl -s "http://127.0.0.1:$port/static/1m.bin" | cmp - "$tmp/www/1m.bin"
done

# wrk's summary -> "req/s MB/s p50_ms p99_ms"
run_wrk() {
    wrk -t1 -c64 -d2s "$1" >/dev/null # warm-up
    wrk -t1 -c64 -d"${WRK_SECONDS}s" --latency "$1" | tee -a "$tmp/wrk.log" | $PY -c '
import re, sys
t = sys.stdin.read()
def ms(v):
    n, u = re.match(r"([\d.]+)(\w+)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1, "s": 1000}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
tr = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", t)
mb = float(tr.group(1)) * {"B": 1e-6, "KB": 1 / 1024, "MB": 1, "GB": 1024}[tr.group(2)]
p50 = ms(re.search(r"^\s+50%\s+(\S+)", t, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", t, re.M).group(1))
errs = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
print(f"{rps:.0f} {mb:.1f} {p50:.2f} {p99:.2f} {errs.group(1) if errs else 0}")'
}

echo "| file | server | req/s | MB/s | p50 ms | p99 ms | non-2xx | roost / nginx |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for f in 1k.bin 1m.bin; do
    read -r n_rps n_mb n_p50 n_p99 n_err <<<"$(run_wrk "http://127.0.0.1:$nginx_port/static/$f")"
    read -r r_rps r_mb r_p50 r_p99 r_err <<<"$(run_wrk "http://127.0.0.1:$roost_port/static/$f")"
    ratio=$($PY -c "print(f'{$r_rps / $n_rps:.2f}')")
    printf '| %s | nginx | %s | %s | %s | %s | %s | |\n' "$f" "$n_rps" "$n_mb" "$n_p50" "$n_p99" "$n_err"
    printf '| %s | roost | %s | %s | %s | %s | %s | **x%s** |\n' "$f" "$r_rps" "$r_mb" "$r_p50" "$r_p99" "$r_err" "$ratio"
done
