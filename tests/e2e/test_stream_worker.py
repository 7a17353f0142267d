"""Streams from a blocking handler (ROOST_BLOCKING, a worker thread): /download-large-file-sync
writes its lines with roost_stream_write from a plain loop; the loop takes what it wrote.
Lines arrive as they are made; a client that leaves frees the worker; server-sent events from a
worker. (A client that reads nothing: test_streaming.py, for both routes.)"""

import socket
import time

import pytest

from conftest import RawConnection
from test_streaming import busy_workers, settled_busy

FLAGS = ("--threads", "1", "--debug-routes")


def wait_until(cond, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_a_blocking_handler_streams_every_line(shared_servers):
    with shared_servers.use(*FLAGS) as srv:
        idle = settled_busy(srv)  # the pool's own count (not 0 at rest)
        resp = srv.get("/download-large-file-sync")
        assert resp.status == 200
        assert resp.has_token("Transfer-Encoding", "chunked")
        assert resp.header("Content-Disposition") == "attachment; filename=large.txt"
        lines = resp.body.decode().split("\n")
        assert lines[-1] == "" and len(lines) == 1001
        for i in (0, 1, 500, 999):
            assert lines[i] == f"Line {i}: " + "x" * 100
        # gzip applies to a worker's stream like to any other.
        import gzip

        zipped = srv.get("/download-large-file-sync?lines=3000", headers={"Accept-Encoding": "gzip"})
        assert zipped.header("Content-Encoding") == "gzip"
        assert gzip.decompress(zipped.body).count(b"\n") == 3000
        head = srv.request("HEAD", "/download-large-file-sync")
        assert head.status == 200 and head.body == b""
        assert wait_until(lambda: busy_workers(srv) == idle)


@pytest.mark.deadline(30)
def test_first_line_arrives_while_the_worker_still_makes_the_rest(shared_servers):
    with shared_servers.use(*FLAGS) as srv:
        with RawConnection(srv.port, timeout=10) as conn:
            start = time.monotonic()
            conn.send(
                "GET /download-large-file-sync?lines=40&line_delay_ms=40 HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            deadline = start + 10
            conn._read_until(b"Line 0: " + b"x" * 100 + b"\n", deadline)
            first_at = time.monotonic() - start
            conn._read_until(b"Line 39: ", deadline)
            last_at = time.monotonic() - start
        assert last_at > 39 * 0.04 * 0.9
        assert first_at < last_at / 4


@pytest.mark.deadline(60)
def test_a_client_that_leaves_mid_stream_frees_the_worker(start_server):
    # Two workers at most: a worker kept by a gone client would starve the last request.
    srv = start_server(*FLAGS, "--workers", "2", "--workers-min", "1")
    idle = settled_busy(srv)
    for _ in range(4):
        sock = socket.create_connection(("127.0.0.1", srv.port))
        sock.sendall(b"GET /download-large-file-sync?lines=4700000 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert sock.recv(65536)
        time.sleep(0.2)  # the worker blocks by now
        sock.close()
    assert wait_until(lambda: busy_workers(srv) == idle), "a worker still streams to nobody"
    start = time.monotonic()
    resp = srv.get("/download-large-file-sync?lines=20000", timeout=20)
    assert resp.body.count(b"\n") == 20000
    assert time.monotonic() - start < 10
    srv.assert_healthy()


@pytest.mark.deadline(30)
def test_server_sent_events_from_a_blocking_handler(shared_servers):
    with shared_servers.use(*FLAGS) as srv:
        resp = srv.get("/debug/sse-sync?events=4&delay_ms=120", timeout=10)
        assert resp.status == 200
        assert resp.header("Content-Type").startswith("text/event-stream")
        text = resp.body.decode()
        assert text.startswith("retry: 2000\n\n")
        blocks = [b for b in text.split("\n\n") if b.startswith("id:")]
        assert [b.split("\n")[0] for b in blocks] == ["id: 1", "id: 2", "id: 3", "id: 4"]
        assert all("event: tick" in b for b in blocks)
        assert blocks[3].endswith('data: {"n":3}')
        assert ": ping" in text  # the loop's heartbeat runs beside the worker's writes
