#!/usr/bin/env bash
# Instructions per request of two roost binaries, under callgrind (a count, not a time: the same
# on a busy machine). Each binary serves N pipelined requests of PATH on one connection with one
# loop, then 2N; the difference over N is what a request costs (start, stop and the readiness
# polls cancel out).
#   bash bench/core/instr.sh OLD_BIN NEW_BIN [PATH...]     (N=20000; DEPTH=16: pipelined; TLS=0)
# OLD_ARGS / NEW_ARGS: extra flags for each (one binary with and without a middleware:
#   NEW_ARGS="--rate-limit '/json rate=1000000/s'" bash bench/core/instr.sh build/roost build/roost /json;
#   or with metrics and tracing off: OLD_ARGS="--metrics off --tracing off").
# With TLS=1 both serve HTTPS (a self-signed certificate made here; TLS 1.3, the client's
# default cipher): what the TLS layer adds per kept-alive request. KEEP=DIR keeps the callgrind
# files there (callgrind_annotate them). STATS=1 adds, per request, the simulated D1 and
# last-level cache misses (callgrind's cache simulator, a fixed 32 KB D1 and 8 MB LL so that
# machines compare) and the locked instructions run (atomic adds and swaps: bench/core/cgstats.py).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
old=$(realpath "${1:?old binary}")
new=$(realpath "${2:?new binary}")
shift 2
paths=("${@:-/plaintext}")
[ $# -eq 0 ] && paths=(/plaintext /json)
N=${N:-20000}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
scheme=http
tls_args=()
if [ "${TLS:-0}" = 1 ]; then
    scheme=https
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/k.pem" -out "$tmp/c.pem" -days 2 \
        -subj /CN=localhost 2>/dev/null
    tls_args=(--tls-cert "$tmp/c.pem" --tls-key "$tmp/k.pem")
fi
port() { /usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

send() { # port path n scheme: DEPTH requests at a time (default 1) on one kept-alive
         # connection, so that every batch is one read and one write whatever the machine's load
    /usr/bin/python3 - "$@" "${DEPTH:-1}" <<'PY'
import socket, ssl, sys
port, path, n, depth = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[5])
s = socket.create_connection(("127.0.0.1", port))
if sys.argv[4] == "https":
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = ctx.wrap_socket(s)
req = f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
buf = b""
for _ in range(n // depth):
    s.sendall(req * depth)
    for _ in range(depth):
        while b"\r\n\r\n" not in buf:
            buf += s.recv(65536)
        head, _, rest = buf.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(rest) < length:
            rest += s.recv(65536)
        buf = rest[length:]
s.close()
PY
}

run() { # bin path n args -> total Ir
    local bin=$1 path=$2 n=$3 args=$4 p out
    p=$(port)
    out="$tmp/cg.$RANDOM"
    local extra=()
    [ -n "$args" ] && eval "extra=($args)"
    local stats=()
    [ "${STATS:-0}" = 1 ] && stats=(--cache-sim=yes --dump-instr=yes --I1=32768,8,64
        --D1=32768,8,64 --LL=8388608,16,64)
    valgrind --tool=callgrind --separate-threads=yes "${stats[@]}" --callgrind-out-file="$out" "$bin" \
        --port "$p" --threads 1 --data-dir "$tmp/data" "${tls_args[@]}" "${extra[@]}" >/dev/null 2>&1 &
    local pid=$!
    for _ in $(seq 200); do curl -sk -o /dev/null "$scheme://127.0.0.1:$p/healthz" && break; sleep 0.1; done
    [ "$n" -gt 0 ] && send "$p" "$path" "$n" "$scheme"
    kill -TERM "$pid"
    wait "$pid" || true
    # The loop thread's count only: the other threads (watchdog, job dispatcher, idle workers)
    # work per second, not per request.
    local f
    f=$(grep -l "loop_main" "$out"-* | xargs awk '/^summary:/ {print $2, FILENAME}' | sort -n |
        tail -1 | cut -d' ' -f2)
    if [ "${STATS:-0}" = 1 ]; then
        /usr/bin/python3 "$here/cgstats.py" "$f"
    else
        awk '/^summary:/ {print $2}' "$f"
    fi
    [ -n "${KEEP:-}" ] && mkdir -p "$KEEP" && cp "$out"-* "$KEEP/" || true
}

if [ "${STATS:-0}" = 1 ]; then
    echo "| binary | path | instructions | D1 misses | LL misses | locked instructions |"
    echo "|---|---|---:|---:|---:|---:|"
else
    echo "| binary | path | instructions per request |"
    echo "|---|---|---:|"
fi
for path in "${paths[@]}"; do
    for which in old new; do
        bin=$old args=${OLD_ARGS:-}
        [ "$which" = new ] && bin=$new args=${NEW_ARGS:-}
        one=($(run "$bin" "$path" "$N" "$args"))
        two=($(run "$bin" "$path" $((2 * N)) "$args"))
        row="| $which | $path |"
        for i in "${!one[@]}"; do # per request: (2N - N) / N, two decimals under 10
            row+=" $(awk -v a="${one[$i]}" -v b="${two[$i]}" -v n="$N" \
                'BEGIN { d = (b - a) / n; printf(d < 10 && d > -10 ? "%.2f" : "%d", d) }') |"
        done
        echo "$row"
    done
done
