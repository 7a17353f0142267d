"""The dashboard's sign-in when --api-key is set (src/mw/auth.c, auth_session.c): a key in a
header buys an HttpOnly, SameSite=Strict session cookie (POST /auth/session), with which the
browser's fetch and EventSource (no headers) reach the data; without it the data is refused.
The browser side is tests/e2e/browser/dashboard_auth.test.js (test_browser_dashboard.py)."""

import json
import subprocess
import time

import pytest

from conftest import free_port, metric_sum

KEY = "dash-key-0123456789"


@pytest.fixture
def keyed(shared_servers):
    with shared_servers.use("--threads", "2", "--api-key", KEY) as srv:
        yield srv


def sign_in(srv, key=KEY):
    return srv.request("POST", "/auth/session", headers={"Authorization": "Bearer " + key})


def session_cookie(resp):
    """The Set-Cookie pair (name=value) and its attributes, lower-cased."""
    parts = [p.strip() for p in resp.header("Set-Cookie").split(";")]
    return parts[0], {p.split("=")[0].lower(): (p.split("=", 1) + [""])[1] for p in parts[1:]}


def test_a_key_buys_an_httponly_samesite_strict_cookie(keyed):
    resp = sign_in(keyed)
    assert resp.status == 204, resp
    pair, attrs = session_cookie(resp)
    assert pair.startswith("roost_session=") and len(pair) > 60
    assert "httponly" in attrs and attrs["samesite"] == "Strict" and attrs["path"] == "/"
    assert 0 < int(attrs["max-age"]) <= 24 * 3600
    assert "secure" not in attrs  # plain HTTP here; over TLS it is Secure (test_tls_cookie_is_secure)
    assert resp.header("Cache-Control") == "no-store"
    assert KEY not in resp.header("Set-Cookie")


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-key"},
                                     {"X-API-Key": "wrong-key"}])
def test_no_cookie_without_the_key(keyed, headers):
    resp = keyed.request("POST", "/auth/session", headers=headers)
    assert resp.status == 401, resp
    assert resp.header("Set-Cookie") is None
    assert resp.header("WWW-Authenticate") == "Bearer"


def test_the_cookie_opens_the_dashboards_data_and_without_it_it_is_refused(keyed):
    pair, _ = session_cookie(sign_in(keyed))
    cookie = {"Cookie": "theme=dark; " + pair + "; other=1"}  # among a browser's other cookies
    for target in ("/tasks", "/rooms", "/tasks/1/events"):
        assert keyed.get(target).status == 401, target
    resp = keyed.request("POST", "/tasks", headers={**cookie, "Content-Type": "application/json"},
                         body=json.dumps({"type": "noop", "payload": {}}))
    assert resp.status == 201, resp
    task_id = resp.json()["task_id"]
    assert keyed.get("/tasks", headers=cookie).status == 200
    assert keyed.get("/rooms", headers=cookie).status == 200
    for _ in range(100):
        if keyed.get(f"/tasks/{task_id}", headers=cookie).json()["status"] == "completed":
            break
        time.sleep(0.05)
    # The event stream (EventSource sends the cookie, never a header) of a finished task: its
    # final event, then the end.
    events = keyed.get(f"/tasks/{task_id}/events", headers=cookie, timeout=10)
    assert events.status == 200, events
    assert events.header("Content-Type").startswith("text/event-stream")
    assert b"event: task" in events.body and b'"completed"' in events.body
    assert keyed.get(f"/tasks/{task_id}/events").status == 401


@pytest.mark.parametrize("tamper", ["mac", "expiry", "empty", "name"])
def test_a_forged_cookie_is_refused(keyed, tamper):
    pair, _ = session_cookie(sign_in(keyed))
    name, value = pair.split("=", 1)
    exp, mac = value.split(".")
    forged = {
        "mac": f"{name}={exp}.{mac[:-1]}{'0' if mac[-1] != '0' else '1'}",
        "expiry": f"{name}={int(exp) + 3600}.{mac}",  # a longer session, same MAC
        "empty": f"{name}=",
        "name": f"x{name}={value}",
    }[tamper]
    resp = keyed.get("/tasks", headers={"Cookie": forged})
    assert resp.status == 401, resp


def test_a_cookie_does_not_buy_another_cookie(keyed):
    pair, _ = session_cookie(sign_in(keyed))
    resp = keyed.request("POST", "/auth/session", headers={"Cookie": pair})
    assert resp.status == 401, resp


def test_sessions_end_with_the_process(keyed, start_server):
    """The signing secret is random per process: another server (or a restart) refuses it."""
    pair, _ = session_cookie(sign_in(keyed))
    other = start_server("--threads", "1", "--api-key", KEY)
    assert other.get("/tasks", headers={"Cookie": pair}).status == 401
    assert keyed.get("/tasks", headers={"Cookie": pair}).status == 200


def test_signing_out_clears_the_cookie(keyed):
    resp = keyed.request("DELETE", "/auth/session")
    assert resp.status == 204, resp
    pair, attrs = session_cookie(resp)
    assert pair == "roost_session=" and attrs["max-age"] == "0"


def test_refused_sign_ins_are_counted(keyed):
    before = metric_sum(keyed.metrics(), "roost_auth_refused_total", check="api_key")
    sign_in(keyed, "wrong")
    after = metric_sum(keyed.metrics(), "roost_auth_refused_total", check="api_key")
    assert after == before + 1


def test_without_keys_there_is_no_sign_in(server):
    assert server.request("POST", "/auth/session").status in (404, 405)


def test_tls_cookie_is_secure(start_server, tmp_path):
    """Over TLS the cookie is Secure: the browser never sends it back over plain HTTP."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "k.pem",
                    "-out", "c.pem", "-days", "2", "-subj", "/CN=localhost"], cwd=tmp_path,
                   check=True, capture_output=True)
    tls_port = free_port()
    start_server("--threads", "1", "--api-key", KEY, "--tls-port", tls_port,
                 "--tls-cert", tmp_path / "c.pem", "--tls-key", tmp_path / "k.pem")
    done = subprocess.run(["curl", "-sSki", "-X", "POST", "-H", "Authorization: Bearer " + KEY,
                           f"https://127.0.0.1:{tls_port}/auth/session"],
                          capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    cookie = [line for line in done.stdout.splitlines() if line.lower().startswith("set-cookie:")]
    assert cookie and "; Secure" in cookie[0] and "HttpOnly" in cookie[0], done.stdout
