#!/usr/bin/env bash
# The cost and size of each gzip level on two bodies: roost's /large-data (1.2 MB, one item
# repeated with its id changing) and 10,000 varied items (names, prices, tags, dates; 1.3 MB,
# seeded), libdeflate beside zlib (compress2: deflate with a zlib wrapper, the same work as
# nginx's gzip). Single thread, no server.   bash bench/mw/gzip_levels.sh   (ROOST_BIN=build/roost)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOST_BIN=${ROOST_BIN:-build/roost}
source bench/common.sh
tmp=$bench_tmp
cc -O2 -o "$tmp/gzip_levels" bench/mw/gzip_levels.c -ldeflate -lz
port=$(bench_free_port)
"$ROOST_BIN" --port "$port" --threads 1 --data-dir "$tmp/data" >"$tmp/roost.log" 2>&1 &
spid=$!
bench_track $spid
bench_wait_http "http://127.0.0.1:$port/healthz"
curl -s "http://127.0.0.1:$port/large-data" >"$tmp/large.json"
$PY - "$tmp/items.json" <<'PY'
import json, random, sys
random.seed(1)
tags = ["red", "green", "blue", "sale", "new", "old", "big", "small"]
items = [{"id": i,
          "name": "".join(random.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(random.randint(5, 30))),
          "price": round(random.random() * 1000, 2),
          "tags": random.sample(tags, 3),
          "created": "2026-11-%02dT%02d:%02d:%02dZ" % (random.randint(1, 30), random.randint(0, 23),
                                                      random.randint(0, 59), random.randint(0, 59))}
         for i in range(10000)]
open(sys.argv[1], "w").write(json.dumps(items))
PY
echo "/large-data ($(wc -c <"$tmp/large.json") bytes):"
echo
"$tmp/gzip_levels" "$tmp/large.json"
echo
echo "10,000 varied items ($(wc -c <"$tmp/items.json") bytes):"
echo
"$tmp/gzip_levels" "$tmp/items.json"
