#!/usr/bin/env python3
"""One callgrind file (a thread's, from --cache-sim=yes --dump-instr=yes) as four numbers:
instructions, D1 misses (reads + writes), last-level misses, and locked instructions run (a
`lock`-prefixed op or an xchg with memory: an atomic read-modify-write, which costs cycles that
neither an instruction count nor the cache simulator shows). The locked ones are found by
disassembling every object the thread ran (objdump) and summing the counts of those addresses.
Not a profile viewer: callgrind_annotate is that.
    cgstats.py FILE        ->  "Ir D1miss LLmiss locked"
    cgstats.py -v FILE     ->  and where the locked instructions ran (function: times), on stderr
"""
import re
import subprocess
import sys

LOCKED = re.compile(r"^\s*([0-9a-f]+):\s+(lock\s|xchg\s+[^,]*\(|xchg\s+.*,.*\()")


def locked_addresses(obj, cache={}):
    if obj not in cache:
        try:
            text = subprocess.run(["objdump", "-d", "--no-show-raw-insn", obj], check=True,
                                  capture_output=True, text=True).stdout
        except (OSError, subprocess.CalledProcessError):
            text = ""
        cache[obj] = {int(m.group(1), 16) for m in map(LOCKED.match, text.splitlines()) if m}
    return cache[obj]


def position(tok, last):
    """A subposition: absolute (0x.. or a number), relative (+n, -n) or the same (*)."""
    if tok == "*":
        return last
    if tok[0] in "+-":
        return last + int(tok, 0)
    return int(tok, 0)


def main(path, verbose=False):
    names, events, summary = {}, [], None
    counts = {}  # (object, address) -> times run
    where = {}  # (object, address) -> function
    obj, fn, addr, after_call = None, "", 0, False
    with open(path) as f:
        for line in f:
            if line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith(("summary:", "totals:")):
                summary = [int(x) for x in line.split()[1:]]
            elif line.startswith(("ob=", "cob=")):
                m = re.match(r"c?ob=\((\d+)\)\s*(.*)", line.rstrip("\n"))
                if m and m.group(2):
                    names[m.group(1)] = m.group(2)
                if line.startswith("ob=") and m:
                    obj = names.get(m.group(1))
            elif line.startswith("fn="):
                m = re.match(r"fn=\((\d+)\)\s*(.*)", line.rstrip("\n"))
                if m and m.group(2):
                    names["fn" + m.group(1)] = m.group(2)
                fn = names.get("fn" + m.group(1), "?") if m else "?"
            elif line.startswith(("cfn=", "cfi=", "cfl=")):
                m = re.match(r"cfn=\((\d+)\)\s*(.+)", line.rstrip("\n"))
                if m:
                    names["fn" + m.group(1)] = m.group(2)
            elif line.startswith("calls="):
                after_call = True  # the next cost line is the call's inclusive cost
            elif line[:1] in "0123456789+-*":
                parts = line.split()
                addr = position(parts[0], addr)
                if after_call:
                    after_call = False
                    continue
                ir = int(parts[2]) if len(parts) > 2 else 0
                counts[(obj, addr)] = counts.get((obj, addr), 0) + ir
                where[(obj, addr)] = f"{fn} [{(obj or '?').rsplit('/', 1)[-1]}]"
    sites = [(k, n) for k, n in counts.items() if k[0] and k[1] in locked_addresses(k[0])]
    locked = sum(n for _, n in sites)
    if verbose:
        byfn = {}
        for k, n in sites:
            byfn[where[k]] = byfn.get(where[k], 0) + n
        for f, n in sorted(byfn.items(), key=lambda x: -x[1]):
            print(f"{n:10} {f}", file=sys.stderr)
    ev = dict(zip(events, summary or []))
    d1 = ev.get("D1mr", 0) + ev.get("D1mw", 0)
    ll = ev.get("DLmr", 0) + ev.get("DLmw", 0)
    print(ev.get("Ir", 0), d1, ll, locked)


if __name__ == "__main__":
    main(sys.argv[-1], sys.argv[1] == "-v")
