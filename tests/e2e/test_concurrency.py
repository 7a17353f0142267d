"""Concurrency: waits on workers and on loop timers overlap. Connections are opened first; time is
measured from the first request sent to the last response received."""

import asyncio
import collections
import time

import pytest


class OneResponse(asyncio.Protocol):
    """Reads one response (body by Content-Length) on its connection; `done` resolves to
    (status, completed_at). A Protocol rather than streams: 10,000 of them must be cheap enough
    that the client is not what is measured."""

    def __init__(self):
        self.done = asyncio.get_running_loop().create_future()
        self.buf = b""
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buf += data
        if self.done.done():
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buf[:end]
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if len(self.buf) >= end + 4 + length:
            self.done.set_result((int(head.split(b" ", 2)[1]), time.monotonic()))

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"closed before a response: {self.buf[:200]!r}"))


async def open_connections(port, n, batch):
    loop = asyncio.get_running_loop()
    protocols = []
    for start in range(0, n, batch):
        count = min(batch, n - start)
        pairs = await asyncio.gather(
            *(loop.create_connection(OneResponse, "127.0.0.1", port) for _ in range(count))
        )
        protocols += [protocol for _, protocol in pairs]
    return protocols


async def fire(port, n, request, batch, settle_s, wait_s):
    """Open n connections, then send `request` on each; returns (t0, outcomes) where each
    outcome is (status, completed_at) or an exception."""
    protocols = await open_connections(port, n, batch)
    await asyncio.sleep(settle_s)  # let the server accept the last batch
    t0 = time.monotonic()
    for protocol in protocols:
        protocol.transport.write(request)
    futures = [p.done for p in protocols]
    _, pending = await asyncio.wait(futures, timeout=wait_s)
    outcomes = []
    for future in futures:
        if future in pending:
            outcomes.append(TimeoutError("no response"))
        elif future.exception() is not None:
            outcomes.append(future.exception())
        else:
            outcomes.append(future.result())
    for protocol in protocols:
        protocol.transport.abort()
    return t0, outcomes


def summarize(t0, outcomes):
    kinds = collections.Counter(
        o[0] if isinstance(o, tuple) else type(o).__name__ for o in outcomes
    )
    finished = [o[1] - t0 for o in outcomes if isinstance(o, tuple)]
    last = max(finished) if finished else None
    return kinds, last


@pytest.mark.deadline(60)
def test_hundred_concurrent_slow_sync_requests_overlap_on_workers(start_server):
    srv = start_server("--threads", "2", "--workers", "128")
    request = b"GET /slow-sync?seconds=3 HTTP/1.1\r\nHost: t\r\n\r\n"
    t0, outcomes = asyncio.run(fire(srv.port, 100, request, batch=100, settle_s=0.2, wait_s=15))
    kinds, last = summarize(t0, outcomes)
    assert kinds == {200: 100}, f"outcomes: {dict(kinds)}"
    assert last <= 3.5, f"the last of 100 answers came {last:.2f} s after the first send"
    assert last >= 3.0 - 0.01


@pytest.mark.deadline(150)
def test_ten_thousand_concurrent_slow_async_requests_overlap_on_the_loop(start_server):
    srv = start_server("--threads", "2", "--header-timeout-s", "60", "--keepalive-timeout-s", "120")
    request = b"GET /slow-async?seconds=3 HTTP/1.1\r\nHost: t\r\n\r\n"
    t0, outcomes = asyncio.run(fire(srv.port, 10_000, request, batch=250, settle_s=1.0, wait_s=30))
    kinds, last = summarize(t0, outcomes)
    assert kinds == {200: 10_000}, f"outcomes: {dict(kinds)}"
    assert last <= 4.0, f"the last of 10,000 answers came {last:.2f} s after the first send"
    assert last >= 3.0 - 0.01
    srv.assert_healthy()
