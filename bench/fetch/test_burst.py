"""bench/fetch/burst.c against a small Python server that frames its answers every way HTTP/1.1
allows (Content-Length, chunked with extensions and trailers, close-delimited, split in tiny
writes) and misbehaves on purpose (never answers, closes early). Not part of tests/e2e: run it
with `/usr/bin/python3 -m pytest bench/fetch/test_burst.py -q -p no:cacheprovider` after changing burst.c."""

import json
import os
import resource
import socket
import subprocess
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

BODY = b"x" * 100000
ANSWERS = {
    "/length": b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY,
    "/chunked": (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n1A\r\n" + b"y" * 26 + b"\r\n0\r\nX-Trailer: 1\r\n\r\n"
    ),
    "/close": b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + BODY,
    "/empty": b"HTTP/1.1 204 No Content\r\n\r\n",
    "/missing": b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno",
    "/short": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
}


class Server:
    """One thread a connection; /silent never answers; every write is split in 7-byte pieces for
    /chunked, so the parsers see every boundary."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.port = self.sock.getsockname()[1]
        self.cut = 0  # answers the client closed before their last byte
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        data = b""
        while b"\r\n\r\n" not in data:
            data += c.recv(4096)
        path = data.split(b" ")[1].decode()
        if path == "/silent":
            time.sleep(5)
        else:
            answer = ANSWERS[path]
            step = 7 if path == "/chunked" else len(answer)
            try:
                for i in range(0, len(answer), step):
                    c.sendall(answer[i : i + step])
                    time.sleep(0.001 if step == 7 else 0)
            except OSError:
                self.cut += 1
        c.close()


@pytest.fixture(scope="module")
def burst(tmp_path_factory):
    exe = str(tmp_path_factory.mktemp("burst") / "burst")
    subprocess.run(["cc", "-O2", "-Wall", "-Werror", "-o", exe, os.path.join(HERE, "burst.c")],
                   check=True)
    server = Server()

    def run(path, n, timeout="10", port=server.port, max_fds=None):
        limit = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (max_fds, max_fds))
        out = subprocess.run([exe, "-c", "4", f"http://127.0.0.1:{port}{path}", str(n), timeout],
                             check=True, capture_output=True, text=True,
                             preexec_fn=limit if max_fds else None).stdout
        return json.loads(out)

    run.server = server
    return run


@pytest.mark.parametrize("path", ["/length", "/chunked", "/close"])
def test_every_framing_is_read_to_its_end(burst, path):
    cut = burst.server.cut
    r = burst(path, 20)
    assert r["ok"] == 20 and r["statuses"] == {"200": 20} and r["errors"] == {}
    assert r["p50_s"] <= r["p99_s"] <= r["max_s"] <= r["wall_s"]
    assert burst.server.cut == cut  # no call was counted before its answer's last byte


def test_statuses_are_counted_and_only_2xx_is_ok(burst):
    assert burst("/missing", 3)["statuses"] == {"404": 3}
    r = burst("/empty", 3)
    assert r["ok"] == 3 and r["statuses"] == {"204": 3}


def test_a_body_cut_short_is_an_error(burst):
    r = burst("/short", 3)
    assert r["ok"] == 0 and r["errors"] == {"short body": 3}


def test_the_timeout_ends_the_run_and_names_the_phase(burst):
    t0 = time.monotonic()
    r = burst("/silent", 5, "1")
    assert time.monotonic() - t0 < 3
    assert r["ok"] == 0 and r["wall_s"] is None
    assert r["errors"] == {"timeout: waiting for the head": 5}


def test_a_refused_connection_is_an_error(burst):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    assert burst("/", 3, port=port)["errors"] == {"refused": 3}


def test_calls_short_of_a_descriptor_wait_for_one(burst):
    r = burst("/length", 100, max_fds=20)
    assert r["ok"] == 100 and r["errors"] == {} and r["connect_retries"] > 0
