"""The job queue over HTTP (docs/jobs-contract.md): submit, read, list, cancel, retries,
timeouts, idempotency, priorities, delays, schedules, server-sent events, the task:{id} room,
background tasks, metrics and the SIGTERM drain. The kill -9 promise is in test_jobs_crash.py."""

import asyncio
import hashlib
import http.client
import json
import math
import re
import signal
import subprocess
import time
from datetime import datetime
from urllib.parse import quote

import pytest

from conftest import assert_validation_error, http_get, http_request, metric_sum, post_json

STATUSES = ("pending", "running", "completed", "failed", "cancelled")
FINAL = {"completed", "failed", "cancelled"}
ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)$")
EXEC_FLAGS = ("--threads", "2", "--exec", "echo=/bin/echo fixed", "--exec", "false=/bin/false")


# --------------------------------------------------------------------------------------------
# Helpers


def submit(port, body, headers=None):
    h = {"Content-Type": "application/json", **(headers or {})}
    return http_request(port, "POST", "/tasks", h, json.dumps(body).encode())


def created(port, body, headers=None):
    resp = submit(port, body, headers)
    assert resp.status == 201, resp
    return resp.json()


def task(port, tid):
    resp = http_get(port, f"/tasks/{tid}")
    assert resp.status == 200, resp
    return resp.json()


def cancel(port, tid):
    return post_json(port, f"/tasks/{tid}/cancel", {})


def wait_status(port, tid, statuses, timeout=20.0):
    statuses = {statuses} if isinstance(statuses, str) else set(statuses)
    deadline = time.monotonic() + timeout
    t = None
    while time.monotonic() < deadline:
        t = task(port, tid)
        if t["status"] in statuses:
            return t
        time.sleep(0.05)
    raise AssertionError(f"task {tid} not {statuses} after {timeout} s: {t}")


def finished(port, tid, timeout=20.0):
    return wait_status(port, tid, FINAL, timeout)


def when(iso):
    """Seconds since the epoch of one of the task's ISO 8601 UTC times."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def list_all(port, query=""):
    """Every task of GET /tasks?{query}, following the cursors; also the number of pages."""
    items, cursor, pages = [], None, 0
    while True:
        target = "/tasks?limit=100" + (f"&{query}" if query else "")
        if cursor:
            target += f"&cursor={quote(cursor)}"
        resp = http_get(port, target)
        assert resp.status == 200, resp
        page = resp.json()
        pages += 1
        items += page["items"]
        if not page["has_more"]:
            assert page["next_cursor"] is None, page
            return items
        cursor = page["next_cursor"]
        assert pages < 1000


def children(pid):
    """Pids of the live (not zombie) children of pid."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split() if process_alive(int(p))]


def process_alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


@pytest.fixture
def xserver(shared_servers):
    """A shared server with exec commands configured: echo (with a fixed first arg) and false."""
    with shared_servers.use(*EXEC_FLAGS) as srv:
        yield srv


# --------------------------------------------------------------------------------------------
# Submitting and reading


def test_submit_answers_201_with_the_whole_task(server):
    before = time.time()
    resp = submit(server.port, {"type": "hash", "payload": {"data": "abc", "rounds": 2}})
    assert resp.status == 201, resp
    assert resp.header("Content-Type").startswith("application/json")
    assert resp.header("Idempotent-Replayed") is None
    t = resp.json()
    for field in ("task_id", "type", "payload", "status", "priority", "progress", "attempts",
                  "max_retries", "created_at", "started_at", "completed_at", "result", "error"):
        assert field in t, field
    assert isinstance(t["task_id"], int) and t["task_id"] > 0
    assert t["type"] == "hash" and t["payload"] == {"data": "abc", "rounds": 2}
    assert t["status"] == "pending" and t["attempts"] == 0
    assert t["priority"] == 0 and t["max_retries"] == 0
    assert set(t["progress"]) >= {"current", "total", "percent"}
    assert ISO_RE.match(t["created_at"]), t["created_at"]
    assert before - 1 <= when(t["created_at"]) <= time.time() + 1
    assert t["started_at"] is None and t["completed_at"] is None
    assert t["result"] is None and t["error"] is None

    done = wait_status(server.port, t["task_id"], "completed")
    once = hashlib.sha256(b"abc").digest()
    assert done["result"] == {"hex": hashlib.sha256(once).hexdigest()}
    assert done["attempts"] == 1 and done["error"] is None
    assert ISO_RE.match(done["started_at"]) and ISO_RE.match(done["completed_at"])
    assert when(done["created_at"]) <= when(done["started_at"]) <= when(done["completed_at"])
    assert done["progress"]["percent"] == 100
    assert done["progress"]["current"] == done["progress"]["total"]
    assert task(server.port, t["task_id"]) == done  # a finished task no longer changes


def test_submitted_options_are_kept(server):
    t = created(server.port, {"type": "sleep", "payload": {"steps": 1, "seconds": 0},
                              "priority": -7, "max_retries": 4, "timeout_s": 30, "delay_s": 0})
    assert t["priority"] == -7 and t["max_retries"] == 4
    t = wait_status(server.port, t["task_id"], "completed")
    assert t["result"] == {"slept": 0}
    assert t["priority"] == -7 and t["max_retries"] == 4


def test_each_built_in_type_completes_with_its_result(xserver):
    data_dir = xserver.data_dir
    noop = created(xserver.port, {"type": "noop"})
    assert wait_status(xserver.port, noop["task_id"], "completed")["result"] == {}
    noop2 = created(xserver.port, {"type": "noop", "payload": None})
    assert wait_status(xserver.port, noop2["task_id"], "completed")["result"] == {}

    sleep = created(xserver.port, {"type": "sleep", "payload": {"steps": 2, "seconds": 0.05}})
    t = wait_status(xserver.port, sleep["task_id"], "completed")
    assert t["result"]["slept"] == pytest.approx(0.1)
    assert (t["progress"]["current"], t["progress"]["total"]) == (2, 2)
    assert t["progress"]["percent"] == 100

    ex = created(xserver.port, {"type": "exec", "payload": {"command": "echo",
                                                             "args": ["a b", "$HOME", ";"]}})
    t = wait_status(xserver.port, ex["task_id"], "completed")
    assert t["result"] == {"exit_code": 0, "output": "fixed a b $HOME ;\n"}  # argv, no shell

    mail = created(xserver.port, {"type": "email", "payload": {
        "to": "dash@example.com", "subject": "Subject-42", "body": "Body text 42"}})
    t = wait_status(xserver.port, mail["task_id"], "completed", timeout=15)
    assert t["result"] == {"delivered_to": "dash@example.com"}
    outbox = (data_dir / "outbox.log").read_text()
    assert "dash@example.com" in outbox and "Subject-42" in outbox and "Body text 42" in outbox


def test_email_waits_for_the_configured_delay(start_server):
    srv = start_server("--email-delay-s", "0.8")
    t = created(srv.port, {"type": "email",
                           "payload": {"to": "a@example.com", "subject": "s", "body": "b"}})
    t = wait_status(srv.port, t["task_id"], "completed", timeout=10)
    assert when(t["completed_at"]) - when(t["started_at"]) >= 0.75


def _long(n):
    return "x" * n


BAD_SUBMISSIONS = [
    # the task's own fields
    ({"payload": {}}, ["body", "type"]),
    ({"type": "nope"}, ["body", "type"]),
    ({"type": ""}, ["body", "type"]),
    ({"type": 5}, ["body", "type"]),
    ({"type": "sleep", "priority": 101}, ["body", "priority"]),
    ({"type": "sleep", "priority": -101}, ["body", "priority"]),
    ({"type": "sleep", "priority": "high"}, ["body", "priority"]),
    ({"type": "sleep", "priority": 1.5}, ["body", "priority"]),
    ({"type": "sleep", "delay_s": -1}, ["body", "delay_s"]),
    ({"type": "sleep", "delay_s": "soon"}, ["body", "delay_s"]),
    ({"type": "sleep", "max_retries": -1}, ["body", "max_retries"]),
    ({"type": "sleep", "max_retries": 101}, ["body", "max_retries"]),
    ({"type": "sleep", "timeout_s": 0}, ["body", "timeout_s"]),
    ({"type": "sleep", "timeout_s": -2}, ["body", "timeout_s"]),
    ({"type": "sleep", "payload": [1, 2]}, ["body", "payload"]),
    ({"type": "sleep", "payload": "steps=3"}, ["body", "payload"]),
    # sleep
    ({"type": "sleep", "payload": {"steps": "x"}}, ["body", "payload", "steps"]),
    ({"type": "sleep", "payload": {"steps": 0}}, ["body", "payload", "steps"]),
    ({"type": "sleep", "payload": {"steps": 1001}}, ["body", "payload", "steps"]),
    ({"type": "sleep", "payload": {"steps": 2.5}}, ["body", "payload", "steps"]),
    ({"type": "sleep", "payload": {"seconds": 100}}, ["body", "payload", "seconds"]),
    ({"type": "sleep", "payload": {"seconds": -1}}, ["body", "payload", "seconds"]),
    # hash
    ({"type": "hash", "payload": {}}, ["body", "payload", "data"]),
    ({"type": "hash", "payload": {"data": 5}}, ["body", "payload", "data"]),
    ({"type": "hash", "payload": {"data": "x", "rounds": 0}}, ["body", "payload", "rounds"]),
    ({"type": "hash", "payload": {"data": "x", "rounds": 10_000_001}},
     ["body", "payload", "rounds"]),
    # email
    ({"type": "email", "payload": {"to": "not-an-address", "subject": "s", "body": "b"}},
     ["body", "payload", "to"]),
    ({"type": "email", "payload": {"subject": "s", "body": "b"}}, ["body", "payload", "to"]),
    ({"type": "email", "payload": {"to": "a@example.com", "body": "b"}},
     ["body", "payload", "subject"]),
    ({"type": "email", "payload": {"to": "a@example.com", "subject": "s", "body": 3}},
     ["body", "payload", "body"]),
    # exec
    ({"type": "exec", "payload": {"command": "rm", "args": ["-rf", "/"]}},
     ["body", "payload", "command"]),
    ({"type": "exec", "payload": {"command": "/bin/echo"}}, ["body", "payload", "command"]),
    ({"type": "exec", "payload": {}}, ["body", "payload", "command"]),
    ({"type": "exec", "payload": {"command": "echo", "args": "hello"}},
     ["body", "payload", "args"]),
    ({"type": "exec", "payload": {"command": "echo", "args": [1]}}, ["body", "payload", "args"]),
    ({"type": "exec", "payload": {"command": "echo", "args": ["a"] * 33}},
     ["body", "payload", "args"]),
    ({"type": "exec", "payload": {"command": "echo", "args": [_long(1001)]}},
     ["body", "payload", "args"]),
]


@pytest.mark.parametrize("body, loc", BAD_SUBMISSIONS,
                         ids=[f"{i}-{'.'.join(map(str, loc[1:]))}"
                              for i, (_, loc) in enumerate(BAD_SUBMISSIONS)])
def test_bad_submissions_are_422_and_create_nothing(xserver, body, loc):
    before = metric_sum(xserver.metrics(), "roost_job_events_total", event="submitted")
    errors = assert_validation_error(submit(xserver.port, body))
    locs = [e["loc"] for e in errors]
    assert loc in locs or any(l[:len(loc)] == loc for l in locs), locs
    after = metric_sum(xserver.metrics(), "roost_job_events_total", event="submitted")
    assert after == before


def test_limits_of_exec_args_are_inclusive(xserver):
    t = created(xserver.port, {"type": "exec", "payload": {"command": "echo",
                                                            "args": ["a"] * 31 + [_long(1000)]}})
    t = wait_status(xserver.port, t["task_id"], "completed")
    assert t["result"]["output"].endswith(_long(1000) + "\n")


def test_body_that_is_not_json_is_422(server):
    resp = http_request(server.port, "POST", "/tasks", {"Content-Type": "application/json"},
                        b"{not json")
    assert resp.status == 422, resp


def test_unknown_task_is_404_everywhere(server):
    resp = http_get(server.port, "/tasks/999999")
    assert resp.status == 404 and resp.json() == {"detail": "Task not found"}
    resp = cancel(server.port, 999999)
    assert resp.status == 404 and resp.json() == {"detail": "Task not found"}
    assert http_get(server.port, "/tasks/999999/events").status == 404


# --------------------------------------------------------------------------------------------
# Listing


def test_list_pages_newest_first_with_a_status_filter(start_server):
    srv = start_server("--job-workers", "1")
    ids = [created(srv.port, {"type": "sleep", "delay_s": 60})["task_id"] for _ in range(25)]
    done = created(srv.port, {"type": "noop"})["task_id"]
    wait_status(srv.port, done, "completed")

    seen, cursor, pages = [], None, 0
    while True:
        q = "/tasks?status=pending&limit=10" + (f"&cursor={quote(cursor)}" if cursor else "")
        resp = http_get(srv.port, q)
        assert resp.status == 200, resp
        page = resp.json()
        assert set(page) == {"items", "next_cursor", "has_more"}
        pages += 1
        assert len(page["items"]) == (10 if pages < 3 else 5)
        seen += [t["task_id"] for t in page["items"]]
        assert all(t["status"] == "pending" for t in page["items"])
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        assert isinstance(page["next_cursor"], str) and page["next_cursor"]
        cursor = page["next_cursor"]
    assert pages == 3
    assert len(seen) == len(set(seen)) == 25, "no task twice"
    assert seen == sorted(ids, reverse=True), "newest first"

    every = list_all(srv.port)
    assert [t["task_id"] for t in every] == [done] + sorted(ids, reverse=True)
    assert len(http_get(srv.port, "/tasks").json()["items"]) == 20  # default limit
    completed = http_get(srv.port, "/tasks?status=completed").json()
    assert [t["task_id"] for t in completed["items"]] == [done] and not completed["has_more"]
    assert http_get(srv.port, "/tasks?status=failed").json() == \
        {"items": [], "next_cursor": None, "has_more": False}
    for bad in ("limit=0", "limit=101", "limit=-1", "limit=ten", "status=bogus",
                "status=PENDING", "cursor=!!"):
        resp = http_get(srv.port, f"/tasks?{bad}")
        errors = assert_validation_error(resp)
        assert errors[0]["loc"][0] == "query", errors
    assert http_get(srv.port, "/tasks?limit=1").status == 200
    assert http_get(srv.port, "/tasks?limit=100").status == 200


# --------------------------------------------------------------------------------------------
# Cancelling


def test_cancel_a_pending_task_at_once(server):
    t = created(server.port, {"type": "noop", "delay_s": 30})
    resp = cancel(server.port, t["task_id"])
    assert resp.status == 200, resp
    assert resp.json()["status"] == "cancelled" and resp.json()["task_id"] == t["task_id"]
    t = task(server.port, t["task_id"])
    assert t["status"] == "cancelled" and t["started_at"] is None and t["attempts"] == 0
    again = cancel(server.port, t["task_id"])
    assert again.status == 409 and isinstance(again.json()["detail"], str)


def test_cancel_a_task_waiting_behind_a_busy_worker(start_server):
    """With one worker busy, the next tasks are reserved ahead (--job-prefetch) but still
    pending: a cancel takes one out at once, and it never starts; the others still run."""
    srv = start_server("--job-workers", "1")
    blocker = created(srv.port, {"type": "sleep", "payload": {"steps": 1, "seconds": 1}})
    wait_status(srv.port, blocker["task_id"], "running")
    waiting = [created(srv.port, {"type": "noop"})["task_id"] for _ in range(3)]
    assert task(srv.port, waiting[1])["status"] == "pending"
    resp = cancel(srv.port, waiting[1])
    assert resp.status == 200, resp
    assert resp.json()["status"] == "cancelled", resp.json()
    for i in (waiting[0], waiting[2]):
        assert wait_status(srv.port, i, "completed")["attempts"] == 1
    t = task(srv.port, waiting[1])
    assert t["status"] == "cancelled" and t["started_at"] is None and t["attempts"] == 0, t
    assert task(srv.port, blocker["task_id"])["status"] == "completed"


def test_cancel_a_running_task(server):
    t = created(server.port, {"type": "sleep", "payload": {"steps": 100, "seconds": 0.1}})
    wait_status(server.port, t["task_id"], "running")
    started = time.monotonic()
    resp = cancel(server.port, t["task_id"])
    assert resp.status == 200, resp
    body = resp.json()
    assert body["status"] in ("running", "cancelled"), body
    if body["status"] == "running":
        assert body["cancel_requested"] is True
    t = finished(server.port, t["task_id"], timeout=5)
    assert t["status"] == "cancelled", t
    assert time.monotonic() - started < 3, "the job stops at its next step, not at its end"
    assert t["progress"]["current"] < 100
    assert cancel(server.port, t["task_id"]).status == 409


def test_cancel_a_finished_task_is_409(xserver):
    ok = created(xserver.port, {"type": "noop"})
    wait_status(xserver.port, ok["task_id"], "completed")
    resp = cancel(xserver.port, ok["task_id"])
    assert resp.status == 409 and isinstance(resp.json()["detail"], str), resp
    assert task(xserver.port, ok["task_id"])["status"] == "completed"

    bad = created(xserver.port, {"type": "exec", "payload": {"command": "false"}})
    wait_status(xserver.port, bad["task_id"], "failed")
    resp = cancel(xserver.port, bad["task_id"])
    assert resp.status == 409 and isinstance(resp.json()["detail"], str), resp
    assert task(xserver.port, bad["task_id"])["status"] == "failed"


# --------------------------------------------------------------------------------------------
# Retries and timeouts

FLAKY = """\
# fails the first two runs, counted in the file given as $1
n=$(cat "$1" 2>/dev/null || echo 0)
n=$((n + 1))
echo $n > "$1"
if [ $n -ge 3 ]; then echo "ok after $n"; exit 0; fi
echo "try $n failed"
exit 1
"""


def test_retries_until_success(start_server, tmp_path):
    script = tmp_path / "flaky.sh"
    script.write_text(FLAKY)
    counter = tmp_path / "count"
    srv = start_server("--retry-backoff-s", "0.1", "--exec", f"flaky=/bin/sh {script}")
    t = created(srv.port, {"type": "exec", "max_retries": 3,
                           "payload": {"command": "flaky", "args": [str(counter)]}})
    t = finished(srv.port, t["task_id"])
    assert t["status"] == "completed" and t["attempts"] == 3, t
    assert t["result"] == {"exit_code": 0, "output": "ok after 3\n"}
    assert counter.read_text().strip() == "3"
    # two backoffs: 0.1 s and 0.2 s, each +-20%
    assert when(t["completed_at"]) - when(t["created_at"]) >= 0.3 * 0.8 - 0.01
    text = srv.metrics()
    assert metric_sum(text, "roost_job_events_total", event="retried") == 2


def test_retries_until_failure_keep_the_last_error(start_server):
    srv = start_server("--retry-backoff-s", "0.1", "--exec", "false=/bin/false")
    t = created(srv.port, {"type": "exec", "max_retries": 2, "payload": {"command": "false"}})
    t = finished(srv.port, t["task_id"])
    assert t["status"] == "failed" and t["attempts"] == 3, t
    assert t["error"].startswith("exit code 1"), t["error"]
    assert t["result"] is None and t["completed_at"] is not None

    once = created(srv.port, {"type": "exec", "payload": {"command": "false"}})  # no retries
    once = finished(srv.port, once["task_id"])
    assert once["status"] == "failed" and once["attempts"] == 1


def test_a_failed_attempt_returns_to_pending_before_the_retry(start_server):
    srv = start_server("--retry-backoff-s", "2", "--exec", "false=/bin/false")
    t = created(srv.port, {"type": "exec", "max_retries": 1, "payload": {"command": "false"}})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        t = task(srv.port, t["task_id"])
        if t["attempts"] == 1 and t["status"] == "pending":
            break
        time.sleep(0.05)
    assert t["status"] == "pending" and t["attempts"] == 1, t
    assert t["error"] is None or t["error"].startswith("exit code 1")
    t = finished(srv.port, t["task_id"], timeout=10)
    assert t["status"] == "failed" and t["attempts"] == 2


def test_timeout_stops_a_sleep_job(server):
    started = time.monotonic()
    t = created(server.port, {"type": "sleep", "timeout_s": 0.5,
                              "payload": {"steps": 10, "seconds": 1}})
    t = finished(server.port, t["task_id"], timeout=8)
    assert t["status"] == "failed" and t["error"] == "timed out", t
    assert t["attempts"] == 1
    assert time.monotonic() - started < 4


def test_timeout_kills_the_exec_process_and_its_group(start_server, tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    tree = tmp_path / "tree.sh"
    tree.write_text('/bin/sleep 10 &\necho $! > "$1"\nwait\n')
    srv = start_server("--exec", "sleeper=/bin/sleep 10", "--exec", f"tree=/bin/sh {tree}")

    started = time.monotonic()
    t = created(srv.port, {"type": "exec", "timeout_s": 0.5, "payload": {"command": "sleeper"}})
    wait_status(srv.port, t["task_id"], "running", timeout=5)
    t = finished(srv.port, t["task_id"], timeout=8)
    assert t["status"] == "failed" and t["error"] == "timed out", t
    assert time.monotonic() - started < 4, "failed quickly, not after the 10 s sleep"
    deadline = time.monotonic() + 3
    while children(srv.proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert children(srv.proc.pid) == [], "the timed-out `sleep 10` still runs"

    t = created(srv.port, {"type": "exec", "timeout_s": 0.5,
                           "payload": {"command": "tree", "args": [str(pidfile)]}})
    t = finished(srv.port, t["task_id"], timeout=8)
    assert t["status"] == "failed" and t["error"] == "timed out", t
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 3
    while process_alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_alive(grandchild), "the command's own child survived its process group"
    assert children(srv.proc.pid) == []


def test_timeout_then_retry(start_server):
    srv = start_server("--retry-backoff-s", "0.1")
    t = created(srv.port, {"type": "sleep", "timeout_s": 0.3, "max_retries": 1,
                           "payload": {"steps": 5, "seconds": 1}})
    t = finished(srv.port, t["task_id"], timeout=10)
    assert t["status"] == "failed" and t["attempts"] == 2 and t["error"] == "timed out", t


# --------------------------------------------------------------------------------------------
# Order, delays, idempotency


@pytest.mark.parametrize("prefetch", ["0", "64"])
def test_higher_priority_runs_first(start_server, prefetch):
    srv = start_server("--job-workers", "1", "--job-prefetch", prefetch)
    blocker = created(srv.port, {"type": "sleep", "payload": {"steps": 1, "seconds": 1}})
    wait_status(srv.port, blocker["task_id"], "running")
    step = {"steps": 1, "seconds": 0.05}
    low = created(srv.port, {"type": "sleep", "priority": -5, "payload": step})["task_id"]
    mid_a = created(srv.port, {"type": "sleep", "payload": step})["task_id"]
    high = created(srv.port, {"type": "sleep", "priority": 5, "payload": step})["task_id"]
    mid_b = created(srv.port, {"type": "sleep", "payload": step})["task_id"]
    top = created(srv.port, {"type": "noop", "priority": 100})["task_id"]
    assert task(srv.port, blocker["task_id"])["status"] == "running", \
        "the blocker finished before the others were queued: the test proves nothing"
    done = [wait_status(srv.port, i, "completed") for i in (low, mid_a, high, mid_b, top)]
    order = [t["task_id"] for t in sorted(done, key=lambda t: (when(t["completed_at"]),
                                                                when(t["started_at"])))]
    # higher priority first; equal priority: earlier run time, then lower id
    assert order == [top, high, mid_a, mid_b, low], order


def test_delay_holds_a_job_back(server):
    t = created(server.port, {"type": "noop", "delay_s": 1.5})
    time.sleep(0.8)
    assert task(server.port, t["task_id"])["status"] == "pending"
    t = wait_status(server.port, t["task_id"], "completed", timeout=8)
    assert when(t["started_at"]) - when(t["created_at"]) >= 1.5 - 0.01


def test_idempotency_key_returns_the_first_task(server):
    h = {"Idempotency-Key": f"key-{time.time_ns()}"}
    first = submit(server.port, {"type": "noop"}, h)
    again = submit(server.port, {"type": "noop"}, h)
    other = submit(server.port, {"type": "sleep", "payload": {"steps": 1}}, h)
    assert first.status == again.status == other.status == 201
    assert first.json()["task_id"] == again.json()["task_id"] == other.json()["task_id"]
    assert again.header("Idempotent-Replayed") == "true"
    assert other.header("Idempotent-Replayed") == "true"
    assert other.json()["type"] == "noop", "the first task, not the new body"
    assert first.header("Idempotent-Replayed") is None
    wait_status(server.port, first.json()["task_id"], "completed")
    late = submit(server.port, {"type": "noop"}, h)
    assert late.status == 201 and late.json()["task_id"] == first.json()["task_id"]
    assert late.json()["status"] == "completed"

    fresh = submit(server.port, {"type": "noop"}, {"Idempotency-Key": f"other-{time.time_ns()}"})
    assert fresh.json()["task_id"] != first.json()["task_id"]
    assert fresh.header("Idempotent-Replayed") is None
    plain1, plain2 = created(server.port, {"type": "noop"}), created(server.port, {"type": "noop"})
    assert plain1["task_id"] != plain2["task_id"]


def test_idempotency_key_length(server):
    assert submit(server.port, {"type": "noop"}, {"Idempotency-Key": "k" * 200}).status == 201
    errors = assert_validation_error(
        submit(server.port, {"type": "noop"}, {"Idempotency-Key": "k" * 201}))
    assert errors[0]["loc"][0] == "header", errors


# --------------------------------------------------------------------------------------------
# Schedules


def test_schedule_every_second(start_server):
    before = time.time()
    srv = start_server("--schedule", "noop every 1s {}")
    ready = time.time()
    time.sleep(3.5)
    counted = time.time()
    items = list_all(srv.port)
    n = len(items)
    assert 3 <= n <= 5, n
    # one per 1 s slot from the server's start to now (the newest may be a tick away)
    assert math.floor(counted - 0.2) - math.floor(ready) <= n <= \
        math.floor(counted) - math.floor(before) + 1, (n, before, ready, counted)
    assert {t["type"] for t in items} == {"noop"}
    for t in items:
        wait_status(srv.port, t["task_id"], "completed", timeout=5)


def test_schedule_enqueues_once_per_slot_across_a_restart(start_server, tmp_path):
    data = tmp_path / "sched-data"
    period = 60
    left = period - time.time() % period
    if left < 12:  # both starts must fall in one 60 s slot
        time.sleep(left + 0.2)
    slot = math.floor(time.time() / period)
    first = start_server("--schedule", f"noop every {period}s {{}}", "--data-dir", str(data),
                         add_data_dir=False)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not list_all(first.port):
        time.sleep(0.05)
    items = list_all(first.port)
    assert len(items) == 1 and items[0]["type"] == "noop", items
    assert first.stop() == 0

    second = start_server("--schedule", f"noop every {period}s {{}}", "--data-dir", str(data),
                          add_data_dir=False)
    time.sleep(1.5)  # many schedule ticks
    items = list_all(second.port)
    assert math.floor(time.time() / period) == slot, "the slot changed: the test cannot tell"
    assert len(items) == 1, items
    wait_status(second.port, items[0]["task_id"], "completed")


def test_schedule_with_a_payload_and_minutes(start_server):
    srv = start_server("--schedule", 'hash every 1m {"data": "sched", "rounds": 3}')
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not list_all(srv.port):
        time.sleep(0.05)
    items = list_all(srv.port)
    assert len(items) == 1 and items[0]["payload"] == {"data": "sched", "rounds": 3}, items


# --------------------------------------------------------------------------------------------
# Live progress: server-sent events and the task:{id} room


def read_events(port, tid, timeout=15):
    """(response, [(event name, id, task)]) of GET /tasks/{tid}/events, read to its end."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", f"/tasks/{tid}/events")
        resp = conn.getresponse()
        assert resp.status == 200, (resp.status, resp.read())
        raw = resp.read().decode()  # returns only when the server ends the stream
    finally:
        conn.close()
    events = []
    for block in raw.split("\n\n"):
        if not block.strip():
            continue
        fields = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                continue
            k, _, v = line.partition(":")
            fields[k] = v[1:] if v.startswith(" ") else v
        if "data" in fields:
            events.append((fields.get("event"), fields.get("id"), json.loads(fields["data"])))
    return resp, events


def test_server_sent_events_follow_a_job_to_its_end(server):
    t = created(server.port, {"type": "sleep", "payload": {"steps": 3, "seconds": 0.2}})
    started = time.monotonic()
    resp, events = read_events(server.port, t["task_id"])
    assert time.monotonic() - started < 10
    assert resp.getheader("Content-Type").startswith("text/event-stream")
    assert all(name == "task" for name, _, _ in events), events
    ids = [int(i) for _, i, _ in events]
    assert ids == sorted(set(ids)), "event ids increase"
    tasks = [e for _, _, e in events]
    assert all(e["task_id"] == t["task_id"] for e in tasks)
    assert tasks[0]["status"] in ("pending", "running"), "starts with the current state"
    assert tasks[-1]["status"] == "completed" and tasks[-1]["result"] == {"slept": pytest.approx(0.6)}
    assert sum(e["status"] in FINAL for e in tasks) == 1, "the stream ends after the final event"
    currents = [e["progress"]["current"] for e in tasks]
    assert currents == sorted(currents) and currents[-1] == 3
    assert {1, 2, 3} <= set(currents), f"one event per step: {currents}"
    percents = [e["progress"]["percent"] for e in tasks]
    assert percents == sorted(percents) and percents[-1] == 100


def test_events_of_a_finished_task_are_one_event(server):
    t = created(server.port, {"type": "noop"})
    wait_status(server.port, t["task_id"], "completed")
    _, events = read_events(server.port, t["task_id"], timeout=5)
    assert len(events) == 1 and events[0][2]["status"] == "completed", events


def test_progress_reaches_the_task_room(server):
    websockets = pytest.importorskip("websockets")

    async def watch():
        t = created(server.port, {"type": "sleep", "delay_s": 0.5,
                                  "payload": {"steps": 3, "seconds": 0.1}})
        room = f"task:{t['task_id']}"
        url = f"ws://127.0.0.1:{server.port}/ws/{room}/watcher"
        frames = []
        async with websockets.connect(url, open_timeout=5) as ws:
            while True:
                f = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if f["type"] != "task":
                    continue
                frames.append(f)
                if f["task"]["status"] in FINAL:
                    return t, frames

    t, frames = asyncio.run(asyncio.wait_for(watch(), 20))
    assert all(f["room"] == f"task:{t['task_id']}" and "ts" in f for f in frames), frames[0]
    assert all(f["task"]["task_id"] == t["task_id"] for f in frames)
    statuses = [f["task"]["status"] for f in frames]
    assert "running" in statuses and statuses[-1] == "completed", statuses
    currents = [f["task"]["progress"]["current"] for f in frames]
    assert currents == sorted(currents) and currents[-1] == 3


def test_only_task_rooms_may_have_a_colon(server):
    websockets = pytest.importorskip("websockets")

    async def try_connect(room):
        try:
            async with websockets.connect(f"ws://127.0.0.1:{server.port}/ws/{room}/u",
                                          open_timeout=5):
                return True
        except websockets.exceptions.InvalidHandshake:  # refused with an HTTP status
            return False

    assert asyncio.run(try_connect("task:12345")) is True
    assert asyncio.run(try_connect("other:12345")) is False
    assert asyncio.run(try_connect("task:12x")) is False


# --------------------------------------------------------------------------------------------
# Background tasks after the response


def wait_for_line(path, needle, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and needle in path.read_text():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} never appeared in {path}")


def test_notification_is_logged_after_the_response(server):
    resp = post_json(server.port, "/send-notification/someone@example.com", {})
    assert resp.status == 200, resp
    assert resp.json() == {"message": "Notification sent in the background"}
    text = wait_for_line(server.data_dir / "notifications.log", "someone@example.com")
    line = [l for l in text.splitlines() if l.endswith("notification to someone@example.com")][-1]
    stamp = line.split(" ", 1)[0]
    assert ISO_RE.match(stamp) or re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", stamp), line
    assert abs(when(stamp) - time.time()) < 60


@pytest.mark.parametrize("email", [
    "not-an-email", "two@at@example.com", "@example.com", "user@", "user@localhost",
    "us%20er@example.com", "user@example.com%20", ("a" * 250) + "@example.com",
])
def test_bad_notification_address_is_422(server, email):
    errors = assert_validation_error(post_json(server.port, f"/send-notification/{email}", {}))
    assert errors[0]["loc"] == ["path", "email"], errors


def test_broadcast_is_logged_after_the_response(server):
    room = f"logged{time.time_ns() % 100000}"
    resp = post_json(server.port, "/broadcast", {"room": room, "message": "hi there"})
    assert resp.status == 200, resp
    text = wait_for_line(server.data_dir / "messages.log", f"{room} hi there")
    assert re.search(rf"^\d{{4}}-\d\d-\d\dT\S+ {room} hi there$", text, re.M), text


# --------------------------------------------------------------------------------------------
# Metrics


def test_metrics_count_jobs_by_status(start_server):
    srv = start_server("--exec", "false=/bin/false")
    ok = created(srv.port, {"type": "noop"})
    bad = created(srv.port, {"type": "exec", "payload": {"command": "false"}})
    gone = created(srv.port, {"type": "noop", "delay_s": 60})
    cancel(srv.port, gone["task_id"])
    created(srv.port, {"type": "noop", "delay_s": 60})
    wait_status(srv.port, ok["task_id"], "completed")
    wait_status(srv.port, bad["task_id"], "failed")
    text = srv.metrics()
    for s in STATUSES:
        assert f'roost_jobs{{status="{s}"}}' in text, s
    assert metric_sum(text, "roost_jobs", status="completed") == 1
    assert metric_sum(text, "roost_jobs", status="failed") == 1
    assert metric_sum(text, "roost_jobs", status="cancelled") == 1
    assert metric_sum(text, "roost_jobs", status="pending") == 1
    assert metric_sum(text, "roost_jobs", status="running") == 0
    assert metric_sum(text, "roost_job_events_total", event="submitted") == 4


# --------------------------------------------------------------------------------------------
# SIGTERM: running jobs finish within --drain-s, the rest stay pending


@pytest.mark.deadline(60)
def test_sigterm_lets_running_jobs_finish_and_keeps_the_rest(start_server, tmp_path):
    data = tmp_path / "drain-data"
    srv = start_server("--job-workers", "1", "--drain-s", "5", "--data-dir", str(data),
                       add_data_dir=False)
    running = created(srv.port, {"type": "sleep", "payload": {"steps": 2, "seconds": 0.5}})
    waiting = [created(srv.port, {"type": "noop"}) for _ in range(3)]
    wait_status(srv.port, running["task_id"], "running")
    term_at = time.time()
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(10) == 0
    assert time.time() - term_at >= 0.4, "exited before the running job could finish"

    again = start_server("--job-workers", "1", "--data-dir", str(data), add_data_dir=False)
    t = task(again.port, running["task_id"])
    assert t["status"] == "completed" and t["attempts"] == 1, t
    assert when(t["completed_at"]) <= time.time()
    for w in waiting:
        w = wait_status(again.port, w["task_id"], "completed")
        assert w["attempts"] == 1
        assert when(w["started_at"]) > term_at, "no new job starts once SIGTERM arrived"


@pytest.mark.deadline(60)
def test_sigterm_past_the_drain_returns_the_job_to_pending(start_server, tmp_path):
    data = tmp_path / "drain-data"
    srv = start_server("--job-workers", "1", "--drain-s", "0.5", "--data-dir", str(data),
                       add_data_dir=False)
    long = created(srv.port, {"type": "sleep", "payload": {"steps": 20, "seconds": 0.5}})
    wait_status(srv.port, long["task_id"], "running")
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(10) == 0
    again = start_server("--job-workers", "1", "--data-dir", str(data), add_data_dir=False)
    t = task(again.port, long["task_id"])
    assert t["status"] in ("pending", "running"), t
    cancel(again.port, long["task_id"])
    assert finished(again.port, long["task_id"], timeout=5)["status"] == "cancelled"


def test_fsync_mode_stores_and_runs_jobs(start_server, tmp_path):
    data = tmp_path / "fsync-data"
    srv = start_server("--job-fsync", "--data-dir", str(data), add_data_dir=False)
    ids = [created(srv.port, {"type": "noop"})["task_id"] for _ in range(5)]
    for i in ids:
        assert wait_status(srv.port, i, "completed")["attempts"] == 1
    srv.signal(signal.SIGKILL)
    srv.wait_exit(10)
    again = start_server("--data-dir", str(data), add_data_dir=False)
    assert all(task(again.port, i)["status"] == "completed" for i in ids)
