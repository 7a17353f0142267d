"""A throwaway Redis for the scale-out tests: Debian's redis-server (scripts/deps.sh installs
it) on a free loopback port, its folder a temporary one, without persistence (no RDB, no AOF),
so a restart loses every key, as a failover to an empty replica would. start() and stop() may
be called again: a restart keeps the port.

Fixture: `redis` (one server per test module, flushed before each test)."""

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import _SharedServers, free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    def __init__(self):
        if not Path(REDIS_SERVER).exists():
            pytest.fail("redis-server is not installed (scripts/deps.sh installs Debian's "
                        "redis-server)", pytrace=False)
        self.dir = Path(tempfile.mkdtemp(prefix="roost-redis-"))
        self.port = free_port()
        self.proc = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout=10.0):
        log = open(self.dir / "server.log", "ab")
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir), "--protected-mode", "no"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.command("PING") == "PONG":
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def remove(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def command(self, *args, timeout=5.0):
        """One command over RESP; returns the decoded reply (str, int, list or None)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            out = f"*{len(args)}\r\n".encode()
            for a in args:
                b = str(a).encode()
                out += b"$%d\r\n%s\r\n" % (len(b), b)
            s.sendall(out)
            return _read(s.makefile("rb"))


def _read(f):
    line = f.readline()
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data.decode("utf-8", "replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read(f) for _ in range(n)]
    raise RuntimeError(f"unexpected reply {line!r}")


@pytest.fixture(scope="module")
def redis():
    srv = RedisServer().start()
    yield srv
    srv.remove()


def wait_health(srv, state, timeout=10.0):
    """Polls a node's /healthz (always 200) until it says "redis": state."""
    deadline = time.monotonic() + timeout
    body = None
    while time.monotonic() < deadline:
        body = srv.get("/healthz").json()
        if body.get("redis") == state:
            return body
        time.sleep(0.05)
    pytest.fail(f"{srv!r}: /healthz never said redis={state} (last {body})")


@contextlib.contextmanager
def roost_nodes(redis, tmp_path_factory, count, flags_of=lambda i: []):
    """`count` roost nodes on this Redis (--node-id n0, n1...), each with flags_of(i) added."""
    shared = _SharedServers(tmp_path_factory)
    try:
        yield [shared.get(["--redis", redis.url, "--node-id", f"n{i}", *flags_of(i)])
               for i in range(count)]
    finally:
        shared.shutdown()
