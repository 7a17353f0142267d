#!/usr/bin/env bash
# `make layers`: fails when a file under src/<layer>/ includes a header of a layer above its own
# (DESIGN.md section 2): arrows point down, an upper layer registers a callback instead.
# include/roost/ (the public API) may be included from any layer. It reads #include lines only
# (quoted or angled, "<folder>/<file>" where <folder> is a folder of src/); not what links.
set -euo pipefail
cd "$(dirname "$0")/.."

# Low to high.
ORDER=(base net core http mw ws fetch redis shared hub db jobs app)
declare -A RANK
for i in "${!ORDER[@]}"; do RANK[${ORDER[$i]}]=$i; done

bad=0
while IFS= read -r f; do
    layer=${f#src/}
    layer=${layer%%/*}
    if [[ -z ${RANK[$layer]+x} ]]; then
        echo "layers: $f: '$layer' is not a known layer (add it to scripts/check-layers.sh)"
        bad=1
        continue
    fi
    while IFS=: read -r line inc; do
        dep=${inc%%/*}
        [[ $dep == roost || ! -d src/$dep ]] && continue
        if [[ -z ${RANK[$dep]+x} ]]; then
            echo "layers: $f:$line: includes \"$inc\" of '$dep', which is not a known layer"
            bad=1
        elif ((RANK[$dep] > RANK[$layer])); then
            echo "layers: $f:$line: $layer includes \"$inc\" of $dep, a layer above it"
            bad=1
        fi
    done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*["<][A-Za-z0-9_]*/' "$f" |
        sed 's/^\([0-9]*\):[^"<]*["<]\([^">]*\)[">].*/\1:\2/')
done < <(find src -name '*.[ch]' | sort)

if ((bad)); then
    echo "layers: FAILED (low to high: ${ORDER[*]}; include/roost/ is allowed anywhere)"
    exit 1
fi
echo "layers: ok"
