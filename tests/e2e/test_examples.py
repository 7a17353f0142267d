"""The examples (examples/*.c), each compiled against the installed tree with `cc ...
$(pkg-config --cflags --libs roost)` and run on a free port: chat (two members of a room see each
other's messages and the join and leave notices, POST /broadcast reaches them, the room count),
jobs (submit, then the SSE stream shows progress and the end), proxy (two upstreams called at
once, their answers merged)."""

import json
import signal
import subprocess
import sys
import time

import pytest

from conftest import (UPSTREAM, ConnectionClosed, RawConnection, free_port, http_get,
                      http_request, post_json)
from installtree import REPO_ROOT, install_tree  # noqa: F401 (fixture)
from wsclient import WsConn, assert_presence, unique

EXAMPLES = REPO_ROOT / "examples"


@pytest.fixture(scope="module")
def built(install_tree, tmp_path_factory):
    """Each example compiled once against the installed library: {name: path}."""
    out = tmp_path_factory.mktemp("examples")
    return {name: install_tree.compile(EXAMPLES / f"{name}.c", out / name)
            for name in ("chat", "jobs", "proxy")}


class Example:
    """One example server on 127.0.0.1:port, its data in workdir, stderr kept in a file."""

    def __init__(self, binary, tree, workdir, args=(), ready="/"):
        self.port = free_port()
        self.err_path = workdir / f"{binary.name}.stderr"
        self.err = open(self.err_path, "wb")
        cmd = [binary, "--port", str(self.port), "--data-dir", workdir / "data", *args]
        self.proc = subprocess.Popen([str(a) for a in cmd], env=tree.env(), cwd=workdir,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.err)
        deadline = time.monotonic() + 10
        while True:
            assert self.proc.poll() is None, f"{binary.name} exited: {self.stderr()}"
            try:
                http_get(self.port, ready, timeout=2)
                return
            except (OSError, ConnectionClosed):
                assert time.monotonic() < deadline, f"{binary.name} never answered {ready}"
                time.sleep(0.05)

    def stderr(self):
        return self.err_path.read_text(errors="replace")

    def stop(self):
        """SIGTERM; the example drains and exits 0."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=15)
        self.err.close()
        assert code == 0, f"exit code {code}: {self.stderr()}"


@pytest.fixture(scope="module")
def chat(built, install_tree, tmp_path_factory):
    ex = Example(built["chat"], install_tree, tmp_path_factory.mktemp("chat"))
    yield ex
    ex.stop()


def member(port, room, user):
    conn = WsConn.open(port, f"/ws/{room}/{user}")
    welcome = conn.recv_json()
    assert welcome["type"] == "welcome" and welcome["room"] == room, welcome
    return conn


def test_chat_members_see_each_other_and_the_join_and_leave_notices(chat):
    room = unique("chat")
    with member(chat.port, room, "alice") as alice:
        with member(chat.port, room, "bob") as bob:
            assert_presence(alice.recv_json(), "join", room, "bob", 2)
            alice.send_text("hello bob")
            for conn in (alice, bob):
                said = conn.recv_type("message")
                assert (said["user"], said["text"], said["room"]) == ("alice", "hello bob", room)
            bob.send_close()
        assert_presence(alice.recv_type("leave", skip=()), "leave", room, "bob", 1)


def test_chat_broadcast_over_http_reaches_the_room_and_the_count_follows(chat):
    room = unique("chat")
    assert http_get(chat.port, f"/rooms/{room}/count").json() == {"room": room, "online": 0}
    with member(chat.port, room, "alice") as alice, member(chat.port, room, "bob") as bob:
        assert http_get(chat.port, f"/rooms/{room}/count").json() == {"room": room, "online": 2}
        resp = post_json(chat.port, "/broadcast", {"room": room, "message": "all hands"})
        assert resp.status == 200, resp
        assert resp.json()["sent_to"] == room and resp.json()["online"] == 2
        for conn in (alice, bob):
            assert conn.recv_type("broadcast")["text"] == "all hands"


def test_chat_broadcast_body_is_checked(chat):
    resp = post_json(chat.port, "/broadcast", {"room": "lobby"})
    assert resp.status == 422, resp
    assert [e["loc"] for e in resp.json()["detail"]] == [["body", "message"]]


def test_chat_page_opens_a_websocket(chat):
    resp = http_get(chat.port, "/")
    assert resp.status == 200 and resp.header("Content-Type").startswith("text/html")
    assert "new WebSocket(" in resp.text


def test_chat_linked_with_the_static_library_serves_the_room(install_tree, tmp_path):
    exe = install_tree.compile(EXAMPLES / "chat.c", tmp_path / "chat-static", static=True)
    assert "libroost" not in subprocess.run(["readelf", "-d", exe], capture_output=True,
                                            text=True).stdout
    ex = Example(exe, install_tree, tmp_path)
    try:
        room = unique("static")
        with member(ex.port, room, "carol"):
            assert http_get(ex.port, f"/rooms/{room}/count").json()["online"] == 1
    finally:
        ex.stop()


# ---- jobs


@pytest.fixture(scope="module")
def jobs(built, install_tree, tmp_path_factory):
    ex = Example(built["jobs"], install_tree, tmp_path_factory.mktemp("jobs"), ready="/jobs/1")
    yield ex
    ex.stop()


def sse_events(body):
    """The data of each `event: task` in an SSE body, parsed."""
    events = []
    for block in body.decode().split("\n\n"):
        lines = block.split("\n")
        if "event: task" in lines:
            events.append(json.loads("".join(l[6:] for l in lines if l.startswith("data: "))))
    return events


def test_jobs_submitted_job_streams_its_progress_then_its_end(jobs):
    resp = post_json(jobs.port, "/jobs", {"steps": 4, "ms": 150})
    assert resp.status == 201, resp
    task = resp.json()
    assert task["type"] == "count" and task["payload"] == {"steps": 4, "ms": 150}
    with RawConnection(jobs.port, timeout=15) as conn:
        stream = conn.request("GET", f"/jobs/{task['task_id']}/events", timeout=15)
    assert stream.status == 200 and stream.header("Content-Type").startswith("text/event-stream")
    events = sse_events(stream.body)
    currents = [e["progress"]["current"] for e in events]
    assert currents == sorted(currents), currents
    assert any(e["status"] == "running" and 0 < e["progress"]["current"] < 4 for e in events), \
        events
    last = events[-1]
    assert last["status"] == "completed" and last["result"] == {"counted": 4}, last
    assert last["progress"]["percent"] == 100
    got = http_get(jobs.port, f"/jobs/{task['task_id']}").json()
    assert got["status"] == "completed" and got["result"] == {"counted": 4}


def test_jobs_retried_post_with_its_idempotency_key_gives_the_same_job(jobs):
    key = unique("key")
    first = http_request(jobs.port, "POST", "/jobs", {"Content-Type": "application/json",
                         "Idempotency-Key": key}, json.dumps({"steps": 1, "ms": 0}))
    again = http_request(jobs.port, "POST", "/jobs", {"Content-Type": "application/json",
                         "Idempotency-Key": key}, json.dumps({"steps": 1, "ms": 0}))
    assert (first.status, again.status) == (201, 201), (first, again)
    assert again.json()["task_id"] == first.json()["task_id"]
    assert first.header("Idempotent-Replayed") is None
    assert again.header("Idempotent-Replayed") == "true"
    other = post_json(jobs.port, "/jobs", {"steps": 1, "ms": 0})
    assert other.json()["task_id"] != first.json()["task_id"]


def test_jobs_payload_is_checked_before_anything_is_queued(jobs):
    resp = post_json(jobs.port, "/jobs", {"steps": 0, "colour": "red"})
    assert resp.status == 422, resp
    assert sorted(e["type"] for e in resp.json()["detail"]) == ["extra_forbidden",
                                                                 "greater_than_equal"]


def test_jobs_unknown_job_is_404(jobs):
    assert http_get(jobs.port, "/jobs/999999").status == 404
    assert http_get(jobs.port, "/jobs/999999/events").status == 404


# ---- proxy


@pytest.fixture(scope="module")
def two_upstreams():
    procs, ports = [], []
    for _ in range(2):
        port = free_port()
        p = subprocess.Popen([sys.executable, str(UPSTREAM), str(port)], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
        assert p.stdout.readline().strip() == b"ready"
        procs.append(p)
        ports.append(port)
    yield ports
    for p in procs:
        p.kill()
        p.wait()


@pytest.fixture(scope="module")
def proxy(built, install_tree, tmp_path_factory, two_upstreams):
    a, b = two_upstreams
    args = ["--upstream", f"users=http://127.0.0.1:{a}", "--upstream",
            f"orders=http://127.0.0.1:{b}", "--upstream", f"down=http://127.0.0.1:{free_port()}"]
    ex = Example(built["proxy"], install_tree, tmp_path_factory.mktemp("proxy"), args,
                 ready="/merged/json")
    yield ex
    ex.stop()


def test_proxy_merges_the_upstreams_called_at_once(proxy, two_upstreams):
    before = [http_get(p, "/stats").json()["requests"] for p in two_upstreams]
    start = time.monotonic()
    resp = http_get(proxy.port, "/merged/sleep?ms=500", timeout=10)
    took = time.monotonic() - start
    assert resp.status == 200, resp
    merged = resp.json()["upstreams"]
    assert merged["users"] == {"slept_ms": 500} and merged["orders"] == {"slept_ms": 500}, merged
    # one after the other would be 1 s at least
    assert took < 0.9, f"the two calls took {took:.2f} s: not at once"
    after = [http_get(p, "/stats").json()["requests"] for p in two_upstreams]
    assert [y - x for x, y in zip(before, after)] == [2, 2]  # the call, and our /stats


def test_proxy_reports_a_failed_upstream_beside_the_answers(proxy):
    merged = http_get(proxy.port, "/merged/json?x=1").json()["upstreams"]
    assert merged["down"] == {"error": "connect", "status": 502}, merged
    assert merged["users"]["path"] == "/json" and merged["users"]["query"] == "x=1"
