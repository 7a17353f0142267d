"""The worker pool is bounded: with every worker busy and the queue full, a blocking route answers
503 at once instead of waiting. Below that bound it grows on demand and shrinks when idle."""

import asyncio
import threading
import time
from pathlib import Path

import pytest

from conftest import metric_sum
from test_concurrency import fire, summarize


def test_full_worker_pool_answers_503(start_server):
    srv = start_server("--threads", "2", "--workers", "1", "--worker-queue", "1")
    results = [None] * 5

    def run(i):
        t0 = time.monotonic()
        try:
            resp = srv.get("/slow-sync?seconds=1", timeout=10.0)
            results[i] = (resp, time.monotonic() - t0)
        except Exception as e:  # reported below with the others
            results[i] = (e, time.monotonic() - t0)

    threads = []
    for i in range(5):
        t = threading.Thread(target=run, args=(i,))
        t.start()
        threads.append(t)
        time.sleep(0.1)  # a defined order: 0 takes the worker, 1 the queue slot
    for t in threads:
        t.join()

    summary = [(getattr(r, "status", r), round(e, 2)) for r, e in results]
    statuses = [getattr(r, "status", None) for r, _ in results]
    assert statuses[0] == 200 and statuses[1] == 200, summary
    assert 503 in statuses[2:], summary
    assert set(statuses) <= {200, 503}, summary
    for resp, elapsed in results:
        if resp.status == 503:
            assert resp.header("Content-Type", "").startswith("application/json"), resp
            assert isinstance(resp.json().get("detail"), str), resp
            assert elapsed < 0.9, f"503 took {elapsed:.2f} s: overload must be answered at once"
    # The pool recovers once the work is done.
    resp = srv.get("/slow-sync?seconds=0.1")
    assert resp.status == 200, resp


def test_worker_queue_rejections_are_counted(start_server):
    srv = start_server("--threads", "2", "--workers", "1", "--worker-queue", "1")
    before = metric_sum(srv.metrics(), "roost_limit_hits_total", limit="worker_queue")
    results = []
    lock = threading.Lock()

    def run():
        resp = srv.get("/slow-sync?seconds=0.5", timeout=10.0)
        with lock:
            results.append(resp.status)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join()
    rejected = results.count(503)
    assert rejected >= 1, results
    after = metric_sum(srv.metrics(), "roost_limit_hits_total", limit="worker_queue")
    assert after - before >= rejected


def test_async_routes_are_served_while_workers_are_busy(start_server):
    """A full pool blocks only blocking routes: loop routes still answer."""
    srv = start_server("--threads", "2", "--workers", "1", "--worker-queue", "1")
    busy = [threading.Thread(target=srv.get, args=("/slow-sync?seconds=1.5",),
                             kwargs={"timeout": 10.0}) for _ in range(2)]
    for t in busy:
        t.start()
        time.sleep(0.1)
    t0 = time.monotonic()
    assert srv.get("/plaintext").status == 200
    resp = srv.get("/slow-async?seconds=0.2")
    assert resp.status == 200, resp
    assert time.monotonic() - t0 < 1.0
    for t in busy:
        t.join()


# --------------------------------------------------------------------------------------------
# Growth on demand and shrinking after idleness (--workers, --workers-min, --workers-idle-s)


def thread_names(pid):
    """The names of the process's threads, from /proc/PID/task/*/comm."""
    names = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            names.append((task / "comm").read_text().strip())
        except FileNotFoundError:  # a thread that ended while we looked
            pass
    return names


def worker_threads(pid):
    return sum(1 for n in thread_names(pid) if n.startswith("roost-worker-"))


@pytest.mark.deadline(60)
def test_hundred_blocking_calls_finish_together_with_default_flags(start_server):
    """No --workers: the pool grows to take every blocking call at once, as a thread pool
    sized for the seeds' load would, instead of queueing them behind a few workers."""
    srv = start_server()
    request = b"GET /slow-sync?seconds=3 HTTP/1.1\r\nHost: t\r\n\r\n"
    t0, outcomes = asyncio.run(fire(srv.port, 100, request, batch=100, settle_s=0.2, wait_s=15))
    kinds, last = summarize(t0, outcomes)
    assert kinds == {200: 100}, f"outcomes: {dict(kinds)}"
    assert last <= 3.5, f"the last of 100 answers came {last:.2f} s after the first send"
    text = srv.metrics()
    assert metric_sum(text, "roost_worker_threads_started_total") >= 100
    assert metric_sum(text, "roost_limit_hits_total", limit="worker_queue") == 0


@pytest.mark.deadline(60)
def test_idle_server_shrinks_back_to_workers_min(start_server):
    srv = start_server("--threads", "2", "--workers-min", "2", "--workers-idle-s", "0.5")
    pid = srv.proc.pid
    assert worker_threads(pid) == 2, thread_names(pid)  # only the minimum while idle
    before = len(thread_names(pid))
    request = b"GET /slow-sync?seconds=1 HTTP/1.1\r\nHost: t\r\n\r\n"
    _, outcomes = asyncio.run(fire(srv.port, 20, request, batch=20, settle_s=0.2, wait_s=10))
    kinds, _ = summarize(time.monotonic(), outcomes)
    assert kinds == {200: 20}, f"outcomes: {dict(kinds)}"
    text = srv.metrics()
    assert metric_sum(text, "roost_worker_threads") >= 19, "the pool did not grow"
    deadline = time.monotonic() + 10
    while worker_threads(pid) > 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert worker_threads(pid) == 2, thread_names(pid)
    assert len(thread_names(pid)) <= before, (before, thread_names(pid))
    text = srv.metrics()
    assert metric_sum(text, "roost_worker_threads") == 2
    assert metric_sum(text, "roost_worker_threads_retired_total") >= 17
    # It grows again after shrinking.
    resp = srv.get("/slow-sync?seconds=0.1")
    assert resp.status == 200, resp
