"""N concurrent one-shot GETs (one connection each), all started at once; prints one JSON line:
{"n","ok","done","wall_s","p50_s","p99_s","errors"}. Every request is bounded by TIMEOUT_S, so
the run ends; what did not finish by then counts as not done.
Usage: burst.py URL N TIMEOUT_S"""

import asyncio
import json
import resource
import sys
import time
from urllib.parse import urlsplit


async def one(host, port, path, deadline):
    t0 = time.perf_counter()
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(host, port),
                                      deadline - time.perf_counter())
        w.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = await asyncio.wait_for(r.read(), deadline - time.perf_counter())
        w.close()
        status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.") else 0
        return status, time.perf_counter() - t0
    except (OSError, asyncio.TimeoutError, ValueError, IndexError) as e:
        return type(e).__name__, time.perf_counter() - t0


async def main():
    url, n, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    u = urlsplit(url)
    path = u.path + ("?" + u.query if u.query else "")
    t0 = time.perf_counter()
    deadline = t0 + timeout
    res = await asyncio.gather(*(one(u.hostname, u.port, path, deadline) for _ in range(n)))
    ok = sorted(t for s, t in res if s == 200)
    errors = {}
    for s, _ in res:
        if s != 200:
            errors[str(s)] = errors.get(str(s), 0) + 1
    pct = lambda q: round(ok[min(len(ok) - 1, int(q * len(ok)))], 3) if ok else None
    print(json.dumps({"n": n, "ok": len(ok), "wall_s": round(max(t for _, t in res), 3),
                      "p50_s": pct(0.5), "p99_s": pct(0.99), "errors": errors}))


asyncio.run(main())
