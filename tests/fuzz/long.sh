#!/usr/bin/env bash
# `make fuzz-long`: runs each libFuzzer target (or those named) for FUZZ_SECONDS (default 600)
# over its committed corpus tests/fuzz/corpus/<target>/, then minimizes that corpus with
# -merge=1 so that it keeps only inputs that add coverage. New inputs are gathered in a
# temporary folder first, so a failing run leaves the committed corpus as it was; a crash
# input is kept in build/fuzz/artifacts/. Commit the corpus folders after a run.
set -uo pipefail
cd "$(dirname "$0")/../.."

FUZZ_SECONDS=${FUZZ_SECONDS:-600}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=($(cd build/fuzz && ls fuzz_* | grep -v '\.'))
mkdir -p build/fuzz/artifacts
status=0
for name in "${targets[@]}"; do
    f=build/fuzz/$name
    corpus=tests/fuzz/corpus/$name
    mkdir -p "$corpus"
    found=$(mktemp -d)
    merged=$(mktemp -d)
    echo "== $name: ${FUZZ_SECONDS}s over $(ls "$corpus" | wc -l) inputs"
    if ! "$f" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="build/fuzz/artifacts/$name-" "$found" "$corpus" \
        >"build/fuzz/$name.long.log" 2>&1; then
        echo "FAIL $name (log: build/fuzz/$name.long.log)"
        grep -E 'SUMMARY|Test unit written|^tests/fuzz/' "build/fuzz/$name.long.log" | head -5
        status=1
    elif "$f" -merge=1 -rss_limit_mb=2048 "$merged" "$corpus" "$found" \
        >"build/fuzz/$name.merge.log" 2>&1; then
        rm -f "$corpus"/*
        cp "$merged"/* "$corpus"/ 2>/dev/null
        echo "ok   $name: $(ls "$corpus" | wc -l) inputs, $(cat "$corpus"/* 2>/dev/null | wc -c) bytes"
    else
        echo "FAIL $name: merge (log: build/fuzz/$name.merge.log)"
        status=1
    fi
    rm -rf "$found" "$merged"
done
exit $status
