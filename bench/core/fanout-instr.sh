#!/usr/bin/env bash
# Instructions per WebSocket delivery of two roost binaries, under callgrind (a count: the same
# on a busy machine). SUBS subscribers in one room on one loop; M then 2M messages published
# by POST /broadcast; the difference over M*SUBS is what one delivery costs on the loop thread
# (the publish handler, the fan-out and the frames' writes; the per-second threads left out).
#   bash bench/core/fanout-instr.sh OLD_BIN NEW_BIN        (SUBS=500, M=20, RATE=20)
# Needs the kit's wsbench: WSBENCH=path (default: built from the kit into a temporary folder).
set -euo pipefail
old=$(realpath "${1:?old binary}")
new=$(realpath "${2:?new binary}")
SUBS=${SUBS:-500}
M=${M:-20}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
kit=$(cd "$(dirname "$0")/../../../shared/bench" 2>/dev/null && pwd || echo /work/shared/bench)
wsbench=${WSBENCH:-$tmp/wsbench}
[ -x "$wsbench" ] || cc -O2 -o "$wsbench" "$kit/tools/wsbench.c"
port() { /usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

run() { # bin messages -> total Ir of every thread
    local bin=$1 m=$2 p out
    p=$(port)
    out="$tmp/cg.$RANDOM"
    valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$out" "$bin" \
        --port "$p" --threads 1 --data-dir "$tmp/data" --ws-max-rate 1000000 >/dev/null 2>&1 &
    local pid=$!
    for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$p/healthz" && break; sleep 0.1; done
    "$wsbench" -u "ws://127.0.0.1:$p/ws/bench/u{i}" -n "$SUBS" -m "$m" -r "${RATE:-20}" -c 32 \
        --pub-url "http://127.0.0.1:$p/broadcast" --pub-body '{"room":"bench","message":"{msg}"}' \
        --ready-url "http://127.0.0.1:$p/rooms/bench/count" --ready-key online --pub-conns 1 \
        --connect-max 120 --settle-max 60 --drain-max 60 --max-time 600 >"$tmp/ws.txt" 2>&1 ||
        cat "$tmp/ws.txt" >&2
    grep -iE "delivered|lost" "$tmp/ws.txt" | head -2 >&2
    kill -TERM "$pid"
    wait "$pid" || true
    grep -l "loop_main" "$out"-* | xargs awk '/^summary:/ {print $2}' | sort -n | tail -1
}

echo "| binary | subscribers | instructions per delivery |"
echo "|---|---:|---:|"
for which in old new; do
    bin=$old
    [ "$which" = new ] && bin=$new
    one=$(run "$bin" "$M")
    two=$(run "$bin" $((2 * M)))
    echo "| $which | $SUBS | $(( (two - one) / (M * SUBS) )) |"
done
