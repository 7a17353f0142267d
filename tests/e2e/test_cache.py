"""The response cache (src/mw/cache.c): one fill for concurrent misses, HIT / MISS / STALE,
ETag and If-None-Match 304, Cache-Control from the TTL, stale-while-revalidate and
stale-if-error windows, eviction when a user changes, and the --cache-max-bytes bound (LRU)."""

import threading
import time

from conftest import metric_sum

FLAGS = ("--threads", "2", "--debug-routes")


def concurrently(n, fn):
    results = [None] * n
    errors = []

    def run(i):
        try:
            results[i] = fn(i)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def test_ten_concurrent_first_calls_make_one_fill(start_server):
    srv = start_server(*FLAGS)
    t0 = time.monotonic()
    resps = concurrently(10, lambda i: srv.get("/expensive-query", timeout=20))
    elapsed = time.monotonic() - t0
    assert all(r.status == 200 for r in resps), resps
    bodies = [r.json() for r in resps]
    assert all(b["data"] == "expensive result" for b in bodies)
    assert len({b["computed_at"] for b in bodies}) == 1, bodies
    # One fill of 2 s, not ten (nor two after each other).
    assert 1.9 <= elapsed < 3.9, elapsed
    labels = sorted(r.header("X-Cache") for r in resps)
    assert labels.count("MISS") == 1, labels
    text = srv.metrics()
    assert metric_sum(text, "roost_cache_lookups_total", result="miss") == 1
    assert metric_sum(text, "roost_cache_lookups_total", result="coalesced") >= 1

    t0 = time.monotonic()
    again = srv.get("/expensive-query")
    assert time.monotonic() - t0 < 0.5
    assert again.status == 200
    assert again.header("X-Cache") == "HIT"
    assert again.json() == bodies[0]
    assert again.header("Cache-Control") == "max-age=60"


def test_if_none_match_gives_304_cached_or_not(start_server):
    srv = start_server(*FLAGS)
    first = srv.get("/debug/cache/blob/1")
    assert first.status == 200 and first.header("X-Cache") == "MISS"
    etag = first.header("ETag")
    assert etag and etag.startswith('"') and etag.endswith('"') and len(etag) == 34
    hit = srv.get("/debug/cache/blob/1", headers={"If-None-Match": etag})
    assert hit.status == 304, hit
    assert hit.body == b""
    assert hit.header("ETag") == etag
    assert hit.header("X-Cache") == "HIT"
    # A list with the tag, and the weak form, match too; another tag does not.
    listed = srv.get("/debug/cache/blob/1", headers={"If-None-Match": f'"nope", W/{etag}'})
    assert listed.status == 304
    other = srv.get("/debug/cache/blob/1", headers={"If-None-Match": '"nope"'})
    assert other.status == 200 and other.header("ETag") == etag
    assert metric_sum(srv.metrics(), "roost_cache_not_modified_total") == 2
    # The fill itself (not from the cache) answers 304 when the client already has the body:
    # a second server has not cached blob 1, and makes the same bytes.
    srv2 = start_server(*FLAGS)
    filled = srv2.get("/debug/cache/blob/1", headers={"If-None-Match": etag})
    assert filled.header("X-Cache") == "MISS"
    assert filled.status == 304 and filled.body == b"", filled


def test_query_and_path_are_part_of_the_key(start_server):
    srv = start_server(*FLAGS)
    a = srv.get("/debug/cache/blob/3?v=1")
    b = srv.get("/debug/cache/blob/3?v=2")
    assert a.header("X-Cache") == "MISS" and b.header("X-Cache") == "MISS"
    assert srv.get("/debug/cache/blob/3?v=1").header("X-Cache") == "HIT"
    assert srv.get("/debug/cache/blob/4?v=1").header("X-Cache") == "MISS"


def test_vary_headers_are_part_of_the_key(start_server):
    srv = start_server(*FLAGS)
    a = srv.get("/debug/cache/blob/5", headers={"X-Tenant": "a"})
    # gzip adds its own Vary (the body is over its 1000-byte floor): X-Tenant is among them
    assert a.header("X-Cache") == "MISS" and a.has_token("Vary", "X-Tenant")
    assert srv.get("/debug/cache/blob/5", headers={"X-Tenant": "b"}).header("X-Cache") == "MISS"
    assert srv.get("/debug/cache/blob/5").header("X-Cache") == "MISS"
    hit = srv.get("/debug/cache/blob/5", headers={"X-Tenant": "a"})
    assert hit.header("X-Cache") == "HIT" and hit.has_token("Vary", "X-Tenant")


def test_stale_while_revalidate_serves_stale_then_fresh_with_one_refill(start_server):
    """A stale answer inside the window goes out at once, to every request; one refill runs in
    the background (not on any request's time), and its answer is the next HIT."""
    srv = start_server(*FLAGS)
    first = srv.get("/debug/cache/flaky")
    assert first.status == 200 and first.header("X-Cache") == "MISS"
    n0 = first.json()["n"]
    time.sleep(1.2)  # past the 1 s TTL, inside the 1 s stale-while-revalidate window
    assert srv.post_json("/debug/cache/flaky", {"fail": False, "delay_ms": 1000}).status == 200
    t0 = time.monotonic()
    stale = concurrently(5, lambda i: srv.get("/debug/cache/flaky"))
    assert time.monotonic() - t0 < 0.8  # none waited for the 1 s refill
    for r in stale:
        assert r.status == 200 and r.header("X-Cache") == "STALE", r
        assert r.json()["n"] == n0
    # Stale until the background refill is stored, then its answer as a HIT.
    deadline = time.monotonic() + 5
    while (fresh := srv.get("/debug/cache/flaky")).header("X-Cache") == "STALE":
        assert fresh.json()["n"] == n0
        assert time.monotonic() < deadline, "the refill never landed"
        time.sleep(0.05)
    assert fresh.header("X-Cache") == "HIT", fresh
    assert fresh.json()["n"] == n0 + 1  # one call of the handler for every stale hit
    text = srv.metrics()
    assert metric_sum(text, "roost_cache_revalidations_total") == 1


def test_a_failed_background_refill_keeps_the_stale_answer(start_server):
    srv = start_server(*FLAGS)
    first = srv.get("/debug/cache/flaky")
    time.sleep(1.2)
    assert srv.post_json("/debug/cache/flaky", {"fail": True, "delay_ms": 0}).status == 200
    stale = srv.get("/debug/cache/flaky")
    assert stale.status == 200 and stale.header("X-Cache") == "STALE"
    time.sleep(0.2)
    again = srv.get("/debug/cache/flaky")  # the refill failed: still the old answer
    assert again.status == 200 and again.json() == first.json(), again
    assert metric_sum(srv.metrics(), "roost_cache_fill_errors_total") >= 1


def test_hit_bytes_are_the_fill_bytes_small_and_large(start_server):
    """A HIT is written from the stored answer (copied into the head's write when small, by
    reference when large): the bytes must be exactly the fill's, on keep-alive and pipelined."""
    srv = start_server(*FLAGS)
    for kib in (1, 15, 17, 300):
        miss = srv.get(f"/debug/cache/big/{kib}")
        assert miss.status == 200 and miss.header("X-Cache") == "MISS"
        assert len(miss.body) == kib * 1024
        for _ in range(3):
            hit = srv.get(f"/debug/cache/big/{kib}")
            assert hit.header("X-Cache") == "HIT"
            assert hit.body == miss.body, kib
            assert int(hit.header("Content-Length")) == kib * 1024
        head = srv.request("HEAD", f"/debug/cache/big/{kib}")
        assert head.status == 200 and head.body == b""
    # Pipelined HITs of a large and a small body on one connection come back whole, in order.
    import socket

    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        one = b"GET /debug/cache/big/300 HTTP/1.1\r\nHost: x\r\n\r\n"
        two = b"GET /debug/cache/big/1 HTTP/1.1\r\nHost: x\r\n\r\n"
        s.sendall(one + two + one)
        got = b""
        s.settimeout(10)
        while got.count(b"X-Cache: HIT") < 3 or len(got) < 601 * 1024:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            got += chunk
    big = srv.get("/debug/cache/big/300").body
    small = srv.get("/debug/cache/big/1").body
    parts = got.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert len(parts) == 3
    for part, body in zip(parts, (big, small, big)):
        assert part.split(b"\r\n\r\n", 1)[1] == body


def test_stale_if_error_replaces_a_failed_refill(start_server):
    srv = start_server(*FLAGS)
    first = srv.get("/debug/cache/flaky")
    assert first.status == 200
    time.sleep(2.2)  # past TTL + stale-while-revalidate, inside stale-if-error (30 s)
    assert srv.post_json("/debug/cache/flaky", {"fail": True, "delay_ms": 0}).status == 200
    resp = srv.get("/debug/cache/flaky")
    assert resp.status == 200, resp
    assert resp.header("X-Cache") == "STALE"
    assert resp.json() == first.json()
    assert metric_sum(srv.metrics(), "roost_cache_fill_errors_total") == 1


def test_errors_are_not_cached(start_server):
    srv = start_server(*FLAGS)
    assert srv.post_json("/debug/cache/flaky", {"fail": True, "delay_ms": 0}).status == 200
    bad = srv.get("/debug/cache/flaky")
    assert bad.status == 503 and bad.header("X-Cache") == "MISS"
    assert srv.post_json("/debug/cache/flaky", {"fail": False, "delay_ms": 0}).status == 200
    good = srv.get("/debug/cache/flaky")
    assert good.status == 200 and good.header("X-Cache") == "MISS"


def test_put_and_delete_evict_the_profile(start_server):
    srv = start_server(*FLAGS)
    made = srv.post_json("/users", {"username": "ada", "email": "ada@example.com",
                                    "full_name": "Ada L"})
    assert made.status == 201, made
    uid = made.json()["id"]
    p1 = srv.get(f"/users/{uid}/profile")
    assert p1.status == 200 and p1.header("X-Cache") == "MISS", p1
    assert p1.json()["display_name"] == "Ada L"
    assert p1.header("Cache-Control") == "max-age=600"
    assert srv.get(f"/users/{uid}/profile").header("X-Cache") == "HIT"
    put = srv.request("PUT", f"/users/{uid}", {"Content-Type": "application/json"},
                      b'{"full_name": "Ada Lovelace"}')
    assert put.status == 200, put
    p2 = srv.get(f"/users/{uid}/profile")
    assert p2.header("X-Cache") == "MISS"
    assert p2.json()["display_name"] == "Ada Lovelace"
    assert srv.get(f"/users/{uid}/profile").header("X-Cache") == "HIT"
    assert srv.request("DELETE", f"/users/{uid}").status == 204
    gone = srv.get(f"/users/{uid}/profile")
    assert gone.status == 404
    assert metric_sum(srv.metrics(), "roost_cache_evictions_total", reason="invalidate") >= 2


def test_byte_bound_evicts_least_recently_used(start_server):
    # Each blob entry is a little over 1 KB: 4 KB hold three.
    srv = start_server(*FLAGS, "--cache-max-bytes", "4096")
    for i in (1, 2, 3):
        assert srv.get(f"/debug/cache/blob/{i}").header("X-Cache") == "MISS"
    assert srv.get("/debug/cache/blob/1").header("X-Cache") == "HIT"  # 2 is now the oldest
    assert srv.get("/debug/cache/blob/4").header("X-Cache") == "MISS"  # evicts 2
    assert srv.get("/debug/cache/blob/1").header("X-Cache") == "HIT"
    assert srv.get("/debug/cache/blob/3").header("X-Cache") == "HIT"
    assert srv.get("/debug/cache/blob/4").header("X-Cache") == "HIT"
    assert srv.get("/debug/cache/blob/2").header("X-Cache") == "MISS"
    text = srv.metrics()
    assert metric_sum(text, "roost_cache_evictions_total", reason="lru") >= 1
    assert 0 < metric_sum(text, "roost_cache_bytes") <= 4096


def test_a_cached_answer_is_gzipped_per_request(start_server):
    """The cache keeps the plain body; gzip runs on every answer, HIT or not, by the request's
    own Accept-Encoding."""
    import gzip as gz

    srv = start_server(*FLAGS)
    plain = srv.get("/debug/cache/blob/6", headers={"X-Tenant": "a"})
    zipped = srv.get("/debug/cache/blob/6", headers={"X-Tenant": "a", "Accept-Encoding": "gzip"})
    assert zipped.header("X-Cache") == "HIT" and zipped.header("Content-Encoding") == "gzip"
    assert gz.decompress(zipped.body) == plain.body
    again = srv.get("/debug/cache/blob/6", headers={"X-Tenant": "a"})
    assert again.header("Content-Encoding") is None and again.body == plain.body
