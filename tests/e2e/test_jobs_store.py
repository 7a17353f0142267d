"""The job store on the data layer (src/jobs/store.c): the queue and the application's data
share the pool of <data-dir>/roost.db, one file with both schemas. A pool of one connection
serves both (the dispatcher gives its connection back after each batch), and the tasks live
beside the users in the same database."""

import sqlite3
import time
import uuid


def wait_final(srv, tid, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t = srv.get(f"/tasks/{tid}").json()
        if t["status"] in ("completed", "failed", "cancelled"):
            return t
        time.sleep(0.05)
    raise AssertionError(f"task {tid} did not end: {t}")


def test_jobs_and_data_share_a_pool_of_one_connection(start_server):
    srv = start_server("--threads", "1", "--db-pool-size", "1", "--db-pool-overflow", "0",
                       "--db-pool-timeout-s", "5")
    ids = []
    for i in range(5):
        resp = srv.post_json("/tasks", {"type": "hash", "payload": {"data": f"x{i}", "rounds": 2}})
        assert resp.status == 201, resp
        ids.append(resp.json()["task_id"])
        t = uuid.uuid4().hex[:8]
        user = srv.post_json("/users", {"username": f"u_{t}", "email": f"{t}@ex.io"})
        assert user.status == 201, user
    for tid in ids:
        assert wait_final(srv, tid)["status"] == "completed"
    pool = srv.get("/db/pool").json()
    assert pool["size"] == 1 and pool["checked_out"] == 0, pool
    listed = srv.get("/tasks?limit=10").json()
    assert {t["task_id"] for t in listed["items"]} >= set(ids)


def test_tasks_and_users_are_in_one_database_file(start_server):
    srv = start_server("--threads", "1")
    tid = srv.post_json("/tasks", {"type": "noop"}).json()["task_id"]
    wait_final(srv, tid)
    t = uuid.uuid4().hex[:8]
    assert srv.post_json("/users", {"username": f"v_{t}", "email": f"{t}@ex.io"}).status == 201
    srv.stop()
    con = sqlite3.connect(srv.data_dir / "roost.db")
    try:
        versions = {name: con.execute(f"SELECT max(version) FROM {name}_schema").fetchone()[0]
                    for name in ("jobs", "data")}
        # jobs 4: leases, fencing tokens, concurrency keys; data 2: items
        assert versions == {"jobs": 4, "data": 2}, versions
        assert con.execute("SELECT status FROM tasks WHERE id = ?", (tid,)).fetchone() == (2,)
    finally:
        con.close()
