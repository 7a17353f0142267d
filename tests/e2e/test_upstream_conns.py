"""Connections to an upstream: on /metrics, roost_upstream_connections (open to the upstream) and
roost_upstream_idle_connections (open and waiting for a call), per upstream; and calls that find
no free file descriptor wait for one instead of failing. Against the real local upstream
(tests/e2e/upstream.py), whose /stats counts what it accepted."""

import concurrent.futures
import os
import resource
import time

from conftest import RawConnection, http_get, metric_sum


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
        futs = [ex.submit(http_get, srv.port, "/proxy/api/sleep?ms=1500", 10) for _ in range(5)]
        deadline = time.monotonic() + 1.0
        while (during := gauges(srv, "api")) != (5, 0) and time.monotonic() < deadline:
            time.sleep(0.05)
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


def test_calls_short_of_file_descriptors_wait_instead_of_failing(start_server, upstream):
    srv = start_server("--threads", "1",
                       "--upstream", f"api=http://127.0.0.1:{upstream} max_conns=1000")
    # 40 clients connected first, then room for about 20 upstream connections: the other 20
    # calls must wait for a kept-alive connection to come free, not answer 502.
    conns = [RawConnection(srv.port, timeout=20) for _ in range(40)]
    try:
        for c in conns:
            assert c.request("GET", "/healthz").status == 200
        spare = len(os.listdir(f"/proc/{srv.proc.pid}/fd")) + 20
        resource.prlimit(srv.proc.pid, resource.RLIMIT_NOFILE, (spare, spare))
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=40) as ex:
            futs = [ex.submit(c.request, "GET", "/proxy/api/sleep?ms=600") for c in conns]
            results = [f.result() for f in futs]
        took = time.monotonic() - t0
    finally:
        for c in conns:
            c.close()
    assert [r.status for r in results] == [200] * 40, [r for r in results if r.status != 200][:3]
    text = srv.metrics()
    assert metric_sum(text, "roost_upstream_out_of_fds_total") > 0
    assert metric_sum(text, "roost_upstream_calls_total", outcome="connect") == 0
    assert took >= 1.1, took  # two rounds of 600 ms: some calls waited for a connection
