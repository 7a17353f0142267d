"""Upstream calls on the loop (roost_fetch): /proxy/{upstream}/{path:path} and /aggregate against
real local upstream servers (tests/e2e/upstream.py): forwarding, errors and their statuses,
timeouts, the bounded pool and wait queue, keep-alive reuse, a stale connection retried once,
retries, the circuit breaker, size limits, trace context, metrics, and a loop that never stalls."""

import concurrent.futures
import time

import pytest

from conftest import RawConnection, free_port, http_get, metric_sum

def down_port():
    """A port nobody listens on."""
    return free_port()


def up(name, port, *opts):
    return ["--upstream", " ".join([f"{name}=http://127.0.0.1:{port}", *opts])]


def gather(port, targets, timeout=30.0):
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(targets)) as ex:
        futs = [ex.submit(http_get, port, t, timeout) for t in targets]
        return [f.result() for f in futs]


def stats(upstream_port):
    return http_get(upstream_port, "/stats").json()


def test_proxy_forwards_a_get_with_its_query(start_server, upstream):
    srv = start_server(*up("api", upstream))
    r = srv.get("/proxy/api/json?a=1&b=two")
    assert r.status == 200, r
    assert r.header("Content-Type") == "application/json"
    assert r.json() == {"upstream": "ok", "path": "/json", "query": "a=1&b=two", "method": "GET"}


def test_proxy_passes_the_upstream_status_through(start_server, upstream):
    srv = start_server(*up("api", upstream))
    r = srv.get("/proxy/api/status/418")
    assert r.status == 418 and r.json() == {"status": 418}


def test_unknown_upstream_is_404_and_no_url_from_the_request(start_server, upstream):
    srv = start_server(*up("api", upstream))
    r = srv.get("/proxy/nope/json")
    assert r.status == 404 and r.json() == {"detail": "Unknown upstream"}
    # A URL in the path stays a path on the configured upstream (no SSRF).
    r = srv.get("/proxy/api/http://127.0.0.1:1/x")
    assert r.status == 404, r  # the upstream's own 404 for that path


def test_upstream_down_is_502(start_server):
    srv = start_server(*up("down", down_port()))
    r = srv.get("/proxy/down/json")
    assert r.status == 502, r
    assert "connect" in r.json()["detail"]


def test_upstream_too_slow_is_504_at_its_timeout(start_server, upstream):
    srv = start_server(*up("slow", upstream, "timeout_ms=300"))
    t0 = time.monotonic()
    r = srv.get("/proxy/slow/sleep?ms=3000")
    took = time.monotonic() - t0
    assert r.status == 504, r
    assert "timeout" in r.json()["detail"]
    assert took < 2.0


def test_a_hundred_slow_calls_wait_together_and_the_loop_never_stalls(start_server, upstream):
    srv = start_server("--threads", "1", *up("api", upstream))
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=101) as ex:
        futs = [ex.submit(http_get, srv.port, "/proxy/api/sleep?ms=1000", 30) for _ in range(100)]
        time.sleep(0.3)
        h0 = time.monotonic()
        health = srv.get("/healthz")
        health_s = time.monotonic() - h0
        results = [f.result() for f in futs]
    took = time.monotonic() - t0
    assert all(r.status == 200 for r in results), [r for r in results if r.status != 200][:3]
    assert took < 3.0, took  # one second each, all at once: not 100 seconds
    assert health.status == 200 and health_s < 0.5
    assert metric_sum(srv.metrics(), "roost_loop_stalls_total") == 0


def test_pool_and_queue_full_answer_503_at_once(start_server, upstream):
    srv = start_server("--threads", "1", *up("small", upstream, "max_conns=2", "max_queue=2"))
    before = stats(upstream)["peak"]
    t0 = time.monotonic()
    results = gather(srv.port, ["/proxy/small/sleep?ms=800"] * 10)
    codes = sorted(r.status for r in results)
    assert codes.count(200) == 4, codes  # two running + two waiting
    full = [r for r in results if r.status == 503]
    assert len(full) == 6 and all("pool_full" in r.json()["detail"] for r in full)
    assert time.monotonic() - t0 < 3.0
    assert stats(upstream)["peak"] <= max(before, 2) + 0  # never more than max_conns at once
    m = srv.metrics()
    assert metric_sum(m, "roost_upstream_calls_total", upstream="small", outcome="pool_full") == 6


def test_waiting_calls_run_in_turn(start_server, upstream):
    srv = start_server("--threads", "1", *up("one", upstream, "max_conns=1", "max_queue=5"))
    t0 = time.monotonic()
    results = gather(srv.port, ["/proxy/one/sleep?ms=300"] * 3)
    took = time.monotonic() - t0
    assert [r.status for r in results] == [200, 200, 200]
    assert took >= 0.85, took  # one at a time


def test_kept_alive_connections_are_reused(start_server, upstream):
    srv = start_server("--threads", "1", *up("api", upstream))
    before = stats(upstream)["connections"]
    for _ in range(20):
        assert srv.get("/proxy/api/json").status == 200
    assert stats(upstream)["connections"] - before <= 2  # one of roost, one of /stats


def test_a_stale_kept_alive_connection_is_retried_once_on_a_new_one(start_server, upstream):
    srv = start_server("--threads", "1", *up("api", upstream))
    before = stats(upstream)["connections"]
    assert srv.get("/proxy/api/drop-second").status == 200
    r = srv.get("/proxy/api/drop-second")  # the reused connection is dropped: retried
    assert r.status == 200, r
    assert r.json() == {"first": True}  # answered on a new connection
    assert stats(upstream)["connections"] - before == 3  # two of roost, one of /stats


def test_retries_for_503_until_it_works(start_server, upstream):
    srv = start_server(*up("retry", upstream, "retries=2"), *up("once", upstream))
    r = srv.get("/proxy/retry/flaky?key=r1&fail=2")
    assert r.status == 200 and r.json() == {"hits": 3}
    r = srv.get("/proxy/once/flaky?key=r2&fail=2")
    assert r.status == 503  # no retries configured: the upstream's answer


def test_circuit_opens_after_failures_then_probes(start_server):
    srv = start_server(*up("down", down_port(), "breaker=3", "cool_ms=1000"))
    for _ in range(3):
        assert srv.get("/proxy/down/json").status == 502
    r = srv.get("/proxy/down/json")
    assert r.status == 503 and "circuit_open" in r.json()["detail"], r
    time.sleep(1.1)
    r = srv.get("/proxy/down/json")  # the probe goes out, fails, and the circuit re-opens
    assert r.status == 502, r
    assert srv.get("/proxy/down/json").status == 503


@pytest.mark.parametrize("chunked", ["0", "1"])
def test_a_response_over_the_limit_is_refused(start_server, upstream, chunked):
    srv = start_server(*up("api", upstream))
    r = srv.get(f"/proxy/api/big?bytes=100000&chunked={chunked}")
    assert r.status == 200 and len(r.body) == 100000
    r = srv.get(f"/proxy/api/big?bytes={9 << 20}&chunked={chunked}", timeout=20)
    assert r.status == 502 and "too_large" in r.json()["detail"], r


def test_aggregate_keeps_order_and_every_error(start_server, upstream):
    srv = start_server(*up("a", upstream), *up("b", down_port()), *up("c", upstream))
    r = srv.get("/aggregate?path=/json")
    assert r.status == 200, r
    res = r.json()["results"]
    assert [x["upstream"] for x in res] == ["a", "b", "c"]
    assert res[0]["status"] == 200 and res[0]["body"]["path"] == "/json"
    assert res[1]["error"] == "connect"
    assert res[2]["status"] == 200


def test_aggregate_concurrency_limits_calls_at_once(start_server, upstream):
    names = [f"u{i}" for i in range(4)]
    args = [a for n in names for a in up(n, upstream)]
    srv = start_server(*args)
    t0 = time.monotonic()
    r = srv.get("/aggregate?path=/sleep?ms=300&concurrency=1")
    took = time.monotonic() - t0
    assert r.status == 200 and len(r.json()["results"]) == 4
    assert took >= 1.1, took
    t0 = time.monotonic()
    assert srv.get("/aggregate?path=/sleep?ms=300").status == 200
    assert time.monotonic() - t0 < 1.0


def test_traceparent_is_passed_on(start_server, upstream):
    srv = start_server(*up("api", upstream))
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    r = srv.request("GET", "/proxy/api/headers", headers={"traceparent": tp})
    assert r.status == 200 and r.json()["traceparent"] == tp


def test_metrics_count_calls_by_outcome(start_server, upstream):
    srv = start_server(*up("api", upstream))
    srv.get("/proxy/api/json")
    m = srv.metrics()
    assert metric_sum(m, "roost_upstream_calls_total", upstream="api", outcome="ok") == 1
    assert metric_sum(m, "roost_upstream_call_duration_seconds_count", upstream="api") == 1


def test_bad_upstream_flag_is_refused(run_roost):
    r = run_roost("--upstream", "no url here")
    assert r.returncode != 0
    assert "--upstream" in r.stderr


def test_a_call_is_cancelled_when_its_client_goes_away(start_server, upstream):
    srv = start_server(*up("api", upstream))
    with RawConnection(srv.port) as c:
        c.send(b"GET /proxy/api/sleep?ms=3000 HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.3)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        m = srv.metrics()
        if metric_sum(m, "roost_upstream_calls_total", upstream="api", outcome="cancelled") == 1:
            break
        time.sleep(0.05)
    assert metric_sum(m, "roost_upstream_calls_total", upstream="api", outcome="cancelled") == 1
    assert metric_sum(m, "roost_upstream_active_calls", upstream="api") == 0
    srv.assert_healthy()


def test_aggregate_validates_its_query(start_server, upstream):
    srv = start_server(*up("api", upstream))
    r = srv.get("/aggregate?concurrency=0")
    assert r.status == 422
    item = r.json()["detail"][0]
    assert item["type"] == "greater_than_equal" and item["loc"] == ["query", "concurrency"]
    r = srv.get("/aggregate?path=json")
    assert r.status == 422 and r.json()["detail"][0]["loc"] == ["query", "path"]


# ---- the http job type: a webhook with retries, its call on a loop ----


def submit(srv, payload, **kw):
    r = srv.post_json("/tasks", {"type": "http", "payload": payload, **kw})
    assert r.status == 201, r
    return r.json()["task_id"]


def wait_final(srv, task_id, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t = srv.get(f"/tasks/{task_id}").json()
        if t["status"] in ("completed", "failed", "cancelled"):
            return t
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} did not end: {t}")


def test_http_job_completes_with_the_answer(start_server, upstream):
    srv = start_server(*up("api", upstream))
    t = wait_final(srv, submit(srv, {"upstream": "api", "path": "/json?x=1"}))
    assert t["status"] == "completed", t
    assert t["result"]["status"] == 200
    assert t["result"]["body"]["query"] == "x=1"


def test_http_job_posts_a_json_body_and_headers(start_server, upstream):
    srv = start_server(*up("api", upstream))
    task = submit(srv, {"upstream": "api", "method": "POST", "path": "/hook",
                        "headers": {"X-Hook": "1"}, "body": {"event": "paid"}})
    t = wait_final(srv, task)
    assert t["status"] == "completed", t
    assert t["result"]["body"] == {"got": '{"event":"paid"}', "content_type": "application/json"}


def test_http_job_retries_5xx_then_completes(start_server, upstream):
    srv = start_server("--retry-backoff-s", "0.05", *up("api", upstream))
    t = wait_final(srv, submit(srv, {"upstream": "api", "path": "/flaky?key=j1&fail=2"},
                               max_retries=3))
    assert t["status"] == "completed", t
    assert t["attempts"] == 3 and t["result"]["body"] == {"hits": 3}


def test_http_job_4xx_fails_without_retry(start_server, upstream):
    srv = start_server("--retry-backoff-s", "0.05", *up("api", upstream))
    t = wait_final(srv, submit(srv, {"upstream": "api", "path": "/status/404"}, max_retries=3))
    assert t["status"] == "failed" and t["attempts"] == 1, t
    assert "404" in t["error"]


def test_http_job_waits_for_retry_after(start_server, upstream):
    srv = start_server("--retry-backoff-s", "0.05", *up("api", upstream))
    t0 = time.monotonic()
    t = wait_final(srv, submit(srv, {"upstream": "api", "path": "/retry-after?key=j2&secs=1"},
                               max_retries=2))
    assert t["status"] == "completed" and t["attempts"] == 2, t
    assert time.monotonic() - t0 >= 0.95


def test_http_job_connect_errors_retry_and_then_fail(start_server):
    srv = start_server("--retry-backoff-s", "0.05", *up("down", down_port()))
    t = wait_final(srv, submit(srv, {"upstream": "down"}, max_retries=2))
    assert t["status"] == "failed" and t["attempts"] == 3, t
    assert "connect" in t["error"]


def test_http_job_payload_is_validated(start_server, upstream):
    srv = start_server(*up("api", upstream))
    r = srv.post_json("/tasks", {"type": "http", "payload": {"upstream": "nope", "path": "x"}})
    assert r.status == 422, r
    locs = [e["loc"] for e in r.json()["detail"]]
    assert ["body", "payload", "upstream"] in locs and ["body", "payload", "path"] in locs


def test_http_jobs_do_not_hold_job_workers(start_server, upstream):
    srv = start_server("--job-workers", "1", *up("api", upstream))
    t0 = time.monotonic()
    ids = [submit(srv, {"upstream": "api", "path": "/sleep?ms=1000"}) for _ in range(5)]
    for i in ids:
        assert wait_final(srv, i)["status"] == "completed"
    assert time.monotonic() - t0 < 3.0  # five 1 s calls at once, not one after the other


def test_a_blocking_handler_waits_for_its_call_off_the_loop(start_server, upstream):
    srv = start_server("--threads", "1", *up("api", upstream))
    r = srv.get("/external-api?path=/json")
    assert r.status == 200 and r.json()["path"] == "/json", r
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=21) as ex:
        futs = [ex.submit(http_get, srv.port, "/external-api?path=/sleep?ms=800", 20)
                for _ in range(20)]
        time.sleep(0.2)
        h0 = time.monotonic()
        assert srv.get("/healthz").status == 200
        health_s = time.monotonic() - h0
        results = [f.result() for f in futs]
    assert all(r.status == 200 for r in results)
    assert time.monotonic() - t0 < 2.5
    assert health_s < 0.5  # the loop answered while 20 workers waited on their calls
    assert metric_sum(srv.metrics(), "roost_loop_stalls_total") == 0
