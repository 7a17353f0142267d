"""Kept-alive upstream connections on /metrics: roost_upstream_connections (open to the upstream)
and roost_upstream_idle_connections (open and waiting for a call), per upstream, against the real
local upstream (tests/e2e/upstream.py), whose /stats counts what it accepted."""

import concurrent.futures
import time

from conftest import http_get, metric_sum


def gauges(srv, name):
    text = srv.metrics()
    return (metric_sum(text, "roost_upstream_connections", upstream=name),
            metric_sum(text, "roost_upstream_idle_connections", upstream=name))


def test_idle_connections_are_the_kept_alive_ones(start_server, upstream):
    srv = start_server("--threads", "1",
                       "--upstream", f"api=http://127.0.0.1:{upstream} max_conns=10",
                       "--upstream", f"other=http://127.0.0.1:{upstream}")
    assert gauges(srv, "api") == (0, 0)
    accepted0 = http_get(upstream, "/stats").json()["connections"]
    # Five calls at once need five connections; each is kept alive once its call ends.
    with concurrent.futures.ThreadPoolExecutor(max_workers=5) as ex:
        futs = [ex.submit(http_get, srv.port, "/proxy/api/sleep?ms=500", 10) for _ in range(5)]
        time.sleep(0.25)
        during = gauges(srv, "api")
        assert all(f.result().status == 200 for f in futs)
    assert during == (5, 0), during  # all five open and busy
    assert gauges(srv, "api") == (5, 5)
    assert gauges(srv, "other") == (0, 0)  # per upstream
    # One more call reuses one of them: still five open, no new connection at the upstream.
    assert srv.get("/proxy/api/json").status == 200
    assert gauges(srv, "api") == (5, 5)
    opened = http_get(upstream, "/stats").json()["connections"] - accepted0 - 1  # less this one
    assert opened == 5, opened


def test_a_connection_the_upstream_closes_is_no_longer_counted(start_server, upstream):
    srv = start_server("--threads", "1", "--upstream", f"api=http://127.0.0.1:{upstream}")
    # /drop-second answers, keeps the connection, then closes it at the next request; the
    # proxy's retry on a new connection leaves one open connection, idle.
    assert srv.get("/proxy/api/drop-second").status == 200
    assert gauges(srv, "api") == (1, 1)
    assert srv.get("/proxy/api/drop-second").status == 200
    assert gauges(srv, "api") == (1, 1)
