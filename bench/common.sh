# Helpers for the benchmark scripts (source it): a scratch folder and the servers started, both
# cleaned up on exit, a free port, and waiting for a server to answer. Not a runner: each
# script still says what it compares and prints its own table.
PY=${PY:-/usr/bin/python3}
bench_tmp=$(mktemp -d)
bench_pids=()
bench_cleanup() {
    for p in "${bench_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$bench_tmp"
}
trap bench_cleanup EXIT
# Remembers a background process for the cleanup: `cmd & bench_track $!`.
bench_track() { bench_pids+=("$1"); }
bench_free_port() {
    $PY -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'
}
# Waits up to 10 s for URL to answer.
bench_wait_http() {
    for _ in $(seq 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done
    return 1
}
