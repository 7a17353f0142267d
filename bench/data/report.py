"""Reads the wrk outputs of bench/data/run.sh (DIR/<engine>-<server>-<endpoint>.txt) and prints
the Markdown table: req/s, p50 and p99 latency, errors, and roost's ratio to the FastAPI app;
then, when the run had them, every server side by side (ROOST_BEFORE's "before" build too) with
PostgreSQL's WAL flushes and writes per POST (the .wal files: pg_stat_wal around the runs).
Usage: report.py DIR"""

import re
import sys
from pathlib import Path

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def latency_ms(text, pct):
    m = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
    return float(m.group(1)) * UNITS[m.group(2)] if m else None


def parse(path):
    if not path.exists():
        return None
    text = path.read_text()
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not m:
        return None
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errs = re.search(r"Socket errors:.*", text)
    return {
        "rps": float(m.group(1)),
        "p50": latency_ms(text, 50),
        "p99": latency_ms(text, 99),
        "bad": int(bad.group(1)) if bad else 0,
        "sock": errs.group(0) if errs else "",
    }


def fmt_ms(v):
    return "n/a" if v is None else (f"{v:.2f} ms" if v < 10 else f"{v:.0f} ms")


def cell(r):
    if not r:
        return "n/a | n/a | n/a"
    note = f" ({r['bad']} non-2xx)" if r["bad"] else ""
    return f"{r['rps']:,.0f}{note} | {fmt_ms(r['p50'])} | {fmt_ms(r['p99'])}"


def main():
    d = Path(sys.argv[1])
    engines = [e for e in ("sqlite", "postgresql") if any(d.glob(f"{e}-*.txt"))]
    print("| engine | endpoint | roost req/s | roost p50 | roost p99 | FastAPI req/s | FastAPI p50 "
          "| FastAPI p99 | roost / FastAPI |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    lines = []
    for e in engines:
        for ep, label in (("get", "GET /users/{id}"), ("post", "POST /users")):
            r, f = parse(d / f"{e}-roost-{ep}.txt"), parse(d / f"{e}-fastapi-{ep}.txt")
            if not r and not f:  # not run (ENDPOINTS)
                continue
            ok = r and f and not r["bad"] and not f["bad"] and f["rps"] > 0
            ratio = f"**x{r['rps'] / f['rps']:.1f}**" if ok else "n/a"
            print(f"| {e} | {label} | {cell(r)} | {cell(f)} | {ratio} |")
        j, g = parse(d / f"{e}-roost-json.txt"), parse(d / f"{e}-roost-get.txt")
        if j and g:
            lines.append(f"- {e}: roost GET /users/{{id}} = {g['rps'] / j['rps']:.2f} of roost's own "
                         f"/json in the same run ({j['rps']:,.0f} req/s, p99 {fmt_ms(j['p99'])})")
    print()
    print("\n".join(lines))
    side_by_side(d, engines)


def requests(path):
    m = path.exists() and re.search(r"(\d+) requests in", path.read_text())
    return int(m.group(1)) if m else 0


def wal_per_request(d, e, server):
    """(syncs, writes) per request of the POST run and its warm-up, or None."""
    f = d / f"{e}-{server}-post.txt.wal"
    nums = f.read_text().split() if f.exists() else []
    n = requests(d / f"{e}-{server}-post.txt") + requests(d / f"{e}-{server}-post.txt.warm")
    if len(nums) != 4 or n == 0:
        return None
    s0, w0, s1, w1 = map(int, nums)
    return (s1 - s0) / n, (w1 - w0) / n


def side_by_side(d, engines):
    servers = [s for s in ("roost", "before", "fastapi") if any(d.glob(f"*-{s}-*.txt"))]
    if "before" not in servers and not any(d.glob("*.wal")):
        return
    names = {"roost": "roost", "before": "roost (before)", "fastapi": "FastAPI"}
    print()
    print("| engine | endpoint | server | req/s | p50 | p99 | WAL flushes / req | WAL writes / req |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for e in engines:
        for ep, label in (("get", "GET /users/{id}"), ("post", "POST /users")):
            for s in servers:
                r = parse(d / f"{e}-{s}-{ep}.txt")
                if not r:
                    continue
                wal = wal_per_request(d, e, s) if ep == "post" else None
                w = f"{wal[0]:.3f} | {wal[1]:.3f}" if wal else "n/a | n/a"
                print(f"| {e} | {label} | {names[s]} | {cell(r)} | {w} |")


if __name__ == "__main__":
    main()
