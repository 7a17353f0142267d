"""Rate limits (GCRA): GET /api/limited's built-in 10 a minute per X-Client-ID, --rate-limit
policies (burst, shadow, keys), the 429 and its fields (Retry-After, X-RateLimit-*, the IETF
RateLimit-Policy and RateLimit), /metrics counters, and the bound on remembered clients."""

import re
import socket
import time
import uuid

import pytest

from conftest import RawConnection, assert_json_detail, metric_sum


def client_id():
    return uuid.uuid4().hex


def get_from(port, target, source, headers=None):
    """GET on a fresh connection whose client address is `source` (loopback has all of 127/8)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    conn = RawConnection.__new__(RawConnection)
    conn.timeout = 5
    conn.sock = sock
    conn.buf = b""
    conn.eof = conn.reset = False
    try:
        return conn.request("GET", target, headers=headers)
    finally:
        conn.close()


def limited(server, cid=None):
    """GET /api/limited on a new connection each time (so calls land on both loops)."""
    return server.get("/api/limited", headers={"X-Client-ID": cid} if cid else None)


def assert_limit_fields(resp, limit, remaining, policy, q, w):
    assert resp.header("X-RateLimit-Limit") == str(limit), resp
    assert resp.header("X-RateLimit-Remaining") == str(remaining), resp
    reset = int(resp.header("X-RateLimit-Reset"))
    assert 0 < reset <= w, resp
    assert resp.header("RateLimit-Policy") == f'"{policy}";q={q};w={w}', resp
    m = re.fullmatch(rf'"{policy}";r=(\d+);t=(\d+)', resp.header("RateLimit", ""))
    assert m, resp
    assert int(m.group(1)) == remaining
    return int(m.group(2))


def test_eleventh_call_in_a_minute_is_429_with_every_field(server):
    cid = client_id()
    for i in range(10):
        resp = limited(server, cid)
        assert resp.status == 200, resp
        assert resp.json() == {"message": "ok"}
        t = assert_limit_fields(resp, 10, 9 - i, "limited", 10, 60)
        assert 1 <= t <= 6
        assert resp.header("Retry-After") is None
    resp = limited(server, cid)
    assert_json_detail(resp, 429)
    assert resp.json() == {"detail": "Too Many Requests"}
    t = assert_limit_fields(resp, 10, 0, "limited", 10, 60)
    # After a burst of 10 at 10/m, the next request fits 6 s after the first one.
    retry = int(resp.header("Retry-After"))
    assert 1 <= retry <= 6, resp
    assert t == retry  # the effective window ends when the client may come back


def test_client_ids_are_counted_apart(server):
    a, b = client_id(), client_id()
    for _ in range(10):
        assert limited(server, a).status == 200
    assert limited(server, a).status == 429
    resp = limited(server, b)
    assert resp.status == 200, resp
    assert resp.header("X-RateLimit-Remaining") == "9"


def test_without_client_id_the_client_address_is_the_key(start_server):
    srv = start_server("--threads", "2")
    for _ in range(10):
        assert get_from(srv.port, "/api/limited", "127.0.0.3").status == 200
    assert get_from(srv.port, "/api/limited", "127.0.0.3").status == 429
    assert get_from(srv.port, "/api/limited", "127.0.0.4").status == 200
    # A header names a client of its own, even from a refused address.
    resp = get_from(srv.port, "/api/limited", "127.0.0.3", {"X-Client-ID": "127.0.0.3"})
    assert resp.status == 200, resp


@pytest.mark.deadline(60)
def test_retry_after_is_when_the_next_call_succeeds(server):
    cid = client_id()
    for _ in range(10):
        assert limited(server, cid).status == 200
    refused = limited(server, cid)
    assert refused.status == 429
    retry = int(refused.header("Retry-After"))
    time.sleep(retry - 1.5 if retry > 2 else 0)
    # Still early (unless the wait above was skipped): refused, and told to wait less.
    early = limited(server, cid)
    if retry > 2:
        assert early.status == 429, early
        assert int(early.header("Retry-After")) <= 2
        time.sleep(int(early.header("Retry-After")))
    else:
        time.sleep(retry)
    resp = limited(server, cid)
    assert resp.status == 200, resp
    assert resp.header("X-RateLimit-Remaining") == "0"
    assert limited(server, cid).status == 429


def test_burst_allows_that_many_at_once_then_the_rate(start_server):
    srv = start_server("--threads", "2",
                       "--rate-limit", "/plaintext rate=1/m burst=3 key=header:X-Client-ID name=b")
    cid = {"X-Client-ID": client_id()}
    for i in range(3):
        resp = srv.get("/plaintext", headers=cid)
        assert resp.status == 200, resp
        assert resp.text == "Hello, World!"
        assert resp.header("X-RateLimit-Remaining") == str(2 - i)
        assert resp.header("RateLimit-Policy") == '"b";q=1;w=60;roost-burst=3'
    resp = srv.get("/plaintext", headers=cid)
    assert resp.status == 429, resp
    assert 59 <= int(resp.header("Retry-After")) <= 60
    # Other paths are not covered by the glob.
    resp = srv.get("/json", headers=cid)
    assert resp.status == 200 and resp.header("RateLimit") is None, resp


def test_shadow_counts_but_never_refuses(start_server):
    srv = start_server("--threads", "2", "--rate-limit", "/json rate=2/m shadow name=dry")
    for _ in range(6):
        resp = srv.get("/json")
        assert resp.status == 200, resp
        assert resp.header("RateLimit") is None and resp.header("X-RateLimit-Limit") is None
    m = srv.metrics()
    assert metric_sum(m, "roost_rate_limit_total", policy="dry", result="allowed") == 2
    assert metric_sum(m, "roost_rate_limit_total", policy="dry", result="shadow_limited") == 4
    assert metric_sum(m, "roost_rate_limit_total", policy="dry", result="limited") == 0


def test_metrics_count_allowed_and_limited(server):
    before = server.metrics()
    cid = client_id()
    for _ in range(12):
        limited(server, cid)
    after = server.metrics()

    def delta(result):
        return (metric_sum(after, "roost_rate_limit_total", policy="limited", result=result)
                - metric_sum(before, "roost_rate_limit_total", policy="limited", result=result))

    assert delta("allowed") == 10
    assert delta("limited") == 2
    assert metric_sum(after, "roost_rate_limit_keys") >= 1


def test_api_key_policy_keys_by_bearer_or_x_api_key(start_server):
    srv = start_server("--threads", "2",
                       "--rate-limit", "/json rate=1/h key=api-key name=keys")
    assert srv.get("/json", headers={"Authorization": "Bearer k1"}).status == 200
    assert srv.get("/json", headers={"X-API-Key": "k1"}).status == 429  # the same key
    assert srv.get("/json", headers={"X-API-Key": "k2"}).status == 200


def test_remembered_clients_are_bounded_least_recent_forgotten(start_server):
    srv = start_server("--threads", "2", "--rate-limit-max-keys", "1",
                       "--rate-limit", "/json rate=1/h key=header:X-Client-ID name=tiny")
    a, b = {"X-Client-ID": "a"}, {"X-Client-ID": "b"}
    assert srv.get("/json", headers=a).status == 200
    assert srv.get("/json", headers=a).status == 429
    assert srv.get("/json", headers=b).status == 200  # takes a's place
    assert srv.get("/json", headers=a).status == 200  # a was forgotten: a fresh burst
    m = srv.metrics()
    assert metric_sum(m, "roost_rate_limit_keys") == 1
    assert metric_sum(m, "roost_rate_limit_evicted_total", state="live") >= 2


@pytest.mark.parametrize("spec", ["rate=10", "/x rate=10/d", "/x rate=1/s key=cookie",
                                  "/x rate=1/s burst=0", "/x rate=1/s name=a\"b"])
def test_a_bad_policy_stops_the_start(run_roost, spec):
    result = run_roost("--port", "0", "--rate-limit", spec)
    assert result.returncode == 2, result
    assert "rate limit" in result.stderr, result


def test_globs_match_exact_paths_prefixes_and_patterns(start_server):
    srv = start_server("--threads", "2",
                       "--rate-limit", "/rooms/* rate=1/h key=header:X-Client-ID name=prefix",
                       "--rate-limit", "/r[o]oms rate=1/h key=header:X-Client-ID name=pattern")
    cid = {"X-Client-ID": client_id()}
    for path, policy in (("/rooms/a/count", "prefix"), ("/rooms", "pattern")):
        resp = srv.get(path, headers=cid)
        assert resp.status == 200, resp
        assert resp.header("RateLimit-Policy", "").startswith(f'"{policy}"'), resp
        assert srv.get(path, headers=cid).status == 429
    # '*' also matches '/', as fnmatch(3) without FNM_PATHNAME does.
    assert srv.get("/rooms/b/users", headers=cid).status == 429
    assert srv.get("/json", headers=cid).header("RateLimit") is None
