"""The job queue over HTTP (docs/jobs-contract.md): submit, read, list, cancel, retries,
timeouts, idempotency, priorities, schedules, server-sent events, background tasks, and the
crash and drain promises (kill -9 loses no accepted job; SIGTERM lets running ones finish)."""

import concurrent.futures
import http.client
import json
import signal
import subprocess
import time

import pytest

from conftest import RawConnection, http_get, http_request, post_json


def submit(port, body, headers=None):
    h = {"Content-Type": "application/json", **(headers or {})}
    return http_request(port, "POST", "/tasks", h, json.dumps(body).encode())


def task(port, tid):
    resp = http_get(port, f"/tasks/{tid}")
    assert resp.status == 200, resp
    return resp.json()


def wait_status(port, tid, statuses, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t = task(port, tid)
        if t["status"] in statuses:
            return t
        time.sleep(0.05)
    raise AssertionError(f"task {tid} still {t['status']} after {timeout} s: {t}")


def test_submit_returns_the_stored_task_and_it_completes(server):
    resp = submit(server.port, {"type": "hash", "payload": {"data": "abc", "rounds": 2}})
    assert resp.status == 201, resp
    t = resp.json()
    for field in ("task_id", "type", "status", "progress", "attempts", "created_at",
                  "started_at", "completed_at", "result", "error"):
        assert field in t
    assert t["status"] == "pending" and t["attempts"] == 0
    done = wait_status(server.port, t["task_id"], {"completed"})
    import hashlib
    once = hashlib.sha256(b"abc").digest()
    assert done["result"] == {"hex": hashlib.sha256(once).hexdigest()}
    assert done["attempts"] == 1 and done["completed_at"] and done["progress"]["percent"] == 100


@pytest.mark.parametrize("body, field", [
    ({"type": "nope"}, "type"),
    ({"type": "sleep", "priority": 1000}, "priority"),
    ({"type": "sleep", "payload": {"steps": "x"}}, "steps"),
    ({"type": "sleep", "payload": {"seconds": 100}}, "seconds"),
    ({"type": "hash", "payload": {}}, "data"),
    ({"type": "email", "payload": {"to": "not-an-address", "subject": "s", "body": "b"}}, "to"),
    ({"type": "exec", "payload": {"command": "rm"}}, "command"),
    ({"type": "sleep", "max_retries": -1}, "max_retries"),
    ({"type": "sleep", "timeout_s": 0}, "timeout_s"),
    ({"payload": {}}, "type"),
])
def test_bad_submissions_are_422(server, body, field):
    resp = submit(server.port, body)
    assert resp.status == 422, resp
    locs = [e["loc"] for e in resp.json()["detail"]]
    assert any(loc[-1] == field for loc in locs), locs


def test_unknown_task_is_404(server):
    resp = http_get(server.port, "/tasks/999999")
    assert resp.status == 404 and resp.json() == {"detail": "Task not found"}
    assert post_json(server.port, "/tasks/999999/cancel", {}).status == 404


def test_list_pages_newest_first_with_a_status_filter(start_server):
    srv = start_server("--job-workers", "1")
    ids = [submit(srv.port, {"type": "sleep", "delay_s": 60}).json()["task_id"] for _ in range(25)]
    seen, cursor, pages = [], None, 0
    while True:
        q = "/tasks?status=pending&limit=10" + (f"&cursor={cursor}" if cursor else "")
        page = http_get(srv.port, q).json()
        pages += 1
        seen += [t["task_id"] for t in page["items"]]
        assert all(t["status"] == "pending" for t in page["items"])
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert pages == 3
    assert seen == sorted(ids, reverse=True)
    assert http_get(srv.port, "/tasks?status=completed").json()["items"] == []
    assert http_get(srv.port, "/tasks?limit=0").status == 422
    assert http_get(srv.port, "/tasks?limit=101").status == 422
    assert http_get(srv.port, "/tasks?status=bogus").status == 422
    assert http_get(srv.port, "/tasks?cursor=!!").status == 422


def test_cancel_in_each_state(server):
    pending = submit(server.port, {"type": "sleep", "delay_s": 60}).json()["task_id"]
    resp = post_json(server.port, f"/tasks/{pending}/cancel", {})
    assert resp.status == 200 and resp.json()["status"] == "cancelled"

    running = submit(server.port, {"type": "sleep", "payload": {"steps": 100, "seconds": 0.1}})
    rid = running.json()["task_id"]
    wait_status(server.port, rid, {"running"})
    resp = post_json(server.port, f"/tasks/{rid}/cancel", {})
    assert resp.status == 200 and resp.json()["cancel_requested"] is True
    assert wait_status(server.port, rid, {"cancelled", "completed", "failed"})["status"] == "cancelled"

    resp = post_json(server.port, f"/tasks/{rid}/cancel", {})
    assert resp.status == 409


def test_retries_until_success_and_until_failure(start_server, tmp_path):
    script = tmp_path / "flaky.sh"
    script.write_text('n=$(cat "$1" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$1"; '
                      '[ $n -ge 3 ] && echo ok && exit 0; echo "try $n"; exit 1\n')
    counter = tmp_path / "count"
    srv = start_server("--retry-backoff-s", "0.05", "--exec", f"flaky=/bin/sh {script}",
                       "--exec", "false=/bin/false")
    ok = submit(srv.port, {"type": "exec", "max_retries": 3,
                           "payload": {"command": "flaky", "args": [str(counter)]}}).json()
    t = wait_status(srv.port, ok["task_id"], {"completed", "failed"})
    assert t["status"] == "completed" and t["attempts"] == 3, t
    assert t["result"]["output"] == "ok\n"

    bad = submit(srv.port, {"type": "exec", "max_retries": 2, "payload": {"command": "false"}})
    t = wait_status(srv.port, bad.json()["task_id"], {"completed", "failed"})
    assert t["status"] == "failed" and t["attempts"] == 3, t
    assert t["error"].startswith("exit code 1")


def test_timeouts_stop_the_attempt_and_kill_the_process(start_server):
    srv = start_server("--exec", "sleeper=/bin/sleep")
    t = submit(srv.port, {"type": "sleep", "timeout_s": 0.3,
                          "payload": {"steps": 10, "seconds": 1}}).json()
    t = wait_status(srv.port, t["task_id"], {"failed", "completed"}, timeout=5)
    assert t["status"] == "failed" and t["error"] == "timed out"

    started = time.monotonic()
    t = submit(srv.port, {"type": "exec", "timeout_s": 0.3,
                          "payload": {"command": "sleeper", "args": ["37"]}}).json()
    t = wait_status(srv.port, t["task_id"], {"failed", "completed"}, timeout=5)
    assert t["status"] == "failed" and t["error"] == "timed out"
    assert time.monotonic() - started < 3
    left = subprocess.run(["pgrep", "-f", "^/bin/sleep 37$"], capture_output=True)
    assert left.returncode != 0, "the timed-out command still runs"


def test_idempotency_key_returns_the_first_task(server):
    h = {"Idempotency-Key": f"key-{time.monotonic()}"}
    first = submit(server.port, {"type": "noop"}, h)
    again = submit(server.port, {"type": "noop"}, h)
    assert first.status == again.status == 201
    assert first.json()["task_id"] == again.json()["task_id"]
    assert again.header("Idempotent-Replayed") == "true"
    assert first.header("Idempotent-Replayed") is None


def test_higher_priority_runs_first(start_server):
    srv = start_server("--job-workers", "1")
    blocker = submit(srv.port, {"type": "sleep", "payload": {"steps": 1, "seconds": 0.5}})
    wait_status(srv.port, blocker.json()["task_id"], {"running"})
    low = submit(srv.port, {"type": "noop", "priority": -5}).json()["task_id"]
    high = submit(srv.port, {"type": "noop", "priority": 5}).json()["task_id"]
    lo = wait_status(srv.port, low, {"completed"})
    hi = wait_status(srv.port, high, {"completed"})
    assert hi["started_at"] <= lo["started_at"]


def test_delay_holds_a_job_back(server):
    t = submit(server.port, {"type": "noop", "delay_s": 1.0}).json()
    time.sleep(0.5)
    assert task(server.port, t["task_id"])["status"] == "pending"
    wait_status(server.port, t["task_id"], {"completed"}, timeout=5)


def test_schedules_enqueue_once_per_period_even_across_a_restart(start_server, tmp_path):
    data = tmp_path / "sched-data"
    every1 = start_server("--schedule", "noop every 1s {}", "--data-dir", str(data),
                          add_data_dir=False)
    time.sleep(3.5)
    n = len(http_get(every1.port, "/tasks?limit=100").json()["items"])
    assert 3 <= n <= 5, n
    every1.stop()

    data2 = tmp_path / "sched-data2"
    for _ in range(2):
        srv = start_server("--schedule", "hash every 1h {\"data\": \"x\"}", "--data-dir",
                           str(data2), add_data_dir=False)
        time.sleep(0.5)
        srv.stop()
    srv = start_server("--data-dir", str(data2), add_data_dir=False)
    items = http_get(srv.port, "/tasks?limit=100").json()["items"]
    assert len(items) == 1 and items[0]["type"] == "hash"


def test_server_sent_events_follow_a_job_to_its_end(server):
    t = submit(server.port, {"type": "sleep", "payload": {"steps": 3, "seconds": 0.2}}).json()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", f"/tasks/{t['task_id']}/events")
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("Content-Type") == "text/event-stream"
    events = []
    for block in resp.read().decode().split("\n\n"):
        lines = dict(l.split(": ", 1) for l in block.splitlines() if ": " in l)
        if "data" in lines:
            assert lines["event"] == "task"
            events.append(json.loads(lines["data"]))
    conn.close()
    assert events[-1]["status"] == "completed"
    currents = [e["progress"]["current"] for e in events]
    assert currents == sorted(currents) and currents[-1] == 3
    assert len(events) >= 3
    assert http_get(server.port, "/tasks/999999/events").status == 404


def test_progress_reaches_the_task_room(server):
    import asyncio
    import websockets

    async def watch():
        t = submit(server.port, {"type": "sleep", "delay_s": 0.5,
                                 "payload": {"steps": 2, "seconds": 0.1}}).json()
        url = f"ws://127.0.0.1:{server.port}/ws/task:{t['task_id']}/watcher"
        async with websockets.connect(url) as ws:
            seen = []
            while True:
                f = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if f["type"] == "task":
                    seen.append(f["task"]["status"])
                    if f["task"]["status"] == "completed":
                        return seen
    seen = asyncio.run(watch())
    assert "running" in seen and seen[-1] == "completed"


def test_background_tasks_write_after_the_response(server):
    resp = post_json(server.port, "/send-notification/someone@example.com", {})
    assert resp.status == 200
    assert resp.json() == {"message": "Notification sent in the background"}
    log = server.data_dir / "notifications.log"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (log.exists() and "someone@example.com" in log.read_text()):
        time.sleep(0.05)
    assert "notification to someone@example.com" in log.read_text()
    assert post_json(server.port, "/send-notification/not-an-email", {}).status == 422

    assert post_json(server.port, "/broadcast", {"room": "logged", "message": "hi there"}).status == 200
    mlog = server.data_dir / "messages.log"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (mlog.exists() and "hi there" in mlog.read_text()):
        time.sleep(0.05)
    assert "logged hi there" in mlog.read_text()


def test_metrics_count_jobs_by_status(server):
    t = submit(server.port, {"type": "noop"}).json()
    wait_status(server.port, t["task_id"], {"completed"})
    text = http_get(server.port, "/metrics").body.decode()
    assert 'roost_jobs{status="completed"}' in text
    assert 'roost_job_events_total{event="submitted"}' in text


def _submit_many(port, n, body):
    """n submissions over one keep-alive connection; the ids that got 201."""
    ids = []
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(n):
            conn.request("POST", "/tasks", json.dumps(body), {"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
            if r.status == 201:
                ids.append(json.loads(data)["task_id"])
    except (OSError, http.client.HTTPException):
        pass  # the server was killed under us
    return ids


@pytest.mark.deadline(150)
def test_kill_9_loses_no_accepted_job(start_server, tmp_path):
    data = tmp_path / "crash-data"
    srv = start_server("--job-workers", "4", "--data-dir", str(data), add_data_dir=False)
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        futs = [pool.submit(_submit_many, srv.port, 400,
                            {"type": "sleep", "payload": {"steps": 1, "seconds": 0.01}}
                            if i % 2 else {"type": "noop"})
                for i in range(32)]
        time.sleep(2.0)
        srv.proc.kill()  # kill -9 with submissions, pending and running jobs in flight
        srv.proc.wait()
        accepted = {tid for f in futs for tid in f.result()}
    assert len(accepted) > 500
    again = start_server("--job-workers", "4", "--data-dir", str(data), add_data_dir=False)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        left = sum(len(http_get(again.port, f"/tasks?status={s}&limit=1").json()["items"])
                   for s in ("pending", "running"))
        if not left:
            break
        time.sleep(0.5)
    rows, cursor = {}, None
    while True:
        page = http_get(again.port, "/tasks?limit=100" + (f"&cursor={cursor}" if cursor else "")).json()
        rows.update({t["task_id"]: t for t in page["items"]})
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    missing = accepted - rows.keys()
    assert not missing, f"{len(missing)} accepted tasks were lost"
    not_done = [t for t in rows.values() if t["status"] != "completed"]
    assert not not_done, not_done[:3]
    rerun = [t for t in rows.values() if t["attempts"] > 1]
    assert all(t["attempts"] == 2 for t in rerun)
    assert len(rerun) <= 4, "only jobs running at the crash (4 workers) may run twice"


def test_sigterm_lets_running_jobs_finish_and_keeps_the_rest(start_server, tmp_path):
    data = tmp_path / "drain-data"
    srv = start_server("--job-workers", "1", "--drain-s", "5", "--data-dir", str(data),
                       add_data_dir=False)
    running = submit(srv.port, {"type": "sleep", "payload": {"steps": 2, "seconds": 0.5}}).json()
    waiting = submit(srv.port, {"type": "noop"}).json()
    wait_status(srv.port, running["task_id"], {"running"})
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(10) == 0
    again = start_server("--job-workers", "1", "--data-dir", str(data), add_data_dir=False)
    t = task(again.port, running["task_id"])
    assert t["status"] == "completed" and t["attempts"] == 1
    wait_status(again.port, waiting["task_id"], {"completed"})
