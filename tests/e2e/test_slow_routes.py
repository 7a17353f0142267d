"""GET /slow-async (a loop timer) and GET /slow-sync (a worker thread): they wait the requested
time, default 3 s, and validate `seconds` like a FastAPI query parameter (0 <= S <= 30)."""

import threading
import time

import pytest

from conftest import assert_validation_error

# libuv timers have millisecond granularity; allow that much early firing, no more.
TIMER_SLACK_S = 0.01


def timed_get(server, target, timeout=15.0):
    t0 = time.monotonic()
    resp = server.get(target, timeout=timeout)
    return resp, time.monotonic() - t0


@pytest.mark.parametrize("route", ["/slow-async", "/slow-sync"])
def test_slow_route_waits_the_requested_seconds(server, route):
    resp, elapsed = timed_get(server, f"{route}?seconds=0.5")
    assert resp.status == 200, resp
    assert resp.header("Content-Type", "").startswith("application/json")
    resp.json()
    assert elapsed >= 0.5 - TIMER_SLACK_S
    assert elapsed < 3.0


@pytest.mark.parametrize("route", ["/slow-async", "/slow-sync"])
def test_slow_route_accepts_zero_seconds(server, route):
    resp, elapsed = timed_get(server, f"{route}?seconds=0")
    assert resp.status == 200, resp
    assert elapsed < 1.0


def test_slow_routes_default_to_three_seconds(server):
    results = {}

    def run(route):
        results[route] = timed_get(server, route)

    threads = [threading.Thread(target=run, args=(r,)) for r in ("/slow-async", "/slow-sync")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for route, (resp, elapsed) in results.items():
        assert resp.status == 200, (route, resp)
        assert elapsed >= 3.0 - TIMER_SLACK_S, (route, elapsed)
        assert elapsed < 6.0, (route, elapsed)


def test_slow_async_does_not_block_other_requests(server):
    """A loop-timer wait leaves the loop free: /plaintext answers at once meanwhile."""
    done = {}

    def slow():
        done["slow"] = timed_get(server, "/slow-async?seconds=1.5")

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.2)
    for _ in range(5):
        resp, elapsed = timed_get(server, "/plaintext")
        assert resp.status == 200
        assert elapsed < 0.5
    t.join()
    assert done["slow"][0].status == 200


@pytest.mark.parametrize("route", ["/slow-async", "/slow-sync"])
@pytest.mark.parametrize("value", ["-1", "30.5", "31", "abc", "", "1e400", "nan"])
def test_invalid_seconds_gives_422_at_query_seconds(server, route, value):
    resp, elapsed = timed_get(server, f"{route}?seconds={value}")
    detail = assert_validation_error(resp)
    assert len(detail) == 1, detail
    assert detail[0]["loc"] == ["query", "seconds"]
    assert elapsed < 1.0
