"""Jobs across nodes (issue 16): three roost processes on one PostgreSQL share the job queue.
Jobs submitted on one node run on all three, once each; a node killed with -9 has its running
jobs re-run elsewhere once their lease expires (attempts exact); a node that stalls past its
lease (SIGSTOP) cannot complete the job afterwards (fencing token); schedules fire once per
period; concurrency keys and type rates hold across nodes; an SSE watcher on one node sees the
progress of a job running on another. Each test builds its own cluster on a fresh database."""

import http.client
import json
import signal
import time
from datetime import datetime

import pytest

from conftest import RoostServer, metric_sum
from pgserver import pg, wait_until  # noqa: F401

LEASE_S = 2


@pytest.fixture
def cluster(pg, tmp_path):  # noqa: F811
    """start(n, *args): n nodes on one fresh database; all stopped at the end."""
    nodes = []
    url = pg.url(pg.create_database())

    def start(n=3, *args):
        new = [RoostServer(tmp_path / f"node{len(nodes) + i}",
                           ["--database", url, "--job-lease-s", str(LEASE_S), "--threads", "1",
                            *args])
               for i in range(n)]
        nodes.extend(new)
        for node in new:
            node.wait_ready()
        return new

    yield start
    for node in nodes:
        if node.alive():
            node.signal(signal.SIGCONT)
        node.stop()
        assert node.sanitizer_report() is None, node.sanitizer_report()


def submit(node, body):
    resp = node.post_json("/tasks", body)
    assert resp.status == 201, (resp.status, resp.text)
    return resp.json()["task_id"]


def task(node, tid):
    resp = node.get(f"/tasks/{tid}")
    assert resp.status == 200, resp
    return resp.json()


def all_final(node, ids, timeout):
    def check():
        tasks = [task(node, t) for t in ids]
        return tasks if all(t["status"] in ("completed", "failed", "cancelled")
                            for t in tasks) else None
    tasks = wait_until(check, timeout=timeout, interval=0.2)
    assert tasks, f"not all of {len(ids)} tasks finished in {timeout}s"
    return tasks


def started(node):
    return metric_sum(node.metrics(), "roost_job_events_total", event="started")


def ms(iso):
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp() * 1000


def sleep_job(steps, seconds, **extra):
    return {"type": "sleep", "payload": {"steps": steps, "seconds": seconds}, **extra}


def test_jobs_submitted_on_one_node_run_on_all_three_once_each(cluster):
    nodes = cluster(3, "--job-workers", "2", "--job-prefetch", "0")
    ids = [submit(nodes[0], sleep_job(1, 0.1)) for _ in range(60)]
    tasks = all_final(nodes[1], ids, timeout=20)
    assert [t["status"] for t in tasks] == ["completed"] * 60
    assert all(t["attempts"] == 1 for t in tasks), [t["attempts"] for t in tasks]
    per_node = [started(n) for n in nodes]
    assert sum(per_node) == 60, per_node  # none run twice
    assert all(n > 0 for n in per_node), per_node  # every node took some


def test_a_killed_nodes_jobs_run_again_elsewhere_after_the_lease(cluster):
    a, = cluster(1, "--job-workers", "4")
    # Submitted while a has free workers: a holds them at once (stored reserved by a).
    ids = [submit(a, sleep_job(30, 0.1)) for _ in range(3)]
    assert wait_until(lambda: all(task(a, t)["status"] == "running" for t in ids), timeout=5)
    b, c = cluster(2, "--job-workers", "4")
    a.kill()  # kill -9: its leases are no longer renewed
    killed = time.monotonic()
    tasks = all_final(b, ids, timeout=LEASE_S + 15)
    assert time.monotonic() - killed >= LEASE_S - 0.5  # not before the lease expired
    assert [t["status"] for t in tasks] == ["completed"] * 3
    assert [t["attempts"] for t in tasks] == [2, 2, 2]  # the killed attempt and the new one
    rescued = sum(metric_sum(n.metrics(), "roost_jobs_lease_rescued_total") for n in (b, c))
    assert rescued == 3


def test_a_stalled_node_cannot_complete_the_job_it_lost(cluster):
    a, = cluster(1, "--job-workers", "2")
    tid = submit(a, sleep_job(10, 0.2))
    assert wait_until(lambda: task(a, tid)["status"] == "running", timeout=5)
    b, = cluster(1, "--job-workers", "2")
    a.signal(signal.SIGSTOP)  # alive, but renews nothing
    done = all_final(b, [tid], timeout=LEASE_S + 15)[0]
    assert done["status"] == "completed" and done["attempts"] == 2
    assert metric_sum(b.metrics(), "roost_jobs_lease_rescued_total") == 1
    a.signal(signal.SIGCONT)  # a's attempt goes on, and its writes must change nothing
    assert wait_until(lambda: metric_sum(a.metrics(), "roost_jobs_fenced_total") >= 1, timeout=5)
    assert a.wait_for_stderr(lambda line: f"task {tid}: its lease expired" in line, timeout=2)
    time.sleep(0.5)
    after = task(b, tid)
    assert (after["status"], after["attempts"], after["result"]) == \
        ("completed", 2, done["result"])
    assert metric_sum(a.metrics(), "roost_job_events_total", event="completed") == 0


def test_a_schedule_fires_once_per_period_with_three_nodes(cluster):
    nodes = cluster(3, "--schedule", "noop every 1s {\"tick\": 1}")
    time.sleep(4.5)
    resp = nodes[2].get("/tasks?limit=100")
    items = resp.json()
    items = items["items"] if isinstance(items, dict) else items
    ticks = [t for t in items if t["type"] == "noop"]
    seconds = [int(ms(t["created_at"]) // 1000) for t in ticks]
    assert len(seconds) == len(set(seconds)), sorted(seconds)  # never twice in one period
    assert 3 <= len(ticks) <= 6, sorted(seconds)  # and every period fires
    leaders = [n for n in nodes
               if n.wait_for_stderr(lambda line: "is now the schedules' leader" in line, 0.1)]
    assert len(leaders) == 1


def test_concurrency_keys_and_type_rates_hold_across_nodes(cluster):
    nodes = cluster(3, "--job-workers", "4")
    keyed = [submit(nodes[i % 3], sleep_job(1, 0.3, concurrency_key="acct-7")) for i in range(6)]
    ticks = [submit(nodes[i % 3], {"type": "tick", "payload": {"steps": 1, "seconds": 0.01}})
             for i in range(15)]
    runs = sorted((ms(t["started_at"]), ms(t["completed_at"]))
                  for t in all_final(nodes[0], keyed, timeout=20))
    for (_, end), (start, _) in zip(runs, runs[1:]):
        assert start >= end, runs  # key limit 1: never two of acct-7 at once, on any node
    starts = sorted(ms(t["started_at"]) for t in all_final(nodes[0], ticks, timeout=20))
    # 5 per second: 15 starts need three one-second windows, so they span more than a second
    # (without the rate: a few ms)
    assert starts[-1] - starts[0] >= 1000, starts
    per_second = {}
    for s in starts:
        per_second[int(s // 1000)] = per_second.get(int(s // 1000), 0) + 1
    # a claim counts in its second; its start may fall a few ms into the next one
    assert max(per_second.values()) <= 6, per_second


def test_progress_on_one_node_reaches_an_sse_watcher_on_another(cluster):
    a, b = cluster(2, "--job-workers", "2")
    tid = submit(a, sleep_job(5, 0.3))
    conn = http.client.HTTPConnection("127.0.0.1", b.port, timeout=10)
    conn.request("GET", f"/tasks/{tid}/events")
    resp = conn.getresponse()
    assert resp.status == 200
    states = []
    while not states or states[-1]["status"] != "completed":
        line = resp.fp.readline().decode()
        assert line, states
        if line.startswith("data: "):
            states.append(json.loads(line[6:]))
    conn.close()
    steps = {s["progress"]["current"] for s in states if s["status"] == "running"}
    assert steps & {1, 2, 3, 4}, states  # progress seen while it ran, not only the end
    assert started(a) == 1 and started(b) == 0  # it ran on a, was watched on b


def test_postgresql_down_refuses_submissions_and_the_queue_resumes(cluster, pg):  # noqa: F811
    a, = cluster(1, "--job-workers", "2")
    before = submit(a, sleep_job(3, 0.2))
    pg.stop("fast")  # (the test cluster runs without fsync: a crash would lose its commits)
    try:
        down = a.post_json("/tasks", {"type": "noop"}, timeout=15)
        assert down.status == 503, down  # refused at once, not stored, not hanging
        assert a.get("/healthz").status == 200
    finally:
        pg.start()
    assert wait_until(lambda: a.post_json("/tasks", {"type": "noop"}).status == 201, timeout=10,
                      interval=0.3)
    tasks = all_final(a, [before], timeout=LEASE_S + 15)  # a lost finish runs again after the lease
    assert tasks[0]["status"] == "completed"
