"""Chat rooms over GET /ws/{room}/{user} (docs/ws-contract.md, ../shared/DESIGN.md section 4
"Rooms"): welcome, presence, chat and direct messages, errors that keep the connection, history
replay with since/epoch, name validation before the upgrade, fan-out across loops, the slow
consumer, and the coalescing of presence notices."""

import asyncio
import json
import socket
import threading
import time

import pytest
import websockets

from conftest import ConnectionClosed, RawConnection, assert_validation_error, build_request
from wsclient import (
    OP_BINARY, OP_CLOSE, WsConn, accept_for, assert_presence, assert_ts, join, new_key,
    post_broadcasts, presence_names, unique, upgrade_headers, upgrade_request, ws_path,
)

pytestmark = pytest.mark.deadline(20)

PRESENCE_GAP_S = 0.25  # longer than the 100 ms presence window, so notices are not coalesced
MESSAGE_KEYS = {"type", "room", "user", "text", "id", "ts"}
BROADCAST_KEYS = {"type", "room", "text", "id", "ts"}
DIRECT_KEYS = {"type", "room", "from", "to", "text", "ts"}


def join_all(port, room, users, gap=PRESENCE_GAP_S):
    """Join users one after another, `gap` apart; returns [(conn, welcome)]."""
    out = []
    for u in users:
        out.append(join(port, room, u))
        time.sleep(gap)
    return out


def close_all(conns):
    for c in conns:
        c.close()


def assert_message(frame, room, user, text, id_=None):
    assert set(frame) == MESSAGE_KEYS, frame
    assert (frame["type"], frame["room"], frame["user"], frame["text"]) == (
        "message", room, user, text), frame
    assert isinstance(frame["id"], int) and frame["id"] >= 1, frame
    if id_ is not None:
        assert frame["id"] == id_, frame
    assert_ts(frame["ts"])


def assert_error(frame):
    assert frame.get("type") == "error", frame
    assert isinstance(frame.get("detail"), str) and frame["detail"], frame
    assert set(frame) == {"type", "detail"}, frame


def fence(conn):
    """{"type":"ping"} -> {"type":"pong"}: everything this connection's own handler sent before
    has arrived (frames for this connection are sent in order)."""
    conn.send_json({"type": "ping"})
    return conn.recv_type("pong", skip=("join", "leave"))


def wait_count(server, room, n, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        body = server.get(f"/rooms/{room}/count").json()
        if body["online"] == n or time.monotonic() > deadline:
            return body["online"]
        time.sleep(0.05)


# --------------------------------------------------------------------------------------------
# Welcome and presence


def test_welcome_then_join_notices_to_the_others(server):
    room = unique()
    alice, w1 = join(server.port, room, "alice")
    try:
        assert set(w1) == {"type", "room", "user", "online", "epoch", "last_id"}, w1
        assert (w1["room"], w1["user"], w1["online"], w1["last_id"]) == (room, "alice", 1, 0)
        assert isinstance(w1["epoch"], str) and w1["epoch"], w1
        time.sleep(PRESENCE_GAP_S)
        bob, w2 = join(server.port, room, "bob")
        try:
            assert (w2["room"], w2["user"], w2["online"], w2["last_id"]) == (room, "bob", 2, 0)
            assert w2["epoch"] == w1["epoch"]
            assert_presence(alice.recv_json(), "join", room, "bob", 2)
            time.sleep(PRESENCE_GAP_S)
            carol, w3 = join(server.port, room, "carol")
            with carol:
                assert w3["online"] == 3
                assert_presence(alice.recv_json(), "join", room, "carol", 3)
                assert_presence(bob.recv_json(), "join", room, "carol", 3)
                # Nobody is told about their own join (it was not coalesced with another).
                carol.send_json({"type": "ping"})
                assert carol.recv_json() == {"type": "pong"}
        finally:
            bob.close()
    finally:
        alice.close()


def test_welcome_last_id_is_the_rooms_last_message(server):
    room = unique()
    ids = [r["id"] for r in post_broadcasts(server.port, room, ["a", "b", "c"])]
    assert ids == [ids[0], ids[0] + 1, ids[0] + 2]
    conn, welcome = join(server.port, room, "late")
    with conn:
        assert welcome["last_id"] == ids[-1]
        assert welcome["online"] == 1


@pytest.mark.parametrize("how", ["close-frame", "tcp-close"])
def test_leave_on_disconnect(server, how):
    room = unique()
    (alice, _), (bob, _) = join_all(server.port, room, ["alice", "bob"])
    try:
        assert_presence(alice.recv_json(), "join", room, "bob", 2)
        assert wait_count(server, room, 2) == 2
        if how == "close-frame":
            bob.send_close(1000)
            code, _, _ = bob.expect_close()
            assert code == 1000
        bob.close()
        assert_presence(alice.recv_json(timeout=5), "leave", room, "bob", 1)
        assert wait_count(server, room, 1) == 1
    finally:
        alice.close()
        bob.close()


def test_same_user_twice_counts_two_connections(server):
    room = unique()
    (a1, _), (a2, w2) = join_all(server.port, room, ["alice", "alice"])
    try:
        assert w2["online"] == 2
        assert_presence(a1.recv_json(), "join", room, "alice", 2)
        a2.close()
        assert_presence(a1.recv_json(timeout=5), "leave", room, "alice", 1)
    finally:
        a1.close()
        a2.close()


# --------------------------------------------------------------------------------------------
# Chat messages


def test_plain_text_and_chat_json_reach_everyone_including_the_sender(server):
    room = unique()
    members = join_all(server.port, room, ["alice", "bob", "carol"])
    conns = [c for c, _ in members]
    try:
        alice, bob, carol = conns
        conns[0].send_text("hello, room")
        frames = [c.recv_type("message") for c in conns]
        assert_message(frames[0], room, "alice", "hello, room")
        assert frames[1] == frames[0] and frames[2] == frames[0]
        first = frames[0]["id"]

        bob.send_json({"type": "chat", "message": "hi 👋"})
        frames = [c.recv_type("message") for c in conns]
        assert_message(frames[0], room, "bob", "hi 👋", first + 1)
        assert frames[1] == frames[0] and frames[2] == frames[0]
        assert frames[0]["ts"] >= 0

        # Text that is not a JSON object is a chat message as it is.
        for i, text in enumerate(["[1, 2]", "42", '"quoted"', "{not json", "null", ""]):
            carol.send_text(text)
            frames = [c.recv_type("message") for c in conns]
            assert_message(frames[0], room, "carol", text, first + 2 + i)
            assert frames[1] == frames[0] and frames[2] == frames[0]
    finally:
        close_all(conns)


def test_message_ids_increase_by_one_across_chat_and_broadcast(server):
    room = unique()
    conn, welcome = join(server.port, room, "alice")
    with conn:
        last = welcome["last_id"]
        got, posted = [], []
        for i in range(5):
            # One at a time: a chat message and an HTTP broadcast sent together could be
            # numbered in either order (different connections, maybe different loops).
            conn.send_text(f"chat {i}")
            got.append(conn.recv_json())
            (resp,) = post_broadcasts(server.port, room, [f"bc {i}"])
            assert resp["sent_to"] == room and resp["online"] == 1
            posted.append(resp["id"])
            got.append(conn.recv_json())
        expected = [(t, f"{w} {i}") for i in range(5) for t, w in (("message", "chat"),
                                                                     ("broadcast", "bc"))]
        assert [(f["type"], f["text"]) for f in got] == expected
        assert [f["id"] for f in got] == list(range(last + 1, last + 11))
        assert posted == [f["id"] for f in got if f["type"] == "broadcast"]
        for f in got:
            assert set(f) == (MESSAGE_KEYS if f["type"] == "message" else BROADCAST_KEYS), f
            assert f["room"] == room
            assert_ts(f["ts"])
        ts = [f["ts"] for f in got]
        assert ts == sorted(ts)


def test_rooms_are_separate(server):
    r1, r2 = unique(), unique()
    a, _ = join(server.port, r1, "alice")
    b, _ = join(server.port, r2, "bob")
    with a, b:
        a.send_text("only r1")
        assert_message(a.recv_type("message"), r1, "alice", "only r1", 1)
        b.send_text("only r2")
        assert_message(b.recv_type("message"), r2, "bob", "only r2", 1)
        fence(a)
        fence(b)


def test_library_clients_chat(server):
    """Two websockets-library clients (which offer permessage-deflate and mask as they should)."""
    room = unique()

    async def run():
        base = f"ws://127.0.0.1:{server.port}/ws/{room}"
        async with websockets.connect(f"{base}/alice", open_timeout=5) as alice:
            w = json.loads(await asyncio.wait_for(alice.recv(), 5))
            assert (w["type"], w["online"]) == ("welcome", 1), w
            await asyncio.sleep(PRESENCE_GAP_S)
            async with websockets.connect(f"{base}/bob", open_timeout=5) as bob:
                assert json.loads(await asyncio.wait_for(bob.recv(), 5))["type"] == "welcome"
                j = json.loads(await asyncio.wait_for(alice.recv(), 5))
                assert (j["type"], j["user"], j["online"]) == ("join", "bob", 2), j
                await bob.send(json.dumps({"type": "chat", "message": "from the library"}))
                for ws in (alice, bob):
                    m = json.loads(await asyncio.wait_for(ws.recv(), 5))
                    assert (m["type"], m["user"], m["text"]) == (
                        "message", "bob", "from the library"), m
            left = json.loads(await asyncio.wait_for(alice.recv(), 5))
            assert (left["type"], left["user"], left["online"]) == ("leave", "bob", 1), left

    asyncio.run(run())


# --------------------------------------------------------------------------------------------
# Direct messages


def test_direct_reaches_every_connection_of_that_user_only(server):
    room = unique()
    members = join_all(server.port, room, ["alice", "bob", "bob", "carol"])
    conns = [c for c, _ in members]
    alice, bob1, bob2, carol = conns
    try:
        alice.send_json({"type": "direct", "to": "bob", "message": "psst"})
        for b in (bob1, bob2):
            d = b.recv_type("direct")
            assert set(d) == DIRECT_KEYS, d
            assert (d["type"], d["room"], d["from"], d["to"], d["text"]) == (
                "direct", room, "alice", "bob", "psst"), d
            assert_ts(d["ts"])
        # A room message sent after it is the next thing alice and carol see: no direct frame.
        alice.send_text("fence")
        for c in (alice, carol):
            m = c.recv_type("message")
            assert m["text"] == "fence", m
        for b in (bob1, bob2):
            assert b.recv_type("message")["text"] == "fence"
        # bob answers; only alice's connection gets it.
        bob2.send_json({"type": "direct", "to": "alice", "message": "hi back"})
        d = alice.recv_type("direct")
        assert (d["from"], d["to"], d["text"]) == ("bob", "alice", "hi back"), d
        bob2.send_text("fence 2")
        for c in conns:
            assert c.recv_type("message")["text"] == "fence 2"
    finally:
        close_all(conns)


def test_direct_to_an_absent_user_is_an_error_and_the_connection_stays(server):
    room, other = unique(), unique()
    alice, _ = join(server.port, room, "alice")
    zed, _ = join(server.port, other, "zed")  # present, but in another room
    with alice, zed:
        for to in ("nobody", "zed"):
            alice.send_json({"type": "direct", "to": to, "message": "hello?"})
            assert_error(alice.recv_type("error"))
        alice.send_text("still here")
        assert_message(alice.recv_type("message"), room, "alice", "still here")
        fence(zed)


# --------------------------------------------------------------------------------------------
# Application ping and errors


def test_json_ping_is_answered_with_pong(server):
    conn, _ = join(server.port, unique(), "alice")
    with conn:
        for _ in range(3):
            conn.send_json({"type": "ping"})
            assert conn.recv_json() == {"type": "pong"}


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "nope"},
        {"type": 5},
        {"message": "no type"},
        {},
        {"type": "chat"},
        {"type": "chat", "message": 5},
        {"type": "chat", "message": None},
        {"type": "direct", "message": "no to"},
        {"type": "direct", "to": "bob"},
        {"type": "direct", "to": 7, "message": "x"},
    ],
    ids=["unknown-type", "type-not-string", "no-type", "empty", "chat-no-message",
         "chat-int-message", "chat-null-message", "direct-no-to", "direct-no-message",
         "direct-int-to"],
)
def test_bad_json_object_is_an_error_and_the_connection_stays(server, payload):
    room = unique()
    (alice, _), (bob, _) = join_all(server.port, room, ["alice", "bob"])
    with alice, bob:
        alice.send_json(payload)
        assert_error(alice.recv_type("error"))
        # Not published: the next room message bob sees is the one sent after it.
        alice.send_text("works")
        m = alice.recv_type("message")
        assert_message(m, room, "alice", "works", 1)
        assert bob.recv_type("message") == m


def test_binary_frame_on_a_chat_connection_is_an_error(server):
    room = unique()
    alice, _ = join(server.port, room, "alice")
    with alice:
        alice.send_frame(OP_BINARY, b"\x00\x01")
        assert_error(alice.recv_type("error"))
        alice.send_text("works")
        assert_message(alice.recv_type("message"), room, "alice", "works", 1)


# --------------------------------------------------------------------------------------------
# History: since and epoch


@pytest.mark.parametrize("since,query_epoch", [(2, False), (0, False), (4, True), (5, True)])
def test_since_replays_exactly_the_missed_messages_in_order(server, since, query_epoch):
    room = unique()
    alice, w = join(server.port, room, "alice")
    with alice:
        live = []
        for i in range(3):
            alice.send_text(f"m{i}")
            live.append(alice.recv_type("message"))
        post_broadcasts(server.port, room, ["b0", "b1"])
        live += [alice.recv_type("broadcast") for _ in range(2)]
        assert [f["id"] for f in live] == [1, 2, 3, 4, 5]
        query = {"since": since}
        if query_epoch:
            query["epoch"] = w["epoch"]
        bob = WsConn.open(server.port, ws_path(room, "bob", **query))
        with bob:
            welcome = bob.recv_json()
            assert welcome["type"] == "welcome", welcome
            assert (welcome["last_id"], welcome["epoch"], welcome["online"]) == (5, w["epoch"], 2)
            replay = [bob.recv_json() for _ in range(5 - since)]
            assert replay == live[since:]
            alice.send_text("live")
            m = bob.recv_type("message")  # not a replayed one, not a reset
            assert (m["text"], m["id"]) == ("live", 6), m


def test_since_with_another_epoch_gets_reset(server):
    room = unique()
    post_broadcasts(server.port, room, ["one", "two", "three"])
    bob = WsConn.open(server.port, ws_path(room, "bob", since=1, epoch="not-the-epoch"))
    with bob:
        welcome = bob.recv_json()
        assert welcome["type"] == "welcome" and welcome["last_id"] == 3, welcome
        reset = bob.recv_json()
        assert reset == {"type": "reset", "room": room, "epoch": welcome["epoch"], "last_id": 3}
        post_broadcasts(server.port, room, ["four"])
        b = bob.recv_type("broadcast")  # no replay before it
        assert (b["text"], b["id"]) == ("four", 4), b


@pytest.fixture
def short_history(shared_servers):
    with shared_servers.use("--threads", "2", "--history", "5") as srv:
        yield srv


def test_since_older_than_history_gets_reset(short_history):
    srv = short_history
    room = unique()
    alice, w = join(srv.port, room, "alice")
    with alice:
        for i in range(10):
            alice.send_text(f"m{i}")
        live = [alice.recv_type("message") for _ in range(10)]
        assert [f["id"] for f in live] == list(range(1, 11))
        for since in (1, 4):  # message 5 has left the ring of 5 already
            bob = WsConn.open(srv.port, ws_path(room, "bob", since=since))
            with bob:
                welcome = bob.recv_json()
                assert welcome["type"] == "welcome" and welcome["last_id"] == 10, welcome
                reset = bob.recv_json()
                assert reset == {"type": "reset", "room": room, "epoch": w["epoch"],
                                 "last_id": 10}, (since, reset)
                fence(bob)
        # The newest five are still there.
        bob = WsConn.open(srv.port, ws_path(room, "bob", since=5, epoch=w["epoch"]))
        with bob:
            assert bob.recv_json()["type"] == "welcome"
            assert [bob.recv_json() for _ in range(5)] == live[5:]
            fence(bob)


# --------------------------------------------------------------------------------------------
# Names


BAD_NAMES = [("a" * 65, "65-chars"), ("a%20b", "space"), ("x!y", "bang"), ("%C3%A9", "non-ascii"),
             ("a:b", "colon"), ("a%25b", "percent")]


@pytest.mark.parametrize("name", [n for n, _ in BAD_NAMES], ids=[i for _, i in BAD_NAMES])
@pytest.mark.parametrize("which", ["room", "user"])
def test_bad_names_are_422_before_the_upgrade(server, name, which):
    path = f"/ws/{name}/alice" if which == "room" else f"/ws/lobby/{name}"
    resp = upgrade_request(server.port, path)
    assert resp.header("Sec-WebSocket-Accept") is None, resp
    detail = assert_validation_error(resp)
    assert ["path", which] in [d["loc"] for d in detail], detail


def test_longest_and_all_allowed_characters_are_accepted(server):
    room = "R" + "a" * 62 + "9"
    assert len(room) == 64
    conn, w = join(server.port, room, "Az09-_.")
    with conn:
        assert (w["room"], w["user"]) == (room, "Az09-_.")


# --------------------------------------------------------------------------------------------
# Fan-out across loops


def read_broadcasts(conn, n, timeout):
    """The next n broadcast frames (presence frames skipped)."""
    deadline = time.monotonic() + timeout
    out = []
    while len(out) < n:
        out.append(conn.recv_type("broadcast", timeout=max(0.0, deadline - time.monotonic())))
    return out


@pytest.mark.deadline(45)
@pytest.mark.parametrize("threads", [2, 4])
def test_broadcast_fans_out_to_every_client_across_loops(start_server, threads):
    srv = start_server("--threads", str(threads))
    room = unique()
    clients = []
    try:
        for i in range(40):
            conn, welcome = join(srv.port, room, f"u{i:02d}")
            assert welcome["online"] == i + 1, welcome
            clients.append(conn)
        texts = [f"broadcast {i}" for i in range(200)]
        results = post_broadcasts(srv.port, room, texts)
        ids = [r["id"] for r in results]
        assert ids == list(range(1, 201))
        assert all(r["online"] == 40 and r["sent_to"] == room for r in results), results[:3]
        for i, conn in enumerate(clients):
            frames = read_broadcasts(conn, 200, timeout=15)
            assert [f["id"] for f in frames] == ids, f"client {i}"
            assert [f["text"] for f in frames] == texts, f"client {i}"
            for f in frames:
                assert set(f) == BROADCAST_KEYS and f["room"] == room, f
        # No duplicates or extra messages afterwards.
        for conn in clients:
            conn.send_json({"type": "ping"})
        for conn in clients:
            conn.recv_type("pong")
    finally:
        close_all(clients)


# --------------------------------------------------------------------------------------------
# Slow consumer


class Reader(threading.Thread):
    """Reads frames until `n` broadcasts arrived or the connection ends; other frames (presence)
    are kept in `other`."""

    def __init__(self, conn, n, timeout):
        super().__init__(daemon=True)
        self.conn, self.n, self.timeout = conn, n, timeout
        self.frames, self.other, self.error = [], [], None

    def run(self):
        deadline = time.monotonic() + self.timeout
        try:
            while len(self.frames) < self.n:
                f = self.conn.recv_json(timeout=max(0.0, deadline - time.monotonic()))
                (self.frames if f.get("type") == "broadcast" else self.other).append(f)
        except Exception as e:  # reported by the test
            self.error = e


def drain_frames(conn, timeout):
    """Read a connection to its end: (frames read, close code or None, reset?). The stream may
    be cut anywhere once the server gives up on the connection."""
    deadline = time.monotonic() + timeout
    count, code = 0, None
    while True:
        try:
            f = conn.recv_frame(timeout=max(0.0, deadline - time.monotonic()))
        except ConnectionClosed:
            return count, code, conn.raw.reset
        if f.opcode == OP_CLOSE:
            code = f.close_code
        else:
            assert code is None, f"a frame after the close frame: {f!r}"
            count += 1


@pytest.mark.deadline(60)
def test_slow_consumer_is_dropped_and_the_others_get_everything(start_server):
    srv = start_server("--threads", "2", "--ws-max-backlog", "65536")
    room = unique()
    # The kernel's send buffer for the stuck socket grows to tcp_wmem's maximum (4 MiB here)
    # before roost's own backlog even starts to fill, so send well over that: 2000 x ~3 KB.
    n_msgs, batch = 2000, 10
    normal = [join(srv.port, room, f"reader{i}")[0] for i in range(3)]
    slow = WsConn.open(srv.port, ws_path(room, "slow"), rcvbuf=4096)
    try:
        assert slow.recv_json()["type"] == "welcome"
        assert wait_count(srv, room, 4) == 4
        readers = [Reader(c, n_msgs, timeout=45) for c in normal]
        for r in readers:
            r.start()
        texts = [f"{i:05d}:" + "x" * 3000 for i in range(n_msgs)]
        ids = []
        for start in range(0, n_msgs, batch):
            # 10 x 3 KB at a time, the next batch once the readers have this one: a reader that
            # keeps up never has more than ~30 KB waiting, under the 64 KB backlog.
            ids += [r["id"] for r in post_broadcasts(srv.port, room, texts[start:start + batch],
                                                     batch=batch)]
            deadline = time.monotonic() + 10
            while any(len(r.frames) < start + batch and r.is_alive() for r in readers):
                assert time.monotonic() < deadline, [len(r.frames) for r in readers]
                time.sleep(0.001)
        assert ids == list(range(1, n_msgs + 1))
        for r in readers:
            r.join(10)
        for i, r in enumerate(readers):
            assert r.error is None, f"reader {i}: {r.error!r} after {len(r.frames)} frames"
            assert [f["id"] for f in r.frames] == ids, f"reader {i}"
            assert [f["text"] for f in r.frames] == texts, f"reader {i}"
        # The slow one was dropped: the room counts three.
        assert wait_count(srv, room, 3, timeout=10) == 3
        users = srv.get(f"/rooms/{room}/users").json()
        assert users["users"] == ["reader0", "reader1", "reader2"], users
        # Its stream ends (EOF or reset) well short of everything; a close frame, if it got
        # through, says 1008.
        got, code, _ = drain_frames(slow, timeout=20)
        assert got < n_msgs, "the slow consumer got every message"
        assert code in (None, 1008), code
        # The others were told it left.
        for r, c in zip(readers, normal):
            leaves = [f for f in r.other if f.get("type") == "leave"]
            if not leaves:
                leaves = [c.recv_type("leave", timeout=5)]
            assert [(f["user"], f["online"]) for f in leaves] == [("slow", 3)], leaves
    finally:
        slow.close()
        close_all(normal)


# --------------------------------------------------------------------------------------------
# Presence coalescing


def open_many(port, room, names, batch=25, pause=0.1):
    """Open chat connections quickly: handshakes sent `batch` at a time, `pause` apart (so no
    100 ms window sees more than ~2 batches, fewer than the 100 names a frame lists)."""
    conns = []
    for start in range(0, len(names), batch):
        chunk = names[start : start + batch]
        pending = []
        for name in chunk:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            pending.append((s, name))
        raws = []
        for s, name in pending:
            raw = RawConnection.__new__(RawConnection)
            raw.timeout, raw.sock, raw.buf, raw.eof, raw.reset = 10, s, b"", False, False
            key = new_key()
            raw.send(build_request("GET", ws_path(room, name), upgrade_headers(key=key)))
            raws.append((raw, key))
        for raw, key in raws:
            resp = raw.read_response(timeout=10)
            assert resp.status == 101, resp
            assert resp.header("Sec-WebSocket-Accept") == accept_for(key)
            conns.append(WsConn(raw, resp))
        time.sleep(pause)
    return conns


@pytest.mark.deadline(40)
def test_join_notices_are_coalesced(server):
    room = unique()
    watcher, _ = join(server.port, room, "watcher")
    conns = []
    try:
        time.sleep(PRESENCE_GAP_S)
        names = [f"j{i:03d}" for i in range(200)]
        conns = open_many(server.port, room, names)
        seen, frames = [], []
        deadline = time.monotonic() + 10
        while len(seen) < 200:
            f = watcher.recv_json(timeout=max(0.0, deadline - time.monotonic()))
            assert f["type"] == "join", f
            assert f["room"] == room, f
            assert f.get("more", 0) == 0, f"names were left out: {f}"
            if "users" in f:
                assert len(f["users"]) <= 100 and f["user"] == f["users"][-1], f
            seen += presence_names(f)
            frames.append(f)
        assert sorted(seen) == names, "every joiner announced exactly once"
        assert len(frames) < 200
        assert frames[-1]["online"] == 201, frames[-1]
        counts = [f["online"] for f in frames]
        assert counts == sorted(counts), counts
        assert wait_count(server, room, 201) == 201
        fence(watcher)  # nothing else was queued
    finally:
        close_all(conns)
        watcher.close()


@pytest.mark.deadline(40)
def test_leave_notices_are_coalesced(server):
    room = unique()
    watcher, _ = join(server.port, room, "watcher")
    conns = []
    try:
        time.sleep(PRESENCE_GAP_S)
        names = [f"l{i:02d}" for i in range(50)]
        conns = open_many(server.port, room, names)
        # Drain the joins first.
        seen = []
        deadline = time.monotonic() + 10
        while len(seen) < 50:
            f = watcher.recv_json(timeout=max(0.0, deadline - time.monotonic()))
            assert f["type"] == "join", f
            seen += presence_names(f)
        time.sleep(PRESENCE_GAP_S)
        for c in conns:
            c.close()
        seen, frames = [], []
        while len(seen) < 50:
            f = watcher.recv_json(timeout=max(0.0, deadline - time.monotonic()))
            assert f["type"] == "leave", f
            assert f.get("more", 0) == 0, f
            seen += presence_names(f)
            frames.append(f)
        assert sorted(seen) == names
        assert len(frames) < 50
        assert frames[-1]["online"] == 1, frames[-1]
    finally:
        close_all(conns)
        watcher.close()


# ---- the bound on rooms (rooms are never freed, so their number is limited)


def test_rooms_above_max_rooms_are_refused_and_existing_ones_still_work(start_server):
    srv = start_server("--max-rooms", "2")
    a, _ = join(srv.port, "first", "ann")
    try:
        resp = srv.post_json("/broadcast", {"room": "second", "message": "makes the room"})
        assert resp.status == 200, resp
        # a third room: refused before the upgrade, and by a broadcast
        resp = upgrade_request(srv.port, ws_path("third", "bob"))
        assert resp.status == 503, resp
        assert resp.json() == {"detail": "Too many rooms"}
        resp = srv.post_json("/broadcast", {"room": "third", "message": "no"})
        assert resp.status == 503 and resp.json() == {"detail": "Too many rooms"}, resp
        assert "third" not in [r["room"] for r in srv.get("/rooms").json()["rooms"]]
        # the rooms that exist still take members and messages
        b, welcome = join(srv.port, "second", "bob")
        with b:
            assert welcome["last_id"] == 1
            resp = srv.post_json("/broadcast", {"room": "first", "message": "still here"})
            assert resp.status == 200, resp
            assert a.recv_type("broadcast")["text"] == "still here"
    finally:
        a.close()
