"""Slow clients: --header-timeout-s and --body-timeout-s answer 408 and close (slowloris),
--keepalive-timeout-s closes an idle connection silently; the server keeps serving others."""

import threading
import time

import pytest

from conftest import metric_sum

TIMEOUT_FLAGS = ("--threads", "2", "--header-timeout-s", "1", "--body-timeout-s", "1",
                 "--keepalive-timeout-s", "1")
# A 1 s timeout on a coarse timer wheel, under ASan: the answer must come after ~1 s and well
# before 3.5 s.
EARLIEST_S, LATEST_S = 0.8, 3.5


@pytest.fixture
def timeouts(shared_servers):
    """A server with --header-timeout-s 1 --body-timeout-s 1 --keepalive-timeout-s 1."""
    with shared_servers.use(*TIMEOUT_FLAGS) as srv:
        yield srv


def expect_408_then_close(conn, since):
    resp = conn.read_response(timeout=LATEST_S + 1)
    elapsed = time.monotonic() - since
    assert resp.status == 408, resp
    assert EARLIEST_S <= elapsed <= LATEST_S, f"408 after {elapsed:.2f} s"
    closed, extra = conn.closed_within(2.0)
    assert closed, "connection left open after the 408"
    assert extra == b""


def test_partial_header_section_times_out_with_408(timeouts):
    with timeouts.connect(timeout=10) as conn:
        conn.send(b"GET /plaintext HTTP/1.1\r\nHost: t\r\nX-Partial: abc")
        expect_408_then_close(conn, time.monotonic())
    timeouts.assert_healthy()


def test_partial_request_line_times_out_with_408(timeouts):
    with timeouts.connect(timeout=10) as conn:
        conn.send(b"GET /plain")
        expect_408_then_close(conn, time.monotonic())
    timeouts.assert_healthy()


def test_header_timeout_counts_the_whole_header_section_not_gaps(timeouts):
    """Slowloris proper: a byte of header every 0.2 s never stays idle for 1 s, but the header
    section as a whole must still be done within the timeout."""
    answered = threading.Event()
    with timeouts.connect(timeout=10) as conn:
        t0 = time.monotonic()
        conn.send(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n")

        def drip():
            for i in range(40):
                if answered.wait(0.2):
                    return
                try:
                    conn.send(b"X-%d: y\r\n" % i)
                except OSError:
                    return

        dripper = threading.Thread(target=drip, daemon=True)
        dripper.start()
        try:
            resp = conn.read_response(timeout=LATEST_S + 1)
        finally:
            answered.set()
            dripper.join()
        elapsed = time.monotonic() - t0
        assert resp.status == 408, resp
        assert elapsed <= LATEST_S, f"408 only after {elapsed:.2f} s of dripped headers"
    timeouts.assert_healthy()


def test_partial_body_times_out_with_408(timeouts):
    with timeouts.connect(timeout=10) as conn:
        conn.send(b"POST /items HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100\r\n\r\n{\"name\": ")
        expect_408_then_close(conn, time.monotonic())
    timeouts.assert_healthy()


def test_partial_chunked_body_times_out_with_408(timeouts):
    with timeouts.connect(timeout=10) as conn:
        conn.send(b"POST /items HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"nam")
        expect_408_then_close(conn, time.monotonic())
    timeouts.assert_healthy()


def test_idle_keepalive_connection_is_closed_without_response(timeouts):
    with timeouts.connect(timeout=10) as conn:
        resp = conn.request("GET", "/plaintext")
        assert resp.status == 200
        t0 = time.monotonic()
        closed, extra = conn.closed_within(LATEST_S + 1)
        elapsed = time.monotonic() - t0
    assert closed, "idle keep-alive connection was not closed"
    assert extra == b"", f"an idle close must send nothing, got {extra!r}"
    assert EARLIEST_S <= elapsed <= LATEST_S, f"closed after {elapsed:.2f} s"
    timeouts.assert_healthy()


def test_keepalive_timeout_restarts_after_each_request(timeouts):
    """Requests 0.4 s apart for 2.4 s: never idle for 1 s, so never closed."""
    with timeouts.connect(timeout=10) as conn:
        for _ in range(7):
            resp = conn.request("GET", "/plaintext")
            assert resp.status == 200, resp
            time.sleep(0.4)
        assert conn.request("GET", "/json").status == 200


def test_slow_handler_is_not_cut_by_keepalive_or_header_timeouts(timeouts):
    """Timeouts are about the client: a 2 s handler on a server with 1 s timeouts completes."""
    with timeouts.connect(timeout=10) as conn:
        resp = conn.request("GET", "/slow-async?seconds=2", timeout=6.0)
        assert resp.status == 200, resp
        resp = conn.request("GET", "/slow-sync?seconds=1.5", timeout=6.0)
        assert resp.status == 200, resp


def test_header_and_body_timeouts_are_counted(timeouts):
    metrics = timeouts.metrics()
    before_header = metric_sum(metrics, "roost_limit_hits_total", limit="header_timeout")
    before_body = metric_sum(metrics, "roost_limit_hits_total", limit="body_timeout")
    with timeouts.connect(timeout=10) as c1, timeouts.connect(timeout=10) as c2:
        c1.send(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n")
        c2.send(b"POST /items HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        assert c1.read_response(timeout=LATEST_S + 1).status == 408
        assert c2.read_response(timeout=LATEST_S + 1).status == 408
    metrics = timeouts.metrics()
    assert metric_sum(metrics, "roost_limit_hits_total", limit="header_timeout") >= before_header + 1
    assert metric_sum(metrics, "roost_limit_hits_total", limit="body_timeout") >= before_body + 1
