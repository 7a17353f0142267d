"""The data layer around the endpoints: GET /db/pool and the pool gauges on /metrics, the
--database and --db-pool-* flags, migrations applied once and kept across restarts, and a
PostgreSQL restarted under a running roost: 503 with Retry-After during the outage, then
answers again without restarting roost."""

import json
import sqlite3
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import assert_json_detail, metric_sum
from pgserver import PgServer, db_server, engine, engine_flags, pg, wait_until  # noqa: F401


def engine_args(engine, pg_server):
    if engine == "sqlite":
        return []
    return ["--database", pg_server.url(pg_server.create_database())]


def test_pool_status_has_the_seed_shape(db_server, engine):
    resp = db_server.get("/db/pool")
    assert resp.status == 200, resp
    body = resp.json()
    assert {"engine", "size", "checked_in", "checked_out", "overflow"} <= set(body)
    assert body["engine"] == engine
    assert body["size"] == 10 and body["max_overflow"] == 10  # the defaults
    assert body["checked_out"] == 0
    assert 0 <= body["checked_in"] <= body["size"]
    assert body["overflow"] == 0


def test_pool_flags_shape_the_pool_under_load(start_server, engine, request):
    args = engine_args(engine, request.getfixturevalue("pg") if engine != "sqlite" else None)
    srv = start_server("--threads", "2", "--db-pool-size", "2", "--db-pool-overflow", "3",
                       "--db-pool-timeout-s", "5", *args)
    body = srv.get("/db/pool").json()
    assert (body["engine"], body["size"], body["max_overflow"]) == (engine, 2, 3)
    t = uuid.uuid4().hex[:8]
    uid = srv.post_json("/users", {"username": f"p_{t}", "email": f"p.{t}@ex.io"}).json()["id"]

    def hit(_):
        return srv.get(f"/users/{uid}").status

    with ThreadPoolExecutor(max_workers=24) as ex:
        statuses = list(ex.map(hit, range(300)))
    assert set(statuses) == {200}
    body = srv.get("/db/pool").json()
    # overflow connections are closed when given back: at most `size` stay
    assert body["checked_out"] == 0 and body["overflow"] == 0 and body["checked_in"] <= 2
    text = srv.metrics()
    assert metric_sum(text, "roost_db_pool_size", engine=engine) == 2
    assert metric_sum(text, "roost_db_pool_checked_out", engine=engine) == 0
    assert metric_sum(text, "roost_db_pool_events_total", engine=engine, event="connect") >= 1


@pytest.mark.deadline(120)
def test_no_connection_within_the_pool_timeout_is_503(start_server, engine, request):
    """One connection, no overflow, 50 ms to get it: long transactions from 8 clients at once
    leave some requests without a connection in time; they get 503 and Retry-After, the others
    succeed, and the pool ends empty-handed (nothing leaked)."""
    args = engine_args(engine, request.getfixturevalue("pg") if engine != "sqlite" else None)
    srv = start_server("--threads", "2", "--db-pool-size", "1", "--db-pool-overflow", "0",
                       "--db-pool-timeout-s", "0.05", *args)
    ops = {"operations": [{"op": "create_account", "data": {"owner": "t", "balance": 1}}] * 400}

    def run(_):
        return srv.post_json("/batch", ops, timeout=60)

    with ThreadPoolExecutor(max_workers=8) as ex:
        answers = list(ex.map(run, range(24)))
    statuses = {r.status for r in answers}
    assert statuses == {200, 503}, statuses
    for r in answers:
        if r.status == 503:
            assert_json_detail(r, 503)
            assert r.header("Retry-After") == "1"
    assert metric_sum(srv.metrics(), "roost_db_pool_events_total", event="timeout") >= 1
    body = srv.get("/db/pool").json()
    assert body["checked_out"] == 0 and body["checked_in"] == 1 and body["overflow"] == 0


def test_help_lists_the_data_flags(run_roost):
    out = run_roost("--help").stdout
    for flag in ("--database", "--db-pool-size", "--db-pool-overflow", "--db-pool-timeout-s"):
        assert flag in out


@pytest.mark.parametrize("args", [
    ["--database", "mysql://localhost/x"],
    ["--database", "sqlite::memory:"],
    ["--db-pool-size", "0"],
    ["--db-pool-overflow", "-1"],
    ["--db-pool-timeout-s", "0"],
])
def test_bad_data_flags_stop_the_start(run_roost, args):
    res = run_roost(*args, "--port", "0")
    assert res.returncode != 0
    assert "roost" in res.stderr or "data" in res.stderr


def test_unreachable_postgresql_at_start_is_an_error(run_roost):
    from conftest import free_port
    res = run_roost("--port", "0", "--database",
                    f"postgresql://postgres@127.0.0.1:{free_port()}/nope", timeout=30)
    assert res.returncode != 0
    assert "cannot connect" in res.stderr


def test_sqlite_path_flag_and_migrations_survive_a_restart(start_server, tmp_path):
    db_file = tmp_path / "elsewhere" / "app.db"
    srv = start_server("--threads", "1", "--database", f"sqlite:{db_file}")
    t = uuid.uuid4().hex[:8]
    user = srv.post_json("/users", {"username": f"keep_{t}", "email": f"k.{t}@ex.io"}).json()
    srv.stop()
    again = start_server("--threads", "1", "--database", f"sqlite:{db_file}")
    assert again.get(f"/users/{user['id']}").json() == user
    assert "applied migration" not in again.stderr()
    con = sqlite3.connect(db_file)
    try:
        assert con.execute("SELECT version FROM data_schema").fetchall() == [(1,), (2,)]
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        con.close()


def test_two_servers_share_one_postgresql_database(start_server, pg):
    url = pg.url(pg.create_database())
    a = start_server("--threads", "1", "--database", url)
    b = start_server("--threads", "1", "--database", url)
    t = uuid.uuid4().hex[:8]
    user = a.post_json("/users", {"username": f"sh_{t}", "email": f"sh.{t}@ex.io"}).json()
    assert b.get(f"/users/{user['id']}").json() == user
    # each migration applied once though two servers started on it (two: users, then items)
    assert pg.psql("SELECT count(*) FROM data_schema", db=url.rsplit("/", 1)[1]) == "2"
    conflict = b.post_json("/users", {"username": f"sh_{t}", "email": f"x.{t}@ex.io"})
    assert_json_detail(conflict, 409)


@pytest.mark.deadline(180)
def test_postgresql_restart_gives_503_then_recovers_without_restarting_roost(start_server):
    cluster = PgServer().start()
    try:
        url = cluster.url(cluster.create_database())
        srv = start_server("--threads", "2", "--database", url, "--db-pool-size", "12")
        t = uuid.uuid4().hex[:8]
        user = srv.post_json("/users", {"username": f"r_{t}", "email": f"r.{t}@ex.io"}).json()
        acc = srv.post_json("/accounts", {"owner": "r", "balance": 10}).json()
        # Several pooled connections, more than the requests made during the outage below:
        # transactions run on workers, each holding a connection.
        ops = {"operations": [{"op": "delete_user", "id": 987654321}] * 50}
        with ThreadPoolExecutor(max_workers=24) as ex:
            assert set(ex.map(lambda _: srv.post_json("/batch", ops).status,
                              range(300))) == {200}
        assert srv.get("/db/pool").json()["checked_in"] >= 7

        cluster.stop("fast")
        during = [
            srv.get(f"/users/{user['id']}"),
            srv.get("/users?limit=5"),
            srv.post_json("/users", {"username": f"d_{t}", "email": f"d.{t}@ex.io"}),
            srv.post_json("/transfer", {"from_account": acc["id"], "to_account": acc["id"] + 1,
                                        "amount": 1}),
            srv.post_json("/batch", {"operations": [{"op": "delete_user", "id": 1}]}),
        ]
        for resp in during:
            assert_json_detail(resp, 503)
            assert resp.header("Retry-After") == "1"
        assert srv.get("/healthz").status == 200
        status = srv.get("/db/pool")
        assert status.status == 200 and status.json()["checked_out"] == 0

        cluster.start()  # waits until it accepts connections
        # The first request after the outage already works: no stale connection is handed out.
        assert srv.get(f"/users/{user['id']}").json() == user
        with ThreadPoolExecutor(max_workers=8) as ex:
            assert set(ex.map(lambda _: srv.get(f"/users/{user['id']}").status,
                              range(100))) == {200}
        created = srv.post_json("/users", {"username": f"a_{t}", "email": f"a.{t}@ex.io"})
        assert created.status == 201, created
        text = srv.metrics()
        assert metric_sum(text, "roost_db_pool_events_total", event="connect_error") >= 1
        assert metric_sum(text, "roost_db_pool_events_total", event="broken") >= 1
        assert srv.alive()
    finally:
        cluster.cleanup()


@pytest.mark.deadline(120)
def test_postgresql_backends_killed_under_load_only_fail_their_requests(start_server, pg):
    """pg_terminate_backend on every roost connection mid-load: requests fail with 503 at
    worst, never hang, and the pool heals by itself."""
    dbname = pg.create_database()
    srv = start_server("--threads", "2", "--database", pg.url(dbname))
    t = uuid.uuid4().hex[:8]
    uid = srv.post_json("/users", {"username": f"k_{t}", "email": f"k.{t}@ex.io"}).json()["id"]
    stop = time.monotonic() + 3

    def load(_):
        seen = set()
        while time.monotonic() < stop:
            seen.add(srv.get(f"/users/{uid}", timeout=10).status)
        return seen

    with ThreadPoolExecutor(max_workers=8) as ex:
        futures = [ex.submit(load, i) for i in range(8)]
        for _ in range(5):
            time.sleep(0.4)
            pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE datname = '{dbname}' AND pid <> pg_backend_pid()")
        seen = set().union(*(f.result() for f in futures))
    assert seen <= {200, 503}, seen
    assert 200 in seen
    for _ in range(20):
        assert srv.get(f"/users/{uid}").status == 200
    assert json.loads(srv.get("/db/pool").body)["checked_out"] == 0
