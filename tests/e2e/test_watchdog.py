"""The stall watchdog: a loop blocked longer than --stall-ms is reported on stderr with the route
that was running, and counted in roost_loop_stalls_total; normal traffic reports nothing."""

import threading
import time

import pytest

from conftest import metric_sum

WATCHDOG_FLAGS = ("--threads", "2", "--debug-routes", "--stall-ms", "100")


@pytest.fixture
def watched(start_server):
    return start_server(*WATCHDOG_FLAGS)


def is_stall_line(line):
    return "stall" in line.lower()


def test_blocked_loop_is_reported_with_its_route(watched):
    before = metric_sum(watched.metrics(), "roost_loop_stalls_total")
    offset = len(watched.stderr())
    resp = watched.get("/debug/block?ms=400", timeout=10.0)
    assert resp.status == 200, resp
    line = watched.wait_for_stderr(
        lambda l: is_stall_line(l) and "GET /debug/block" in l, timeout=2.0, start=offset
    )
    assert line is not None, (
        "no stderr line with 'stall' and 'GET /debug/block'; stderr after the request:\n"
        + watched.stderr()[offset:][-3000:]
    )
    assert metric_sum(watched.metrics(), "roost_loop_stalls_total") >= max(1, before + 1)


def test_block_route_blocks_for_the_requested_time(watched):
    t0 = time.monotonic()
    resp = watched.get("/debug/block?ms=300", timeout=10.0)
    assert resp.status == 200, resp
    assert time.monotonic() - t0 >= 0.29


def test_normal_traffic_reports_no_stall(watched):
    before = metric_sum(watched.metrics(), "roost_loop_stalls_total")
    offset = len(watched.stderr())

    errors = []

    def traffic():
        try:
            requests()
        except Exception as e:  # a thread's failure must fail the test
            errors.append(e)

    def requests():
        with watched.connect() as conn:
            for _ in range(10):
                assert conn.request("GET", "/plaintext").status == 200
                assert conn.request("GET", "/json").status == 200
                assert conn.request("POST", "/items", {"Content-Type": "application/json"},
                                    b'{"name":"a","price":1}').status == 200
            assert conn.request("GET", "/slow-async?seconds=0.3").status == 200
            assert conn.request("GET", "/slow-sync?seconds=0.3").status == 200

    threads = [threading.Thread(target=traffic) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert watched.wait_for_stderr(is_stall_line, timeout=0.5, start=offset) is None, (
        "stall reported without a blocked loop:\n" + watched.stderr()[offset:][-3000:]
    )
    assert metric_sum(watched.metrics(), "roost_loop_stalls_total") == before


def test_stall_threshold_follows_the_flag(start_server):
    """With --stall-ms 1000, a 300 ms block is not a stall."""
    srv = start_server("--threads", "2", "--debug-routes", "--stall-ms", "1000")
    offset = len(srv.stderr())
    assert srv.get("/debug/block?ms=300", timeout=10.0).status == 200
    assert srv.wait_for_stderr(is_stall_line, timeout=1.0, start=offset) is None, (
        srv.stderr()[offset:][-3000:]
    )
    assert metric_sum(srv.metrics(), "roost_loop_stalls_total") == 0
