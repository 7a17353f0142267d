"""Shared limits and cache (issue 16): three roost nodes on one real Redis
(tests/e2e/redisserver.py). A client's rate limit holds across the nodes; an answer cached on one
node is a HIT on another; concurrent misses on several nodes run the handler once; an
Idempotency-Key used on two nodes gives one task. Redis stopped: --redis-fail open lets requests
through (counted), closed answers 503; Redis back: shared again."""

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import metric_sum
from redisserver import redis, roost_nodes, wait_health  # noqa: F401

pytestmark = pytest.mark.deadline(60)

OPEN, OPEN2, CLOSED = 0, 1, 2


@pytest.fixture(scope="module")
def nodes(redis, tmp_path_factory):  # noqa: F811
    def flags(i):
        return ["--threads", "2", "--debug-routes", "--redis-wait-ms", "200",
                *(["--redis-fail", "closed"] if i == CLOSED else [])]
    with roost_nodes(redis, tmp_path_factory, 3, flags) as servers:
        yield servers


@pytest.fixture(autouse=True)
def redis_up_and_nodes_alive(nodes, redis):  # noqa: F811
    """Each test starts with Redis up on every node and ends with every node alive and clean."""
    if redis.proc is None:
        redis.start()
    [wait_health(srv, "up") for srv in nodes]
    yield
    problems = [f"{srv!r}: {srv.stderr()[-3000:]}" for srv in nodes
                if not srv.alive() or srv.sanitizer_report()]
    assert not problems, problems


def limited(srv, cid):
    return srv.get("/api/limited", headers={"X-Client-ID": cid})


def submit(srv, key):
    body = json.dumps({"type": "hash", "payload": {"data": "abc", "rounds": 1}}).encode()
    return srv.request("POST", "/tasks", {"Content-Type": "application/json",
                                          "Idempotency-Key": key}, body)


def test_a_clients_rate_limit_holds_across_nodes(nodes):
    cid = uuid.uuid4().hex
    for i in range(10):  # 10 a minute, spread over the three nodes
        resp = limited(nodes[i % 3], cid)
        assert resp.status == 200, resp
        assert resp.header("X-RateLimit-Remaining") == str(9 - i), resp
        assert resp.header("RateLimit-Policy") == '"limited";q=10;w=60'
    for srv in nodes:  # the 11th is refused wherever it goes, with the local path's fields
        resp = limited(srv, cid)
        assert resp.status == 429, resp
        assert 1 <= int(resp.header("Retry-After")) <= 6
        assert resp.header("X-RateLimit-Remaining") == "0"
    assert limited(nodes[0], uuid.uuid4().hex).status == 200  # another client is not affected


def test_an_answer_cached_on_one_node_is_a_hit_on_another(nodes):
    target = f"/debug/cache/blob/{uuid.uuid4().int % 10**9}"
    first = nodes[0].get(target)
    assert first.status == 200 and first.header("X-Cache") == "MISS", first
    for srv in nodes[1:]:
        resp = srv.get(target)
        assert resp.status == 200, resp
        assert resp.header("X-Cache") == "HIT", resp
        assert resp.body == first.body and resp.header("ETag") == first.header("ETag")
    assert metric_sum(nodes[1].metrics(), "roost_cache_lookups_total", result="shared_hit") >= 1


def test_concurrent_misses_on_several_nodes_run_the_handler_once(nodes):
    for srv in nodes:  # a slow handler, so the misses overlap
        assert srv.post_json("/debug/cache/flaky", {"fail": False, "delay_ms": 700}).status == 200
    target = f"/debug/cache/flaky?u={uuid.uuid4().hex}"  # a key of this test's own
    try:
        with ThreadPoolExecutor(9) as pool:
            answers = list(pool.map(lambda i: nodes[i % 3].get(target, timeout=10), range(9)))
    finally:
        for srv in nodes:
            srv.post_json("/debug/cache/flaky", {"fail": False, "delay_ms": 0})
    assert all(a.status == 200 for a in answers), answers
    bodies = {a.body for a in answers}
    assert len(bodies) == 1, bodies  # one run: "n" and "at" are the one fill's
    assert sorted(a.header("X-Cache") for a in answers).count("MISS") == 1, answers


def test_an_idempotency_key_on_two_nodes_gives_one_task(nodes, redis):  # noqa: F811
    key = uuid.uuid4().hex
    first = submit(nodes[0], key)
    assert first.status == 201, first
    assert first.header("Idempotent-Replayed") is None
    for srv in nodes[1:]:
        again = submit(srv, key)
        assert again.status == 201, again
        assert again.header("Idempotent-Replayed") == "true"
        assert again.json()["task_id"] == first.json()["task_id"]
    # While the first request is still being stored on some node: 409, as Stripe answers.
    busy = uuid.uuid4().hex
    redis.command("SET", f"roost:idem:{busy}", "P:elsewhere", "PX", "60000")
    resp = submit(nodes[1], busy)
    assert resp.status == 409, resp


def test_a_slow_redis_gets_the_fail_mode_within_the_bound(nodes, redis):  # noqa: F811
    cid = uuid.uuid4().hex
    redis.command("CLIENT", "PAUSE", "1500", "ALL")  # every reply waits 1.5 s
    t0 = time.monotonic()
    opened = limited(nodes[OPEN], cid)
    closed = limited(nodes[CLOSED], cid)
    took = time.monotonic() - t0
    assert opened.status == 200 and opened.header("X-RateLimit-Remaining") is None, opened
    assert closed.status == 503, closed
    assert took < 1.2, took  # two requests, each bounded by --redis-wait-ms (200 here)
    deadline = time.monotonic() + 5  # the replies come after the pause: counted as late
    while metric_sum(nodes[OPEN].metrics(), "roost_redis_shared_late_total") < 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_redis_down_open_lets_through_closed_answers_503_then_shared_again(nodes, redis):  # noqa: F811,E501
    redis.stop()
    for srv in nodes:
        wait_health(srv, "down")
    cid = uuid.uuid4().hex
    opened = [limited(nodes[OPEN], cid) for _ in range(12)]
    assert all(r.status == 200 for r in opened), opened  # open: allowed, counted
    resp = limited(nodes[CLOSED], cid)
    assert resp.status == 503 and "redis-fail closed" in resp.json()["detail"], resp
    blob = f"/debug/cache/blob/{uuid.uuid4().int % 10**9}"
    assert nodes[OPEN].get(blob).status == 200
    assert nodes[CLOSED].get(blob).status == 503
    assert submit(nodes[OPEN], uuid.uuid4().hex).status == 201
    assert submit(nodes[CLOSED], uuid.uuid4().hex).status == 503
    text = nodes[OPEN].metrics()
    assert metric_sum(text, "roost_redis_shared_failures_total", mode="open") >= 14
    assert metric_sum(text, "roost_rate_limit_unchecked_total") >= 12
    assert metric_sum(nodes[CLOSED].metrics(), "roost_redis_shared_failures_total",
                      mode="closed") >= 3

    redis.start()  # empty: every TAT is gone
    for srv in nodes:
        wait_health(srv, "up")
    cid = uuid.uuid4().hex
    codes = [limited(nodes[i % 3], cid).status for i in range(11)]
    assert codes == [200] * 10 + [429], codes


def test_an_eviction_on_one_node_drops_the_answer_on_every_node(nodes):
    body = {"username": f"u{uuid.uuid4().hex[:8]}", "email": "ada@example.com",
            "full_name": "Ada L"}
    ids = {srv.post_json("/users", body).json()["id"] for srv in nodes[:2]}  # a store each
    assert len(ids) == 1, ids
    uid = ids.pop()
    assert nodes[0].get(f"/users/{uid}/profile").header("X-Cache") == "MISS"
    assert nodes[1].get(f"/users/{uid}/profile").header("X-Cache") == "HIT"
    put = nodes[0].request("PUT", f"/users/{uid}", {"Content-Type": "application/json"},
                           b'{"full_name": "Ada Lovelace"}')
    assert put.status == 200, put
    fresh = nodes[0].get(f"/users/{uid}/profile")
    assert fresh.header("X-Cache") == "MISS" and fresh.json()["display_name"] == "Ada Lovelace"
    # Node 1's own store still says "Ada L": the new name can only come from node 0's answer,
    # once the eviction dropped node 1's local copy too.
    deadline = time.monotonic() + 5
    while (seen := nodes[1].get(f"/users/{uid}/profile").json())["display_name"] != "Ada Lovelace":
        assert time.monotonic() < deadline, seen
        time.sleep(0.05)
