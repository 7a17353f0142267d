"""The basic routes (/healthz, /plaintext, /json, /metrics), the error shapes for unknown paths and
wrong methods, the headers every response carries, HEAD, and dot-segment normalization."""

import pytest

from conftest import assert_common_headers, metric_sum, parse_metrics


def test_healthz_returns_status_ok(server):
    resp = server.get("/healthz")
    assert resp.status == 200
    assert resp.header("Content-Type", "").startswith("application/json")
    assert resp.json() == {"status": "ok"}


def test_plaintext_returns_hello_world(server):
    resp = server.get("/plaintext")
    assert resp.status == 200
    assert resp.header("Content-Type", "").startswith("text/plain")
    assert resp.body == b"Hello, World!"


def test_json_returns_hello_world_message(server):
    resp = server.get("/json")
    assert resp.status == 200
    assert resp.header("Content-Type", "").startswith("application/json")
    assert resp.json() == {"message": "Hello, World!"}


def test_unknown_path_returns_404_not_found(server):
    resp = server.get("/no-such-route")
    assert resp.status == 404
    assert resp.header("Content-Type", "").startswith("application/json")
    assert resp.json() == {"detail": "Not Found"}


def test_wrong_method_returns_405_with_allow_header(server):
    resp = server.request("POST", "/plaintext", body=b"")
    assert resp.status == 405
    assert resp.json() == {"detail": "Method Not Allowed"}
    allow = {m.strip() for m in resp.header("Allow", "").split(",") if m.strip()}
    assert {"GET", "HEAD"} <= allow
    assert "POST" not in allow


def test_get_on_post_only_route_returns_405_allowing_post(server):
    resp = server.get("/transfer")  # /items has its GET now (the articles' cursor pages)
    assert resp.status == 405
    assert resp.json() == {"detail": "Method Not Allowed"}
    allow = {m.strip() for m in resp.header("Allow", "").split(",") if m.strip()}
    assert "POST" in allow
    assert "GET" not in allow


COMMON_HEADER_CASES = [
    ("GET", "/healthz", None, 200),
    ("GET", "/plaintext", None, 200),
    ("GET", "/json", None, 200),
    ("GET", "/metrics", None, 200),
    ("GET", "/no-such-route", None, 404),
    ("DELETE", "/json", None, 405),
    ("POST", "/items", b'{"name":"Foo","price":1}', 200),
    ("POST", "/items", b"{}", 422),
    ("GET", "/slow-async?seconds=0", None, 200),
    ("GET", "/slow-sync?seconds=0", None, 200),
]


@pytest.mark.parametrize(
    "method,target,body,status",
    COMMON_HEADER_CASES,
    ids=[f"{m} {t} {s}" for m, t, _, s in COMMON_HEADER_CASES],
)
def test_every_response_has_process_time_date_and_content_length(server, method, target, body,
                                                                  status):
    headers = {"Content-Type": "application/json"} if body is not None else None
    resp = server.request(method, target, headers, body)
    assert resp.status == status, resp
    assert_common_headers(resp)


def test_process_time_covers_the_handler(server):
    resp = server.get("/slow-sync?seconds=0.5")
    assert resp.status == 200
    assert float(resp.header("X-Process-Time")) >= 0.49


@pytest.mark.parametrize("target", ["/plaintext", "/json", "/healthz", "/no-such-route"])
def test_head_returns_get_headers_without_body(server, target):
    get = server.get(target)
    with server.connect() as conn:
        # HEAD then GET pipelined: a body after the HEAD response would corrupt the second one.
        conn.send(f"HEAD {target} HTTP/1.1\r\nHost: t\r\n\r\nGET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n")
        head = conn.read_response(head=True)
        after = conn.read_response()
    assert head.status == get.status
    assert head.header("Content-Length") == get.header("Content-Length")
    assert head.header("Content-Type") == get.header("Content-Type")
    assert head.header("X-Process-Time") is not None
    assert head.header("Date") is not None
    assert after.status == 200 and after.body == b"Hello, World!", after


def test_metrics_is_prometheus_text_with_roost_counters(server):
    resp = server.get("/metrics")
    assert resp.status == 200
    assert resp.header("Content-Type", "").startswith("text/plain")
    metrics = parse_metrics(resp.text)
    assert "roost_loop_stalls_total" in metrics
    assert "roost_http_requests_total" in metrics
    limits = {labels.get("limit") for labels, _ in metrics.get("roost_limit_hits_total", [])}
    expected = {"url", "header_size", "headers", "body", "header_timeout", "body_timeout",
                "worker_queue"}
    assert expected <= limits, f"missing limit series: {sorted(expected - limits)}"


def test_metrics_count_http_requests(server):
    before = metric_sum(server.metrics(), "roost_http_requests_total")
    for _ in range(3):
        assert server.get("/plaintext").status == 200
    after = metric_sum(server.metrics(), "roost_http_requests_total")
    assert after - before >= 3


def test_debug_block_route_absent_without_debug_routes_flag(server):
    resp = server.get("/debug/block?ms=1")
    assert resp.status == 404
    assert resp.json() == {"detail": "Not Found"}


@pytest.mark.parametrize(
    "target,body",
    [
        ("/a/../plaintext", b"Hello, World!"),
        ("/a/b/../../plaintext", b"Hello, World!"),
        ("/./plaintext", b"Hello, World!"),
        ("/x/./../plaintext", b"Hello, World!"),
    ],
)
def test_dot_segments_are_removed_before_routing(server, target, body):
    resp = server.get(target)
    assert resp.status == 200, resp
    assert resp.body == body


@pytest.mark.parametrize(
    "target",
    [
        "/../../../etc/passwd",
        "/a/../../../../etc/passwd",
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/%2E%2E/%2E%2E/etc/passwd",
        "/..%2f..%2f..%2fetc%2fpasswd",
    ],
)
def test_dot_dot_paths_never_escape(server, target):
    resp = server.get(target)
    assert resp.status == 404, resp
    assert resp.json() == {"detail": "Not Found"}
    assert b"root:" not in resp.body
