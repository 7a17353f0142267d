#!/usr/bin/env bash
# Two roost binaries side by side in one run, through the shared kit: the HTTP section
# (/plaintext, /json, 16-deep pipelining) and the 10k-subscriber fan-out, alternated
# A B A B so that a noisy neighbour hurts both alike. For changes that must not slow roost down.
#   bash bench/core/before-after.sh OLD_BIN NEW_BIN        (ROUNDS=2, WRK_SECONDS=8)
set -euo pipefail
old=$(realpath "${1:?old binary}")
new=$(realpath "${2:?new binary}")
# KIT: a writable copy of the kit (run-all.sh builds tools/wsbench in it; ../shared is read-only)
kit=${KIT:-$(cd "$(dirname "$0")/../../../shared/bench" 2>/dev/null && pwd || echo /work/shared/bench)}
rounds=${ROUNDS:-2}
export FANOUTS_SPEC=${FANOUTS_SPEC:-"10000 200 100"}
for r in $(seq 1 "$rounds"); do
    for which in old new; do
        bin=$old
        [ "$which" = new ] && bin=$new
        echo "## round $r: $which ($bin)"
        ROOST_BIN=$bin "$kit/run-all.sh" --no-append --no-setup --peers roost --only http,ws 2>/dev/null |
            grep -E '^\|' || true
    done
done
