"""/users on both engines (SQLite and a real PostgreSQL started by the tests): create with
FastAPI-shaped 422s and 409 conflicts, read, update and delete with 404s, cursor pages that
cover every user exactly once, and the bulk insert of up to 1,000 users in one statement."""

import json
import re
import uuid

import pytest

from conftest import assert_json_detail, assert_validation_error
from pgserver import db_server, engine, engine_flags, pg  # noqa: F401 (fixtures)

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def tag():
    return uuid.uuid4().hex[:10]


def new_user(srv, **fields):
    t = tag()
    body = {"username": f"user_{t}", "email": f"{t}@example.com", "full_name": f"User {t}"}
    body.update(fields)
    resp = srv.post_json("/users", body)
    assert resp.status == 201, resp
    return resp.json()


def send(srv, method, target, obj):
    return srv.request(method, target, {"Content-Type": "application/json"},
                       json.dumps(obj).encode())


def locs(detail):
    return {tuple(item["loc"]): item["type"] for item in detail}


# ---- create


def test_create_user_answers_201_with_the_stored_user(db_server):
    t = tag()
    body = {"username": f"ann_{t}", "email": f"ann.{t}@example.org", "full_name": "Ann Example"}
    resp = db_server.post_json("/users", body)
    assert resp.status == 201, resp
    user = resp.json()
    assert set(user) == {"id", "username", "email", "full_name", "is_active", "created_at"}
    assert isinstance(user["id"], int) and user["id"] > 0
    assert (user["username"], user["email"], user["full_name"]) == (
        body["username"], body["email"], body["full_name"])
    assert user["is_active"] is True
    assert ISO_UTC.match(user["created_at"]), user
    again = db_server.get(f"/users/{user['id']}")
    assert again.status == 200, again
    assert again.json() == user


def test_create_user_without_full_name_stores_null(db_server):
    t = tag()
    resp = db_server.post_json("/users", {"username": f"nf_{t}", "email": f"{t}@ex.io"})
    assert resp.status == 201, resp
    assert resp.json()["full_name"] is None


def test_create_user_reports_every_invalid_field_in_one_422(db_server):
    resp = db_server.post_json("/users", {"username": "ab", "email": "not-an-email",
                                          "full_name": 7})
    detail = assert_validation_error(resp)
    assert locs(detail) == {
        ("body", "username"): "string_too_short",
        ("body", "email"): "value_error",
        ("body", "full_name"): "string_type",
    }


@pytest.mark.parametrize("username", ["x" * 51, "", None, 12345])
def test_create_user_rejects_a_bad_username(db_server, username):
    resp = db_server.post_json("/users", {"username": username, "email": f"{tag()}@ex.io"})
    detail = assert_validation_error(resp)
    assert ("body", "username") in locs(detail)


def test_username_of_3_and_50_characters_is_accepted(db_server):
    for n in (3, 50):
        name = tag()[:n].ljust(n, "z")
        resp = db_server.post_json("/users", {"username": name, "email": f"{tag()}@ex.io"})
        assert resp.status == 201, resp
        assert resp.json()["username"] == name


@pytest.mark.parametrize("email", ["plain", "@ex.io", "a@", "a@b", "a b@ex.io", "a@@ex.io",
                                   "a@ex.io."])
def test_create_user_rejects_a_bad_email(db_server, email):
    resp = db_server.post_json("/users", {"username": f"u_{tag()}", "email": email})
    detail = assert_validation_error(resp)
    assert locs(detail) == {("body", "email"): "value_error"}


def test_missing_fields_and_bad_json_are_422(db_server):
    detail = assert_validation_error(db_server.post_json("/users", {}))
    assert locs(detail) == {("body", "username"): "missing",
                            ("body", "email"): "missing"}
    resp = db_server.request("POST", "/users", {"Content-Type": "application/json"}, b"{oops")
    assert_validation_error(resp)
    assert_validation_error(db_server.post_json("/users", ["not", "an", "object"]))


def test_duplicate_username_is_409_and_stores_nothing(db_server):
    user = new_user(db_server)
    t = tag()
    resp = db_server.post_json("/users", {"username": user["username"], "email": f"{t}@ex.io"})
    assert_json_detail(resp, 409)
    assert "username" in resp.json()["detail"].lower()
    # the email of the refused request is still free
    ok = db_server.post_json("/users", {"username": f"n_{t}", "email": f"{t}@ex.io"})
    assert ok.status == 201, ok


def test_duplicate_email_is_409(db_server):
    user = new_user(db_server)
    resp = db_server.post_json("/users", {"username": f"o_{tag()}", "email": user["email"]})
    assert_json_detail(resp, 409)
    assert "email" in resp.json()["detail"].lower()


# ---- read, update, delete


def test_unknown_user_is_404_with_the_seed_detail(db_server):
    for method in ("GET", "DELETE"):
        resp = db_server.request(method, "/users/987654321")
        assert_json_detail(resp, 404)
        assert resp.json() == {"detail": "User not found"}
    resp = send(db_server, "PUT", "/users/987654321", {"full_name": "Nobody"})
    assert resp.status == 404 and resp.json() == {"detail": "User not found"}, resp


def test_user_id_must_be_an_integer(db_server):
    assert_validation_error(db_server.get("/users/abc"))


def test_update_changes_only_the_fields_given(db_server):
    user = new_user(db_server)
    resp = send(db_server, "PUT", f"/users/{user['id']}", {"full_name": "New Name",
                                                           "is_active": False})
    assert resp.status == 200, resp
    updated = resp.json()
    assert updated["full_name"] == "New Name" and updated["is_active"] is False
    assert (updated["username"], updated["email"], updated["created_at"]) == (
        user["username"], user["email"], user["created_at"])
    assert db_server.get(f"/users/{user['id']}").json() == updated
    t = tag()
    resp = send(db_server, "PUT", f"/users/{user['id']}", {"username": f"ren_{t}",
                                                           "email": f"ren.{t}@ex.io"})
    assert resp.status == 200, resp
    assert resp.json()["username"] == f"ren_{t}" and resp.json()["email"] == f"ren.{t}@ex.io"
    assert resp.json()["is_active"] is False


def test_update_to_a_taken_username_or_email_is_409_and_changes_nothing(db_server):
    a, b = new_user(db_server), new_user(db_server)
    for field in ("username", "email"):
        resp = send(db_server, "PUT", f"/users/{b['id']}", {field: a[field]})
        assert_json_detail(resp, 409)
        assert field in resp.json()["detail"].lower()
    assert db_server.get(f"/users/{b['id']}").json() == b


def test_update_validates_like_create(db_server):
    user = new_user(db_server)
    resp = send(db_server, "PUT", f"/users/{user['id']}", {"username": "ab", "email": "nope",
                                                           "is_active": "yes"})
    detail = assert_validation_error(resp)
    assert set(locs(detail)) == {("body", "username"), ("body", "email"), ("body", "is_active")}


def test_delete_answers_204_then_the_user_is_gone(db_server):
    user = new_user(db_server)
    resp = db_server.request("DELETE", f"/users/{user['id']}")
    assert resp.status == 204, resp
    assert resp.body == b""
    assert db_server.get(f"/users/{user['id']}").status == 404
    assert db_server.request("DELETE", f"/users/{user['id']}").status == 404
    # its username and email are free again
    resp = db_server.post_json("/users", {"username": user["username"], "email": user["email"]})
    assert resp.status == 201, resp


# ---- cursor pages


def all_pages(srv, limit):
    """Every page from the start: [(items, next_cursor, has_more)]."""
    pages, cursor = [], None
    while True:
        target = f"/users?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        resp = srv.get(target)
        assert resp.status == 200, resp
        body = resp.json()
        assert set(body) == {"items", "next_cursor", "has_more"}
        pages.append((body["items"], body["next_cursor"], body["has_more"]))
        if not body["has_more"]:
            assert body["next_cursor"] is None
            return pages
        assert isinstance(body["next_cursor"], str) and body["next_cursor"]
        assert len(body["items"]) == limit
        cursor = body["next_cursor"]
        assert len(pages) < 1000, "pagination does not end"


def test_cursor_pages_list_every_user_once_in_id_order(db_server):
    created = [new_user(db_server)["id"] for _ in range(23)]
    pages = all_pages(db_server, 7)
    ids = [u["id"] for items, _, _ in pages for u in items]
    assert ids == sorted(set(ids)), "ids repeat or are out of order across pages"
    start = ids.index(created[0])
    assert ids[start:start + len(created)] == created
    assert all(len(items) <= 7 for items, _, _ in pages)


def test_default_page_is_20_and_cursors_are_opaque(db_server):
    for _ in range(21):
        new_user(db_server)
    body = db_server.get("/users").json()
    assert len(body["items"]) == 20 and body["has_more"] is True
    cursor = body["next_cursor"]
    assert not cursor.isdigit() and re.match(r"^[A-Za-z0-9_-]+$", cursor), cursor
    nxt = db_server.get(f"/users?cursor={cursor}&limit=1").json()
    assert nxt["items"][0]["id"] > body["items"][-1]["id"]


@pytest.mark.parametrize("query,field", [
    ("limit=0", "limit"), ("limit=101", "limit"), ("limit=-5", "limit"), ("limit=ten", "limit"),
    ("limit=", "limit"), ("cursor=%21%21%21", "cursor"), ("cursor=bm9wZQ", "cursor"),
])
def test_bad_limit_or_cursor_is_422(db_server, query, field):
    detail = assert_validation_error(db_server.get(f"/users?{query}"))
    assert [tuple(d["loc"]) for d in detail] == [("query", field)]


def test_limits_1_and_100_are_accepted(db_server):
    new_user(db_server)
    assert len(db_server.get("/users?limit=1").json()["items"]) == 1
    assert db_server.get("/users?limit=100").status == 200


# ---- bulk insert


def bulk(n, t=None):
    t = t or tag()
    return [{"username": f"b{i}_{t}", "email": f"b{i}.{t}@ex.io", "full_name": f"Bulk {i}"}
            for i in range(n)]


def test_bulk_insert_of_1000_users_answers_them_in_order(db_server):
    users = bulk(1000)
    resp = db_server.post_json("/users/batch", {"users": users}, timeout=60)
    assert resp.status == 201, resp
    body = resp.json()
    assert body["created"] == 1000
    assert [u["username"] for u in body["items"]] == [u["username"] for u in users]
    ids = [u["id"] for u in body["items"]]
    assert ids == sorted(ids) and len(set(ids)) == 1000
    for probe in (0, 500, 999):
        got = db_server.get(f"/users/{ids[probe]}").json()
        assert got["email"] == users[probe]["email"]


def test_bulk_insert_is_all_or_nothing_on_a_conflict(db_server):
    existing = new_user(db_server)
    users = bulk(5)
    users[3]["email"] = existing["email"]
    resp = db_server.post_json("/users/batch", {"users": users})
    assert_json_detail(resp, 409)
    # none of the other four went in: they can all be created now
    users[3]["email"] = f"free.{tag()}@ex.io"
    resp = db_server.post_json("/users/batch", {"users": users})
    assert resp.status == 201, resp
    # a duplicate inside one list conflicts too
    dup = bulk(2)
    dup[1]["username"] = dup[0]["username"]
    assert_json_detail(db_server.post_json("/users/batch", {"users": dup}), 409)


def test_bulk_insert_validates_each_item_with_its_index(db_server):
    users = bulk(3)
    users[1]["username"] = "x"
    users[2]["email"] = "bad"
    detail = assert_validation_error(db_server.post_json("/users/batch", {"users": users}))
    assert locs(detail) == {
        ("body", "users", 1, "username"): "string_too_short",
        ("body", "users", 2, "email"): "value_error",
    }
    assert_validation_error(db_server.post_json("/users/batch", {"users": bulk(1001)},
                                                timeout=30))
    assert_validation_error(db_server.post_json("/users/batch", {"users": []}))
    assert_validation_error(db_server.post_json("/users/batch", {"users": "nope"}))
    assert_validation_error(db_server.post_json("/users/batch", {}))
