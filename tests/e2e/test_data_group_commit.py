"""Group commit of the data writes (src/db/db_group.c), on both engines: many concurrent
POST /users all answered 201 and all readable afterwards, with the group counters showing that
ops shared commits; a concurrent batch where some usernames and emails collide answers 409 for
exactly those (with the usual detail) and 201 for the others; 32 clients racing to create the
same two usernames get one 201 each and 409s, never a 503; and on a PostgreSQL that keeps its
commits (synchronous_commit on), every 201 answered before roost and then PostgreSQL were killed
is there after both restart."""

import concurrent.futures
import http.client
import itertools
import json
import random
import threading
import time
import uuid

import pytest

from conftest import metric_sum
from pgserver import PgServer, db_server, engine, engine_flags, pg  # noqa: F401 (fixtures)

THREADS = 32


def tag():
    return uuid.uuid4().hex[:10]


def user_body(t):
    return {"username": f"g_{t}", "email": f"{t}@group.example", "full_name": f"Group {t}"}


def post_all(port, bodies, threads=THREADS):
    """POSTs every body to /users from `threads` keep-alive connections at once; returns
    [(status, json)] in the order of bodies."""
    results = [None] * len(bodies)
    order = itertools.count()
    lock = threading.Lock()

    def run():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            while True:
                with lock:
                    i = next(order)
                if i >= len(bodies):
                    return
                conn.request("POST", "/users", json.dumps(bodies[i]),
                             {"Content-Type": "application/json"})
                resp = conn.getresponse()
                results[i] = (resp.status, json.loads(resp.read() or b"null"))
        finally:
            conn.close()

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(run) for _ in range(threads)]:
            f.result(timeout=120)
    return results


def group_counters(srv):
    text = srv.metrics()
    return (metric_sum(text, "roost_db_group_commits_total"),
            metric_sum(text, "roost_db_grouped_ops_total"))


def assert_stored(srv, user):
    again = srv.get(f"/users/{user['id']}")
    assert again.status == 200, again
    assert again.json() == user


def test_concurrent_creates_all_201_readable_and_share_commits(db_server):
    commits0, ops0 = group_counters(db_server)
    bodies = [user_body(tag()) for _ in range(600)]
    results = post_all(db_server.port, bodies)
    bad = [r for r in results if r[0] != 201]
    assert not bad, bad[:5]
    users = [r[1] for r in results]
    assert len({u["id"] for u in users}) == len(users)
    for body, user in zip(bodies, users):
        assert (user["username"], user["email"]) == (body["username"], body["email"])
        assert_stored(db_server, user)
    commits, ops = group_counters(db_server)
    assert ops - ops0 >= len(bodies)
    assert commits > commits0
    # Under 32 concurrent clients ops share commits: fewer commits than ops (on SQLite, whose
    # commits are quick, about 1.7 ops a commit on 2 cores; on PostgreSQL, more).
    assert commits - commits0 < ops - ops0, (commits - commits0, ops - ops0)


def test_collisions_in_a_concurrent_batch_are_409_and_the_others_201(db_server):
    existing = [db_server.post_json("/users", user_body(tag())) for _ in range(10)]
    assert all(r.status == 201 for r in existing), existing
    existing = [r.json() for r in existing]
    bodies, expect = [], []
    for i in range(300):
        b = user_body(tag())
        if i % 10 == 3:  # a taken username
            b["username"] = existing[i % len(existing)]["username"]
            expect.append("Username already registered")
        elif i % 10 == 7:  # a taken email
            b["email"] = existing[i % len(existing)]["email"]
            expect.append("Email already registered")
        else:
            expect.append(None)
        bodies.append(b)
    # The same new username twice, both in flight at once: exactly one of each pair wins.
    twins = []
    for _ in range(20):
        t = tag()
        a, b = user_body(t), user_body(tag())
        b["username"] = a["username"]
        twins.append((len(bodies), len(bodies) + 1))
        bodies += [a, b]
        expect += ["twin", "twin"]
    results = post_all(db_server.port, bodies)
    for body, want, (status, answer) in zip(bodies, expect, results):
        if want is None:
            assert status == 201, (body, status, answer)
            assert_stored(db_server, answer)
        elif want != "twin":
            assert (status, answer) == (409, {"detail": want}), (body, status, answer)
    for i, j in twins:
        statuses = sorted((results[i][0], results[j][0]))
        assert statuses == [201, 409], (bodies[i], results[i], results[j])
        winner = results[i][1] if results[i][0] == 201 else results[j][1]
        loser = results[j][1] if results[i][0] == 201 else results[i][1]
        assert loser == {"detail": "Username already registered"}
        assert_stored(db_server, winner)
    for user in existing:  # the collisions changed nothing
        assert_stored(db_server, user)


@pytest.fixture
def durable_pg():
    server = PgServer().start(durable=True)
    yield server
    server.cleanup()


@pytest.mark.deadline(90)
def test_every_201_survives_kill_9_of_roost_and_of_postgresql(start_server, durable_pg, tmp_path):
    db = durable_pg.url(durable_pg.create_database())
    flags = ("--threads", "2", "--database", db)
    srv = start_server(*flags)
    answered = {}  # username -> the 201's user
    lock = threading.Lock()
    stop = threading.Event()

    def run():
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        try:
            while not stop.is_set():
                body = user_body(tag())
                conn.request("POST", "/users", json.dumps(body),
                             {"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                if resp.status == 201:
                    with lock:
                        answered[body["username"]] = json.loads(data)
        except (OSError, http.client.HTTPException):
            pass  # killed under us: an answer in flight is not counted
        finally:
            conn.close()

    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(run) for _ in range(THREADS)]
        deadline = time.monotonic() + 30
        while len(answered) < 2000 and time.monotonic() < deadline:
            time.sleep(0.01)
        srv.proc.kill()  # kill -9 with writes in flight
        srv.proc.wait()
        durable_pg.stop("immediate")  # PostgreSQL killed too: no shutdown checkpoint
        stop.set()
        for f in futures:
            f.result(timeout=30)
    accepted = dict(answered)
    assert len(accepted) >= 500, f"only {len(accepted)} users created before the kill"

    durable_pg.start(durable=True)
    again = start_server(*flags)
    lost = []
    for user in accepted.values():
        resp = again.get(f"/users/{user['id']}")
        if resp.status != 200 or resp.json() != user:
            lost.append((user, resp.status))
    assert not lost, f"{len(lost)} of {len(accepted)} answered users are gone: {lost[:3]}"




def test_racing_creates_of_the_same_usernames_win_once_each_and_never_503(db_server):
    # Each round, 32 clients at once create one of two new usernames (half each, in random
    # order): a data thread's group that holds one name waits on another group for the other,
    # which waits back, until PostgreSQL fails one op to break the deadlock; that op runs
    # again after its group committed, and answers 409 like any other loser, not 503.
    rounds, barrier = 6, threading.Barrier(THREADS)
    names = [(user_body(tag()), user_body(tag())) for _ in range(rounds)]
    answers = [[] for _ in range(rounds)]
    lock = threading.Lock()

    def client(k):
        conn = http.client.HTTPConnection("127.0.0.1", db_server.port, timeout=30)
        rng = random.Random(k)
        try:
            for r in range(rounds):
                body = dict(names[r][rng.randrange(2)], email=f"{k}.{tag()}@race.example")
                barrier.wait(timeout=30)
                conn.request("POST", "/users", json.dumps(body),
                             {"Content-Type": "application/json"})
                resp = conn.getresponse()
                with lock:
                    answers[r].append((body["username"], resp.status, json.loads(resp.read())))
        finally:
            conn.close()

    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        for f in [pool.submit(client, k) for k in range(THREADS)]:
            f.result(timeout=120)
    for r in range(rounds):
        for body in names[r]:
            mine = [(s, a) for name, s, a in answers[r] if name == body["username"]]
            statuses = [s for s, _ in mine]
            assert statuses.count(201) == (1 if mine else 0), (body, mine)
            assert set(statuses) <= {201, 409}, (body, mine)
            for s, a in mine:
                if s == 409:
                    assert a == {"detail": "Username already registered"}
                else:
                    assert_stored(db_server, a)
