"""The HTTP side of rooms (docs/ws-contract.md, "Endpoints"): POST /broadcast and its 422s,
GET /rooms, GET /rooms/{room}/count and GET /rooms/{room}/users."""

import time

import pytest

from conftest import assert_common_headers, assert_validation_error
from wsclient import assert_ts, join, unique

pytestmark = pytest.mark.deadline(20)


def wait_online(server, room, n, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        body = server.get(f"/rooms/{room}/count").json()
        if body["online"] == n or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


# --------------------------------------------------------------------------------------------
# POST /broadcast


def test_broadcast_reaches_the_room(server):
    room = unique()
    a, _ = join(server.port, room, "alice")
    time.sleep(0.25)
    b, _ = join(server.port, room, "bob")
    with a, b:
        resp = server.post_json("/broadcast", {"room": room, "message": "hello, all"})
        assert resp.status == 200, resp
        assert resp.header("Content-Type", "").startswith("application/json"), resp
        assert_common_headers(resp)
        assert resp.json() == {"sent_to": room, "online": 2, "id": 1}
        for c in (a, b):
            f = c.recv_type("broadcast")
            assert set(f) == {"type", "room", "text", "id", "ts"}, f
            assert (f["room"], f["text"], f["id"]) == (room, "hello, all", 1), f
            assert_ts(f["ts"])
        resp = server.post_json("/broadcast", {"room": room, "message": ""})
        assert resp.json() == {"sent_to": room, "online": 2, "id": 2}
        for c in (a, b):
            assert c.recv_type("broadcast")["text"] == ""


def test_broadcast_to_an_empty_room_is_ok(server):
    room = unique()
    resp = server.post_json("/broadcast", {"room": room, "message": "anyone?"})
    assert resp.status == 200, resp
    body = resp.json()
    assert body == {"sent_to": room, "online": 0, "id": body["id"]}, body
    assert isinstance(body["id"], int) and body["id"] >= 1
    resp = server.post_json("/broadcast", {"room": room, "message": "again"})
    assert resp.json()["id"] == body["id"] + 1


def test_broadcast_ignores_extra_fields(server):
    room = unique()
    resp = server.post_json("/broadcast", {"room": room, "message": "x", "extra": [1]})
    assert resp.status == 200, resp
    assert resp.json()["sent_to"] == room


@pytest.mark.parametrize(
    "body,field",
    [
        ({"message": "no room"}, "room"),
        ({"room": "lobby"}, "message"),
        ({"room": "lobby", "message": 5}, "message"),
        ({"room": "lobby", "message": None}, "message"),
        ({"room": "lobby", "message": ["a"]}, "message"),
        ({"room": "lobby", "message": {"text": "a"}}, "message"),
        ({"room": 7, "message": "x"}, "room"),
        ({"room": "a b", "message": "x"}, "room"),
        ({"room": "x!y", "message": "x"}, "room"),
        ({"room": "a" * 65, "message": "x"}, "room"),
        ({"room": "", "message": "x"}, "room"),
    ],
    ids=["missing-room", "missing-message", "int-message", "null-message", "list-message",
         "object-message", "int-room", "space-room", "bang-room", "long-room", "empty-room"],
)
def test_broadcast_bad_body_is_422(server, body, field):
    resp = server.post_json("/broadcast", body)
    detail = assert_validation_error(resp)
    assert ["body", field] in [d["loc"] for d in detail], detail


@pytest.mark.parametrize("raw", [b"{not json", b'{"room": "lobby", "message": ', b"", b"[]",
                                 b'"just a string"'],
                         ids=["garbage", "truncated", "empty", "array", "string"])
def test_broadcast_invalid_json_is_422(server, raw):
    resp = server.request("POST", "/broadcast", {"Content-Type": "application/json"}, raw)
    detail = assert_validation_error(resp)
    assert detail and detail[0]["loc"][0] == "body", detail


def test_broadcast_422_publishes_nothing(server):
    room = unique()
    conn, _ = join(server.port, room, "alice")
    with conn:
        assert server.post_json("/broadcast", {"room": room, "message": 1}).status == 422
        resp = server.post_json("/broadcast", {"room": room, "message": "real"})
        assert resp.json()["id"] == 1
        f = conn.recv_type("broadcast")
        assert (f["text"], f["id"]) == ("real", 1)


# --------------------------------------------------------------------------------------------
# GET /rooms/{room}/count, /rooms, /rooms/{room}/users


def test_count_of_an_unknown_room_is_zero(server):
    room = unique()
    resp = server.get(f"/rooms/{room}/count")
    assert resp.status == 200, resp
    assert resp.json() == {"room": room, "online": 0}


def test_count_follows_joins_and_leaves(server):
    room = unique()
    a, _ = join(server.port, room, "alice")
    b, _ = join(server.port, room, "bob")
    c, _ = join(server.port, room, "bob")
    try:
        assert wait_online(server, room, 3) == {"room": room, "online": 3}
        c.close()
        assert wait_online(server, room, 2) == {"room": room, "online": 2}
        a.close()
        b.close()
        assert wait_online(server, room, 0) == {"room": room, "online": 0}
    finally:
        for x in (a, b, c):
            x.close()


def test_rooms_lists_rooms_with_members_or_history(server):
    live, historic, never = unique(), unique(), unique()
    a, _ = join(server.port, live, "alice")
    with a:
        assert server.post_json("/broadcast", {"room": historic, "message": "x"}).status == 200
        resp = server.get("/rooms")
        assert resp.status == 200, resp
        body = resp.json()
        assert set(body) == {"rooms"}, body
        rooms = {r["room"]: r for r in body["rooms"]}
        for r in body["rooms"]:
            assert set(r) == {"room", "online"}, r
        assert rooms[live] == {"room": live, "online": 1}
        assert rooms[historic] == {"room": historic, "online": 0}
        assert never not in rooms
        assert len(rooms) == len(body["rooms"]), "a room listed twice"


def test_users_are_sorted_and_unique(server):
    room = unique()
    conns = []
    try:
        for name in ("mallory", "bob", "alice", "bob", "Zoe", "alice"):
            conns.append(join(server.port, room, name)[0])
        resp = server.get(f"/rooms/{room}/users")
        assert resp.status == 200, resp
        assert resp.json() == {"room": room, "online": 6,
                               "users": ["Zoe", "alice", "bob", "mallory"]}
        conns[0].close()  # mallory
        conns[1].close()  # one of the two bobs
        deadline = time.monotonic() + 5
        while True:
            body = server.get(f"/rooms/{room}/users").json()
            if body["online"] == 4 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert body == {"room": room, "online": 4, "users": ["Zoe", "alice", "bob"]}
    finally:
        for c in conns:
            c.close()


def test_users_of_an_unknown_room(server):
    room = unique()
    resp = server.get(f"/rooms/{room}/users")
    assert resp.status == 200, resp
    assert resp.json() == {"room": room, "online": 0, "users": []}
