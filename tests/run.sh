#!/usr/bin/env bash
# Runs every test of roost after `make test` has built them: the C unit tests (sanitizer build),
# the end-to-end tests (pytest against build/asan/roost), the Debian packages (tests/debian/),
# and a short libFuzzer run of every fuzz target over its committed corpus. Ends with one line:
# "N passed, N failed".
#   FUZZ_SECONDS (default 30) bounds each fuzz target; E2E_ARGS passes extra pytest arguments.
set -uo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-30}
passed=0
failed=0
logdir=$(mktemp -d)
trap 'rm -rf "$logdir"' EXIT

echo "== unit tests (ASan + UBSan)"
./build/asan/unit_tests >"$logdir/unit.log" 2>&1
grep -E '^FAIL|CHECK failed|ERROR: AddressSanitizer|runtime error' "$logdir/unit.log"
line=$(grep -E '^unit: [0-9]+ passed, [0-9]+ failed' "$logdir/unit.log" | tail -1)
if [ -n "$line" ]; then
    passed=$((passed + $(echo "$line" | awk '{print $2}')))
    failed=$((failed + $(echo "$line" | awk '{print $4}')))
    if grep -qE 'ERROR: AddressSanitizer|runtime error' "$logdir/unit.log"; then
        failed=$((failed + 1))
    fi
    echo "$line"
else
    tail -20 "$logdir/unit.log"
    echo "unit: the test binary crashed"
    failed=$((failed + 1))
fi

echo "== end-to-end tests (build/asan/roost)"
ROOST_BIN=${ROOST_BIN:-$PWD/build/asan/roost} /usr/bin/python3 -m pytest tests/e2e -q \
    -p no:cacheprovider ${E2E_ARGS:-} 2>&1 | tee "$logdir/e2e.log" | grep -vE '^\.*( *\[ *[0-9]+%\])?$'
summary=$(tail -1 "$logdir/e2e.log")
e2e_passed=$(echo "$summary" | grep -oE '[0-9]+ passed' | awk '{print $1}')
e2e_failed=$(echo "$summary" | grep -oE '[0-9]+ (failed|error|errors)' | awk '{s += $1} END {print s + 0}')
if [ -z "$e2e_passed" ] && [ "$e2e_failed" -eq 0 ]; then
    e2e_failed=1 # pytest itself broke
fi
passed=$((passed + ${e2e_passed:-0}))
failed=$((failed + e2e_failed))

# The Debian packages, built in a copy of the tree (tests/debian/test_debian.py): a few minutes.
echo "== Debian packages (dpkg-buildpackage, lintian, the packaged server)"
/usr/bin/python3 -m pytest tests/debian -q -p no:cacheprovider 2>&1 | tee "$logdir/deb.log" |
    grep -vE '^\.*( *\[ *[0-9]+%\])?$'
deb_summary=$(tail -1 "$logdir/deb.log")
deb_passed=$(echo "$deb_summary" | grep -oE '[0-9]+ passed' | awk '{print $1}')
deb_failed=$(echo "$deb_summary" | grep -oE '[0-9]+ (failed|error|errors)' | awk '{s += $1} END {print s + 0}')
[ -n "$deb_passed" ] || echo "$deb_summary" | grep -q skipped || deb_failed=$((deb_failed + 1))
passed=$((passed + ${deb_passed:-0}))
failed=$((failed + deb_failed))

echo "== fuzzing (${FUZZ_SECONDS}s per target)"
for f in build/fuzz/fuzz_*; do
    [ -x "$f" ] || continue
    name=$(basename "$f")
    # The committed corpus (tests/fuzz/corpus/<target>/, grown by `make fuzz-long`) is read,
    # never written: libFuzzer writes new inputs into the first folder, a temporary one.
    found="$logdir/$name-found"
    mkdir -p "$found" "tests/fuzz/corpus/$name"
    if "$f" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$logdir/$name-" "$found" "tests/fuzz/corpus/$name" \
        >"$logdir/$name.log" 2>&1; then
        runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$logdir/$name.log" | grep -oE '[0-9]+$')
        echo "ok   $name ($runs runs)"
        passed=$((passed + 1))
    else
        echo "FAIL $name"
        grep -E 'ERROR|SUMMARY|Test unit written|^tests/fuzz/' "$logdir/$name.log" | head -10
        for a in "$logdir/$name"-crash-* "$logdir/$name"-leak-* "$logdir/$name"-timeout-*; do
            [ -f "$a" ] || continue # the input, so that a CI failure can be replayed here
            echo "input ($(basename "$a")), base64:"
            base64 -w 0 "$a" | head -c 8192
            echo
        done
        failed=$((failed + 1))
    fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
