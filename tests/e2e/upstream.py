"""A small upstream HTTP/1.1 server for the upstream-call tests, on asyncio, one process:
    python3 upstream.py PORT
Paths (all GET unless said):
  /json                 {"upstream":"ok","path":..,"query":..}
  /sleep?ms=N           answers after N ms
  /status/N             answers status N
  /flaky?key=K&fail=N   the first N calls with key K answer 503, then 200 {"hits":n}
  /headers              the request's headers as a JSON object (lower-case names)
  /big?bytes=N[&chunked=1]   N bytes of 'x' (chunked when asked)
  /drop-second          answers the first request of a connection; closes the connection
                        without answering any later one (a kept-alive connection gone stale)
  /retry-after?key=K&secs=S  the first call with key K answers 429 with Retry-After: S, then 200
  POST /hook            {"got": the body, "content_type": its Content-Type}
  /stats                {"connections": accepted, "requests": served, "peak": most open at once}
Every answer keeps the connection alive (HTTP/1.1) unless the path says otherwise."""

import asyncio
import json
import sys
from urllib.parse import parse_qs, urlsplit

stats = {"connections": 0, "requests": 0, "open": 0, "peak": 0}
flaky_hits = {}


def answer(status, body, ctype="application/json", extra=(), chunked=False):
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    head = [f"HTTP/1.1 {status} X", f"Content-Type: {ctype}"]
    head += list(extra)
    if chunked:
        head.append("Transfer-Encoding: chunked")
        parts = []
        for i in range(0, len(body), 65536):
            piece = body[i:i + 65536]
            parts.append(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        body = b"".join(parts) + b"0\r\n\r\n"
    else:
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def handle(reader, writer):
    stats["connections"] += 1
    stats["open"] += 1
    stats["peak"] = max(stats["peak"], stats["open"])
    served = 0
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            n = int(headers.get("content-length", "0") or 0)
            body = await reader.readexactly(n) if n else b""
            served += 1
            stats["requests"] += 1
            url = urlsplit(target)
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            path = url.path
            if path == "/drop-second" and served > 1:
                writer.transport.abort()
                return
            if path == "/json":
                out = answer(200, {"upstream": "ok", "path": path, "query": url.query,
                                   "method": method})
            elif path == "/sleep":
                await asyncio.sleep(int(q.get("ms", "0")) / 1000)
                out = answer(200, {"slept_ms": int(q.get("ms", "0"))})
            elif path.startswith("/status/"):
                code = int(path.split("/")[2])
                out = answer(code, {"status": code})
            elif path == "/flaky":
                key = q.get("key", "")
                flaky_hits[key] = flaky_hits.get(key, 0) + 1
                if flaky_hits[key] <= int(q.get("fail", "1")):
                    out = answer(503, {"detail": "try again"})
                else:
                    out = answer(200, {"hits": flaky_hits[key]})
            elif path == "/retry-after":
                key = "ra:" + q.get("key", "")
                flaky_hits[key] = flaky_hits.get(key, 0) + 1
                if flaky_hits[key] == 1:
                    out = answer(429, {"detail": "slow down"},
                                 extra=[f"Retry-After: {q.get('secs', '1')}"])
                else:
                    out = answer(200, {"hits": flaky_hits[key]})
            elif path == "/hook" and method == "POST":
                out = answer(200, {"got": body.decode("utf-8", "replace"),
                                   "content_type": headers.get("content-type", "")})
            elif path == "/headers":
                out = answer(200, headers)
            elif path == "/big":
                out = answer(200, b"x" * int(q.get("bytes", "0")), "text/plain",
                             chunked=q.get("chunked") == "1")
            elif path == "/drop-second":
                out = answer(200, {"first": True})
            elif path == "/stats":
                out = answer(200, stats)
            else:
                out = answer(404, {"detail": "Not Found"})
            writer.write(out)
            await writer.drain()
    finally:
        stats["open"] -= 1
        writer.close()


async def main(port):
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
