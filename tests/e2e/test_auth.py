"""Authentication: --api-key / --api-keys-file guard the write routes and the dashboard's data
(401 {"detail":"Not authenticated"} with WWW-Authenticate: Bearer), GET /healthz never needs a
key; --ws-token-secret makes /ws/{room}/{user} need an HS256 JWT in ?token= (401 before the
upgrade for a missing, forged, expired or non-HS256 token, 403 for another user or room).
Tokens are made here with hmac + base64, as a client's backend would."""

import base64
import hashlib
import hmac
import json
import time

import pytest

from conftest import metric_sum
from wsclient import WsError, join, unique, upgrade_request, ws_path

KEY_A, KEY_B = "key-alpha-0123456789", "key-bravo-9876543210"
SECRET = "s3cret-for-tests"


@pytest.fixture
def keyed(shared_servers):
    with shared_servers.use("--threads", "2", "--api-key", KEY_A, "--api-key", KEY_B) as srv:
        yield srv


@pytest.fixture
def tokened(shared_servers):
    with shared_servers.use("--threads", "2", "--ws-token-secret", SECRET) as srv:
        yield srv


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def make_token(claims, secret=SECRET, alg="HS256", header=None):
    head = b64url(json.dumps(header or {"alg": alg, "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims).encode())
    signing = f"{head}.{body}".encode()
    if alg == "none":
        return f"{head}.{body}."
    sig = hmac.new(secret.encode(), signing, hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(sig)}"


def assert_not_authenticated(resp):
    assert resp.status == 401, resp
    assert resp.json() == {"detail": "Not authenticated"}, resp
    assert resp.header("WWW-Authenticate") == "Bearer", resp


BROADCAST = {"room": "auth-room", "message": "hi"}


# ---- API keys ----

def test_broadcast_without_a_key_is_401_with_www_authenticate(keyed):
    assert_not_authenticated(keyed.post_json("/broadcast", BROADCAST))


def test_broadcast_with_a_wrong_key_is_401(keyed):
    for headers in ({"Authorization": "Bearer nope"}, {"X-API-Key": KEY_A + "x"},
                    {"Authorization": "Basic " + KEY_A}, {"Authorization": "Bearer " + KEY_A[:-1]}):
        resp = keyed.request("POST", "/broadcast", headers={**headers,
                             "Content-Type": "application/json"}, body=json.dumps(BROADCAST))
        assert_not_authenticated(resp)


def test_broadcast_with_bearer_or_x_api_key_passes(keyed):
    for headers in ({"Authorization": "Bearer " + KEY_A}, {"authorization": "bearer " + KEY_B},
                    {"X-API-Key": KEY_B}):
        resp = keyed.request("POST", "/broadcast", headers={**headers,
                             "Content-Type": "application/json"}, body=json.dumps(BROADCAST))
        assert resp.status == 200, resp


def test_tasks_and_cancel_and_dashboard_data_need_a_key(keyed):
    assert_not_authenticated(keyed.post_json("/tasks", {"type": "noop", "payload": {}}))
    assert_not_authenticated(keyed.request("POST", "/tasks/1/cancel"))
    for target in ("/tasks", "/tasks/1", "/tasks/1/events", "/rooms"):
        assert_not_authenticated(keyed.get(target))
    auth = {"Authorization": "Bearer " + KEY_A}
    assert keyed.get("/tasks", headers=auth).status == 200
    assert keyed.get("/rooms", headers=auth).status == 200
    resp = keyed.request("POST", "/tasks", headers={**auth, "Content-Type": "application/json"},
                         body=json.dumps({"type": "noop", "payload": {}}))
    assert resp.status in (200, 201, 202), resp


def test_a_key_is_checked_before_the_body_is_validated(keyed):
    """A client without a key learns nothing of the schema: 401, not 422."""
    assert_not_authenticated(keyed.post_json("/broadcast", {"nonsense": True}))


def test_healthz_and_open_routes_never_need_a_key(keyed):
    assert keyed.get("/healthz").status == 200
    assert keyed.get("/plaintext").status == 200
    assert keyed.get("/dashboard").status == 200


def test_refusals_are_counted(keyed):
    before = metric_sum(keyed.metrics(), "roost_auth_refused_total", check="api_key")
    keyed.post_json("/broadcast", BROADCAST)
    after = metric_sum(keyed.metrics(), "roost_auth_refused_total", check="api_key")
    assert after == before + 1


def test_api_keys_file_one_per_line(start_server, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("# the ops team\nfile-key-one\n\n  file-key-two  \n")
    srv = start_server("--threads", "1", "--api-keys-file", keys)
    assert_not_authenticated(srv.post_json("/broadcast", BROADCAST))
    for key in ("file-key-one", "file-key-two"):
        resp = srv.request("POST", "/broadcast", headers={"X-API-Key": key,
                           "Content-Type": "application/json"}, body=json.dumps(BROADCAST))
        assert resp.status == 200, resp
    resp = srv.request("POST", "/broadcast", headers={"X-API-Key": "# the ops team",
                       "Content-Type": "application/json"}, body=json.dumps(BROADCAST))
    assert resp.status == 401


def test_an_unreadable_keys_file_stops_the_start(run_roost, tmp_path):
    done = run_roost("--api-keys-file", tmp_path / "missing.txt", "--port", "0")
    assert done.returncode != 0
    assert "missing.txt" in done.stderr


def test_without_keys_nothing_needs_one(server):
    assert server.post_json("/broadcast", BROADCAST).status == 200


# ---- WebSocket tokens ----

def claims(user, exp_in=60, **more):
    return {"sub": user, "exp": int(time.time()) + exp_in, **more}


def test_ws_with_a_valid_token_joins(tokened):
    room, user = unique(), "alice"
    conn, welcome = join(tokened.port, room, user, token=make_token(claims(user)))
    with conn:
        assert welcome["room"] == room


def test_ws_with_rooms_claim_listing_the_room_joins(tokened):
    room = unique()
    token = make_token(claims("bob", rooms=["other", room]))
    conn, _ = join(tokened.port, room, "bob", token=token)
    conn.close()


@pytest.mark.parametrize("case", ["missing", "forged", "expired", "none_alg", "hs512_alg",
                                  "garbage", "no_exp"])
def test_ws_token_refused_with_401_before_the_upgrade(tokened, case):
    user = "carol"
    token = {
        "missing": None,
        "forged": make_token(claims(user), secret="not-the-secret"),
        "expired": make_token(claims(user, exp_in=-5)),
        "none_alg": make_token(claims(user), alg="none"),
        "hs512_alg": make_token(claims(user), header={"alg": "HS512", "typ": "JWT"}),
        "garbage": "abc.def",
        "no_exp": make_token({"sub": user}),
    }[case]
    resp = upgrade_request(tokened.port, ws_path(unique(), user, token=token))
    assert resp.status == 401, resp
    assert resp.header("Upgrade") is None
    assert resp.json()["detail"]


def test_ws_token_of_another_user_or_room_is_403(tokened):
    room = unique()
    resp = upgrade_request(tokened.port, ws_path(room, "dave", token=make_token(claims("erin"))))
    assert resp.status == 403, resp
    token = make_token(claims("dave", rooms=["elsewhere"]))
    resp = upgrade_request(tokened.port, ws_path(room, "dave", token=token))
    assert resp.status == 403, resp
    with pytest.raises(WsError):
        join(tokened.port, room, "dave", token=token)


def test_ws_without_a_secret_needs_no_token(server):
    conn, _ = join(server.port, unique(), "frank")
    conn.close()
