"""Streamed answers: /download-large-file's lines and headers, lines that arrive while later ones
are not made yet, backpressure (a client that reads nothing keeps the server's memory bounded and
the producer paused; it resumes when the client reads; a client that leaves ends the producer),
and server-sent events: fields, retry, heartbeats, Last-Event-ID."""

import http.client
import json
import socket
import time

import pytest

from conftest import RawConnection, http_get, http_request, metric_sum


def rss_kib(srv):
    with open(f"/proc/{srv.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def busy_workers(srv):
    return metric_sum(srv.metrics(), "roost_worker_busy")


def settled_busy(srv):
    """Busy workers at rest: a worker that just posted its answer counts as busy a moment more."""
    return min(busy_workers(srv) for _ in range(5) if time.sleep(0.1) is None)


def test_download_large_file_streams_1000_lines_as_an_attachment(server):
    resp = server.get("/download-large-file")
    assert resp.status == 200
    assert resp.has_token("Transfer-Encoding", "chunked")
    assert resp.header("Content-Disposition") == "attachment; filename=large.txt"
    assert resp.header("Content-Type", "").startswith("text/plain")
    lines = resp.body.decode().split("\n")
    assert lines[-1] == ""
    lines = lines[:-1]
    assert len(lines) == 1000
    for i in (0, 1, 500, 999):
        assert lines[i] == f"Line {i}: " + "x" * 100


@pytest.mark.deadline(30)
def test_first_line_arrives_before_the_last_is_made(server):
    with RawConnection(server.port, timeout=10) as conn:
        start = time.monotonic()
        conn.send("GET /download-large-file?lines=60&line_delay_ms=40 HTTP/1.1\r\nHost: t\r\n\r\n")
        deadline = start + 10
        conn._read_until(b"Line 0: " + b"x" * 100 + b"\n", deadline)
        first_at = time.monotonic() - start
        conn._read_until(b"Line 59: ", deadline)
        last_at = time.monotonic() - start
    assert last_at > 59 * 0.04 * 0.9
    assert first_at < last_at / 4


@pytest.mark.deadline(60)
@pytest.mark.parametrize("path", ["/download-large-file", "/download-large-file-sync"])
def test_a_client_that_reads_nothing_keeps_memory_bounded(shared_servers, path):
    """A 500 MB stream to a client that reads nothing for 5 s: the producer pauses (counter),
    the server's RSS grows by less than 20 MB; then the client reads and gets the lines in order.
    The -sync route makes them on a worker (a blocking handler), which waits meanwhile."""
    with shared_servers.use("--threads", "1") as srv:
        srv.get(f"{path}?lines=1000")  # warm up the route and its buffers
        idle = settled_busy(srv)
        before_rss = rss_kib(srv)
        paused_before = metric_sum(srv.metrics(), "roost_stream_paused_total")
        sock = socket.create_connection(("127.0.0.1", srv.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(f"GET {path}?lines=4700000 HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        peak = before_rss
        for _ in range(10):
            time.sleep(0.5)
            peak = max(peak, rss_kib(srv))
        growth_mib = (peak - before_rss) / 1024
        assert growth_mib < 20, f"RSS grew {growth_mib:.1f} MiB with a stalled reader"
        assert metric_sum(srv.metrics(), "roost_stream_paused_total") > paused_before
        if path.endswith("-sync"):
            assert busy_workers(srv) == idle + 1  # the producer waits on its worker
        # The server still answers others meanwhile.
        assert srv.get("/healthz", timeout=5).status == 200
        # Reading resumes the producer: 20 MB more arrive, lines in order.
        sock.settimeout(10)
        got = b""
        while len(got) < 20_000_000:
            data = sock.recv(1 << 20)
            assert data, "the server closed the stream"
            got += data
        body = got[got.index(b"\r\n\r\n") + 4 :]
        assert b"Line 0: x" in body[:64]
        assert b"Line 150000: x" in got
        sock.close()
        deadline = time.monotonic() + 10
        while busy_workers(srv) > idle and time.monotonic() < deadline:
            time.sleep(0.05)
        assert busy_workers(srv) == idle, "the producer's worker was not freed"
        srv.assert_healthy()


@pytest.mark.deadline(60)
def test_a_client_that_leaves_ends_the_producer(shared_servers):
    with shared_servers.use("--threads", "1") as srv:
        for _ in range(5):
            sock = socket.create_connection(("127.0.0.1", srv.port))
            sock.sendall(b"GET /download-large-file?lines=4700000 HTTP/1.1\r\nHost: t\r\n\r\n")
            sock.recv(65536)
            time.sleep(0.2)  # paused by now
            sock.close()
        time.sleep(0.3)
        srv.assert_healthy()
        # Left clients' producers are gone: a full download is as fast as ever.
        start = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=20)
        conn.request("GET", "/download-large-file?lines=20000")
        body = conn.getresponse().read()
        conn.close()
        assert body.count(b"\n") == 20000
        assert time.monotonic() - start < 10


def test_http_1_0_gets_a_close_delimited_stream(server):
    with RawConnection(server.port, timeout=10) as conn:
        conn.send("GET /download-large-file?lines=3 HTTP/1.0\r\n\r\n")
        raw = conn.read_until_close(timeout=10)
    head, body = raw.split(b"\r\n\r\n", 1)
    assert b"chunked" not in head.lower()
    assert body.count(b"\n") == 3 and body.startswith(b"Line 0: ")


# --------------------------------------------------------------------------------------------
# Server-sent events (the jobs' /tasks/{id}/events, on roost_sse_*)


def start_job(port, steps, seconds):
    body = json.dumps({"type": "sleep", "payload": {"steps": steps, "seconds": seconds}})
    resp = http_request(port, "POST", "/tasks", {"Content-Type": "application/json"}, body.encode())
    assert resp.status == 201, resp
    return resp.json()["task_id"]


def read_sse(port, target, headers=None, timeout=15):
    """(head response, raw event-stream text) of a stream read to its end."""
    with RawConnection(port, timeout=timeout) as conn:
        resp = conn.request("GET", target, headers=headers, timeout=timeout)
    return resp, resp.body.decode()


def blocks(raw):
    out = []
    for block in raw.split("\n\n"):
        if block.strip():
            out.append([line.partition(":")[::2] for line in block.split("\n")])
    return out


@pytest.mark.deadline(40)
def test_sse_fields_retry_and_heartbeats(shared_servers):
    with shared_servers.use("--sse-heartbeat-s", "0.1") as srv:
        tid = start_job(srv.port, 4, 0.25)
        resp, raw = read_sse(srv.port, f"/tasks/{tid}/events")
        assert resp.status == 200
        assert resp.header("Content-Type").startswith("text/event-stream")
        assert resp.header("Cache-Control") == "no-cache"
        bl = blocks(raw)
        assert bl[0] == [("retry", " 3000")], bl[0]
        assert any(b[0][0] == "" and b[0][1].strip() == "ping" for b in bl), "a heartbeat comment"
        events = [dict((k, v[1:]) for k, v in b) for b in bl if b[0][0] == "id"]
        assert all(e["event"] == "task" for e in events)
        ids = [int(e["id"]) for e in events]
        assert ids == list(range(1, len(ids) + 1))
        assert json.loads(events[-1]["data"])["status"] == "completed"


@pytest.mark.deadline(30)
def test_sse_resume_from_last_event_id(server):
    tid = start_job(server.port, 1, 0)
    wait_done = time.monotonic() + 10
    while time.monotonic() < wait_done:
        if http_get(server.port, f"/tasks/{tid}").json()["status"] == "completed":
            break
        time.sleep(0.05)
    _, raw = read_sse(server.port, f"/tasks/{tid}/events", headers={"Last-Event-ID": "41"})
    events = [dict((k, v[1:]) for k, v in b) for b in blocks(raw) if b[0][0] == "id"]
    assert [e["id"] for e in events] == ["42"]
    assert json.loads(events[0]["data"])["status"] == "completed"


def test_head_of_a_stream_gets_the_head_only(server):
    with RawConnection(server.port, timeout=10) as conn:
        head = conn.request("HEAD", "/download-large-file?lines=100000")
        assert head.status == 200 and head.body == b""
        assert head.header("Content-Disposition") == "attachment; filename=large.txt"
        # The next answer on the connection starts right after the head: no body came between.
        after = conn.request("GET", "/healthz")
        assert after.status == 200 and after.json() == {"status": "ok"}
