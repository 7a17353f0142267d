"""Rooms across nodes (issue 16): three roost nodes on one real Redis (tests/e2e/redisserver.py).
A message published on any node reaches the room's members on every node once, with the same
ids in the same order; ?since= reads the room's history from Redis on another node; direct
messages cross nodes; Redis down keeps local delivery (/healthz says so), and when Redis comes
back empty the members are told `reset` (a new epoch) and bridging resumes."""

import json
import time

import pytest

from conftest import RoostServer, _SharedServers, metric_sum, post_json
from redisserver import redis  # noqa: F401
from wsclient import join, unique

pytestmark = pytest.mark.deadline(60)

NODES = 3
TTL_S = 2  # --presence-ttl-s: a dead node's members leave after this


@pytest.fixture(scope="module")
def nodes(redis, tmp_path_factory):  # noqa: F811
    shared = _SharedServers(tmp_path_factory)
    servers = [shared.get(node_flags(redis, f"n{i}")) for i in range(NODES)]
    yield servers
    shared.shutdown()


def node_flags(redis, node_id):  # noqa: F811
    return ["--threads", "2", "--redis", redis.url, "--node-id", node_id,
            "--presence-ttl-s", str(TTL_S)]


@pytest.fixture(autouse=True)
def healthy_nodes(nodes, redis):  # noqa: F811
    """Each test starts with Redis up and every node connected; it ends with no node dead."""
    if redis.proc is None:
        redis.start()
    for srv in nodes:
        wait_health(srv, "up")
    yield
    for srv in nodes:
        assert srv.alive(), f"{srv!r} died:\n{srv.stderr()[-3000:]}"
        assert not srv.sanitizer_report()


def wait_health(srv, state, timeout=10.0):
    deadline = time.monotonic() + timeout
    body = None
    while time.monotonic() < deadline:
        resp = srv.get("/healthz")
        assert resp.status == 200, resp
        body = resp.json()
        if body.get("redis") == state:
            return body
        time.sleep(0.05)
    pytest.fail(f"{srv!r}: /healthz never said redis={state} (last {body})")


def messages(conn, count, timeout=5.0, types=("message", "broadcast")):
    """The next `count` frames of the given types (presence notices are skipped)."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"got {len(out)} of {count}: {out}"
        frame = conn.recv_json(timeout=left)
        if frame.get("type") in types:
            out.append(frame)
    return out


def no_more_messages(conn, seconds):
    """Within `seconds`, nothing but presence notices."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            frame = conn.recv_json(timeout=left)
        except TimeoutError:
            return
        assert frame["type"] in ("join", "leave"), frame


def settle():
    time.sleep(0.3)  # the nodes' SUBSCRIBEs reach Redis


def test_messages_reach_every_node_once_with_the_same_ids(nodes):
    room = unique()
    conns = [join(srv.port, room, f"u{i}")[0] for i, srv in enumerate(nodes)]
    settle()
    for i, c in enumerate(conns):
        for k in range(3):
            c.send_json({"type": "chat", "message": f"from {i} #{k}"})
    seen = [messages(c, 3 * NODES) for c in conns]
    ids = [[f["id"] for f in s] for s in seen]
    assert ids[0] == ids[1] == ids[2], ids
    assert ids[0] == list(range(ids[0][0], ids[0][0] + 3 * NODES)), ids[0]
    texts = [[f["text"] for f in s] for s in seen]
    assert texts[0] == texts[1] == texts[2]
    assert sorted(texts[0]) == sorted(f"from {i} #{k}" for i in range(NODES) for k in range(3))
    for i in range(NODES):  # each sender's own messages in the order it sent them
        mine = [t for t in texts[0] if t.startswith(f"from {i} ")]
        assert mine == [f"from {i} #{k}" for k in range(3)]
    for c in conns:  # and nothing twice
        no_more_messages(c, 0.5)
    for c in conns:
        c.close()


def test_broadcast_on_one_node_and_since_on_another(nodes):
    room = unique()
    watcher, welcome = join(nodes[2].port, room, "w")
    settle()
    for k in range(5):
        resp = post_json(nodes[0].port, "/broadcast", {"room": room, "message": f"b{k}"})
        assert resp.status == 200, resp
        assert resp.json()["sent_to"] == room
    got = messages(watcher, 5)
    assert [f["text"] for f in got] == [f"b{k}" for k in range(5)]
    assert all(f["type"] == "broadcast" for f in got)
    first, epoch = got[0]["id"], welcome["epoch"]
    # a late joiner on the third node asks for what followed the second message
    late, w2 = join(nodes[1].port, room, "late", since=first + 1, epoch=epoch)
    assert w2["epoch"] == epoch and w2["last_id"] == first + 4, w2
    replay = messages(late, 3)
    assert [f["id"] for f in replay] == [first + 2, first + 3, first + 4]
    assert [f["text"] for f in replay] == ["b2", "b3", "b4"]
    # a stale epoch is told reset, not given history from another life of the room
    stale, _ = join(nodes[0].port, room, "stale", since=1, epoch="0000000000000000")
    assert messages(stale, 1, types=("reset",))[0]["epoch"] == epoch
    for c in (watcher, late, stale):
        c.close()


def test_direct_message_reaches_a_user_on_another_node(nodes):
    room = unique()
    alice, _ = join(nodes[0].port, room, "alice")
    bob, _ = join(nodes[1].port, room, "bob")
    carol, _ = join(nodes[2].port, room, "carol")
    settle()
    alice.send_json({"type": "direct", "to": "bob", "message": "psst"})
    got = messages(bob, 1, types=("direct",))[0]
    assert (got["from"], got["to"], got["text"]) == ("alice", "bob", "psst")
    carol.send_json({"type": "chat", "message": "fence"})  # carol sees the fence, not the direct
    assert messages(carol, 1, types=("message", "direct"))[0]["text"] == "fence"
    for c in (alice, bob, carol):
        c.close()


def room_view(srv, room):
    resp = srv.get(f"/rooms/{room}/users")
    assert resp.status == 200, resp
    body = resp.json()
    return body["online"], body["users"]


def wait_views(nodes, room, want, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        views = [room_view(srv, room) for srv in nodes]
        if all(v == want for v in views) or time.monotonic() > deadline:
            return views
        time.sleep(0.1)


def test_job_progress_on_one_node_reaches_a_watcher_on_another(nodes):
    resp = post_json(nodes[0].port, "/tasks", {"type": "sleep", "delay_s": 1.0,
                                               "payload": {"steps": 3, "seconds": 0.2}})
    assert resp.status == 201, resp
    task_id = resp.json()["task_id"]
    watcher, _ = join(nodes[1].port, f"task:{task_id}", "watcher")
    statuses = []
    while not statuses or statuses[-1] not in ("completed", "failed", "cancelled"):
        f = messages(watcher, 1, types=("task",), timeout=10)[0]
        assert f["task"]["task_id"] == task_id and isinstance(f["id"], int), f
        statuses.append(f["task"]["status"])
    assert "running" in statuses and statuses[-1] == "completed", statuses
    watcher.close()


def test_counts_and_user_lists_agree_on_every_node(nodes):
    room = unique()
    a, _ = join(nodes[0].port, room, "alice")
    b1, _ = join(nodes[1].port, room, "bob")
    b2, _ = join(nodes[2].port, room, "bob")  # one user, two nodes
    c, _ = join(nodes[2].port, room, "carol")
    want = (4, ["alice", "bob", "carol"])
    assert wait_views(nodes, room, want) == [want] * NODES
    # alice, on node 0, hears of carol, who joined on node 2
    joined = set()
    deadline = time.monotonic() + 5
    while "carol" not in joined and time.monotonic() < deadline:
        f = a.recv_json(timeout=5)
        if f["type"] == "join":
            joined.update(f.get("users", [f["user"]]))
    assert "carol" in joined
    c.close()
    want = (3, ["alice", "bob"])
    assert wait_views(nodes, room, want) == [want] * NODES
    for x in (a, b1, b2):
        x.close()


def test_killed_node_members_leave_within_the_ttl(nodes, redis, tmp_path):  # noqa: F811
    room = unique()
    doomed = RoostServer(tmp_path / "doomed", node_flags(redis, "doomed")).wait_ready()
    try:
        wait_health(doomed, "up")
        watcher, _ = join(nodes[0].port, room, "watcher")
        ghost, _ = join(doomed.port, room, "ghost")
        want = (2, ["ghost", "watcher"])
        assert wait_views(nodes + [doomed], room, want) == [want] * (NODES + 1)
        doomed.proc.kill()  # SIGKILL: it says goodbye to nobody
        killed_at = time.monotonic()
        left = None
        while left is None:
            f = watcher.recv_json(timeout=TTL_S + 3)
            if f["type"] == "leave" and "ghost" in f.get("users", [f["user"]]):
                left = time.monotonic() - killed_at
        assert left <= TTL_S + 1.0, left
        want = (1, ["watcher"])
        assert wait_views(nodes, room, want, timeout=1) == [want] * NODES
        watcher.close()
    finally:
        doomed.kill()


def test_redis_down_keeps_local_delivery_then_resets_and_bridges_again(nodes, redis):  # noqa: F811
    room = unique()
    a0, w = join(nodes[0].port, room, "a0")
    b0, _ = join(nodes[0].port, room, "b0")
    c1, _ = join(nodes[1].port, room, "c1")
    settle()
    a0.send_json({"type": "chat", "message": "before"})
    for c in (a0, b0, c1):
        assert messages(c, 1)[0]["text"] == "before"
    before = metric_sum(nodes[0].metrics(), "roost_redis_publishes_not_bridged_total")

    redis.stop()
    for srv in nodes:
        assert wait_health(srv, "down")["status"] == "ok"
    a0.send_json({"type": "chat", "message": "local"})
    for c in (a0, b0):  # delivered on its node, without an id (no shared history has it)
        f = messages(c, 1)[0]
        assert f["text"] == "local" and "id" not in f, f
    started = time.monotonic()  # a join while down is welcomed at once, from what is here
    d2, _ = join(nodes[2].port, room, "d2")
    assert time.monotonic() - started < 1.0
    d2.close()
    after = metric_sum(nodes[0].metrics(), "roost_redis_publishes_not_bridged_total")
    assert after == before + 1
    assert metric_sum(nodes[0].metrics(), "roost_redis_up") == 0

    redis.start()  # empty: the room's history and ids are gone
    for srv in nodes:
        wait_health(srv, "up")
    for c in (a0, b0, c1):
        reset = messages(c, 1, types=("reset",), timeout=10)[0]
        assert reset["epoch"] != w["epoch"], reset
    settle()
    c1.send_json({"type": "chat", "message": "after"})
    for c in (a0, b0, c1):
        f = messages(c, 1)[0]
        assert f["text"] == "after" and f["id"] == 1, f
    assert metric_sum(nodes[0].metrics(), "roost_redis_up") == 1
    for c in (a0, b0, c1):
        c.close()


def test_idle_rooms_are_freed_and_max_rooms_stays_the_cap(start_server):
    """--room-idle-s (default 600): an empty room is freed (counted), so new rooms fit under
    --max-rooms; a room with a member is never freed. Without Redis: one node's own rooms."""
    srv = start_server("--room-idle-s", "0.5", "--max-rooms", "2")
    kept, _ = join(srv.port, "kept", "k")
    gone, _ = join(srv.port, "gone", "g")
    gone.close()
    resp = post_json(srv.port, "/broadcast", {"room": "third", "message": "x"})
    assert resp.status == 503  # both rooms held: the hard cap
    time.sleep(1.2)
    resp = post_json(srv.port, "/broadcast", {"room": "third", "message": "x"})
    assert resp.status == 200, resp  # "gone" was freed for it
    assert metric_sum(srv.metrics(), "roost_rooms_freed_total") == 1
    rooms = {r["room"] for r in srv.get("/rooms").json()["rooms"]}
    assert rooms == {"kept", "third"}, rooms
    kept.send_json({"type": "chat", "message": "still here"})
    assert messages(kept, 1)[0]["text"] == "still here"
    time.sleep(1.2)  # "third" was published to, then left empty
    again, w = join(srv.port, "gone", "g")  # made again: a new life, no history
    assert w["last_id"] == 0 and w["online"] == 1, w
    assert metric_sum(srv.metrics(), "roost_rooms_freed_total") == 2
    for c in (kept, again):
        c.close()
