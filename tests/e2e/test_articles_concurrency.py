"""The FastAPI articles' concurrency, upstream, file, WebSocket and metrics examples at their own
paths: each answers the article's request with the article's shape, and no loop stalls while
they run (the watchdog's counter stays 0), except on /bad-example, which exists to show one."""

import concurrent.futures
import time

import pytest

from conftest import http_get, metric_sum
from wsclient import WsConn

STALL = "roost_loop_stalls_total"


@pytest.fixture
def srv(shared_servers, upstream):
    # --stall-ms 500: the machine the suite runs on may be shared (load 10+ on 2 cores), which
    # pauses whole processes for 200-400 ms; a handler blocking a loop for 1 s is still caught
    flags = ("--threads", "2", "--stall-ms", "500", "--ws-text-ping-s", "1",
             "--upstream", f"api=http://127.0.0.1:{upstream} max_conns=20")
    with shared_servers.use(*flags) as s:
        yield s
        assert metric_sum(s.metrics(), STALL) == 0, "a loop stalled"


def timed(srv, target, **kw):
    t0 = time.monotonic()
    r = srv.get(target, timeout=15, **kw)
    return r, time.monotonic() - t0


def test_sync_sleeps_on_a_worker(srv):
    r, dt = timed(srv, "/sync")
    assert r.status == 200 and r.json() == {"message": "sync done"}
    assert dt >= 0.95


def test_sync_operation_takes_three_seconds(srv):
    r, dt = timed(srv, "/sync-operation")
    assert r.status == 200 and r.json() == {"result": "sync operation done"}
    assert dt >= 2.9


def test_async_waits_on_the_loop_and_many_overlap(srv):
    with concurrent.futures.ThreadPoolExecutor(10) as ex:
        t0 = time.monotonic()
        rs = list(ex.map(lambda _: srv.get("/async", timeout=15), range(10)))
        dt = time.monotonic() - t0
    assert all(r.status == 200 and r.json() == {"message": "async done"} for r in rs)
    assert dt < 3.0, "ten 1 s loop timers should overlap"


def test_mixed_sums_squares_after_half_a_second(srv):
    r, dt = timed(srv, "/mixed/3")
    assert r.status == 200, r
    assert r.json() == {"item_id": 3, "result": sum(i * i for i in range(30000))}
    assert dt >= 0.45
    assert srv.get("/mixed/201").status == 422


def test_items_item_after_simulated_io(srv):
    r, dt = timed(srv, "/items/7")
    assert r.status == 200
    body = r.json()
    assert set(body) == {"item_id", "name", "price"} and body["item_id"] == 7
    assert dt >= 0.95


def test_process_data_on_a_worker(srv):
    r = srv.get("/process/hello")
    assert r.status == 200
    assert r.json()["data"] == "hello" and len(r.json()["result"]) == 16


def test_process_image_query_on_a_worker(srv):
    r = srv.get("/process-image?file_path=cat.png")
    assert r.status == 200 and r.json()["file_path"] == "cat.png"
    assert srv.get("/process-image").status == 422


def test_bad_example_absent_without_debug_routes(srv):
    assert srv.get("/bad-example").status == 404


def test_bad_example_blocks_the_loop_and_the_watchdog_reports_it(start_server):
    s = start_server("--threads", "1", "--debug-routes", "--stall-ms", "100")
    r = s.get("/bad-example", timeout=10)
    assert r.status == 200
    time.sleep(0.3)
    assert metric_sum(s.metrics(), STALL) >= 1


def test_fetch_data_and_proxy_call_the_default_upstream(srv):
    for path in ("/proxy", "/fetch-data"):
        r = srv.get(path)
        assert r.status == 200, r
        assert r.json()["upstream"] == "ok" and r.json()["path"] == "/json"


def test_external_api_calls_from_a_blocking_handler(srv):
    r = srv.get("/external-api?path=/json")
    assert r.status == 200 and r.json()["upstream"] == "ok"


def test_concurrent_fetch_gathers_three(srv):
    r = srv.get("/concurrent-fetch")
    assert r.status == 200
    body = r.json()
    assert len(body["results"]) == 3 and body["succeeded"] == 3 and body["failed"] == 0


def test_concurrent_with_limit_runs_100_calls_ten_at_a_time(srv):
    r, dt = timed(srv, "/concurrent-with-limit?path=/sleep%3Fms%3D100")
    assert r.status == 200, r
    body = r.json()
    assert len(body["results"]) == 100 and body["succeeded"] == 100
    assert dt >= 0.9, "100 calls of 100 ms, 10 at once, take about 1 s"


def test_task_group_is_all_or_nothing(srv):
    ok = srv.get("/task-group")
    assert ok.status == 200 and len(ok.json()["results"]) == 3
    bad = srv.get("/task-group?path=/status/500")
    assert bad.status == 502 and "failed" in bad.json()["detail"]


def test_read_file_404_then_its_content(srv):
    path = srv.data_dir / "data.txt"
    if path.exists():
        path.unlink()
    assert srv.get("/read-file").status == 404
    path.write_text("hello from disk\n")
    r = srv.get("/read-file")
    assert r.status == 200 and r.json() == {"content": "hello from disk\n"}


def test_ws_client_id_answers_each_text(srv):
    with WsConn.open(srv.port, "/ws/alice") as ws:
        ws.send_text("hi")
        while True:
            op, payload = ws.recv_message(timeout=5)
            if payload != b"__ping__":
                break
        assert payload.decode() == "[alice] 收到: hi"


def test_ws_text_heartbeat_pings_and_ignores_pong(srv):
    with WsConn.open(srv.port, "/ws/bob") as ws:
        op, payload = ws.recv_message(timeout=3)
        assert payload == b"__ping__"
        ws.send_text("__pong__")
        ws.send_text("after")
        got = []
        while len(got) < 1:
            op, payload = ws.recv_message(timeout=3)
            if payload != b"__ping__":
                got.append(payload.decode())
        assert got == ["[bob] 收到: after"], "__pong__ gets no answer"


def test_metrics_json_has_the_articles_fields(srv):
    r = srv.get("/metrics.json")
    assert r.status == 200
    m = r.json()
    assert set(m) == {"cpu_percent", "memory_percent", "disk_usage", "connections"}
    assert 0 <= m["cpu_percent"] <= 100 and 0 < m["memory_percent"] <= 100
    assert 0 < m["disk_usage"] <= 100 and m["connections"] >= 1
