"""/accounts, POST /transfer and POST /batch on both engines. Money goes in and out as currency
units with at most 2 decimals (stored as integer cents, also shown as balance_cents). A transfer
is one transaction: 400 for a bad amount, the same account or insufficient funds, 404 for a
missing account, and 200 concurrent transfers lose no update and overdraw nothing. A batch runs
each operation in its own savepoint: failures are reported per item, the rest is committed."""

import json
import random
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import assert_json_detail, assert_validation_error
from pgserver import db_server, engine, engine_flags, pg  # noqa: F401 (fixtures)


def new_account(srv, balance, owner=None):
    resp = srv.post_json("/accounts", {"owner": owner or f"o_{uuid.uuid4().hex[:8]}",
                                       "balance": balance})
    assert resp.status == 201, resp
    return resp.json()


def cents(srv, account_id):
    resp = srv.get(f"/accounts/{account_id}")
    assert resp.status == 200, resp
    return resp.json()["balance_cents"]


def transfer(srv, src, dst, amount, **kw):
    return srv.post_json("/transfer", {"from_account": src, "to_account": dst, "amount": amount},
                         **kw)


# ---- accounts


def test_create_account_answers_201_and_reads_back(db_server):
    acc = new_account(db_server, 1234.56, owner="Ada")
    assert set(acc) == {"id", "owner", "balance", "balance_cents", "created_at"}
    assert acc["owner"] == "Ada"
    assert acc["balance"] == 1234.56 and acc["balance_cents"] == 123456
    assert db_server.get(f"/accounts/{acc['id']}").json() == acc


def test_balances_are_exact_cents(db_server):
    # 0.1 + 0.2 is not 0.3 in floating point; in cents it is.
    a = new_account(db_server, 0.1)
    b = new_account(db_server, 0.2)
    resp = transfer(db_server, a["id"], b["id"], 0.1)
    assert resp.status == 200, resp
    assert resp.json()["to_balance"] == 0.3
    assert cents(db_server, b["id"]) == 30 and cents(db_server, a["id"]) == 0
    assert new_account(db_server, 0)["balance_cents"] == 0
    assert new_account(db_server, 1000000000)["balance_cents"] == 100000000000


@pytest.mark.parametrize("balance,kind", [
    (-0.01, "greater_than_equal"),
    (1.005, "decimal_max_places"),
    ("12.00", "decimal_type"),
    (None, "decimal_type"),
    (1e12, "less_than_equal"),
])
def test_create_account_rejects_a_bad_balance(db_server, balance, kind):
    detail = assert_validation_error(
        db_server.post_json("/accounts", {"owner": "x", "balance": balance}))
    assert [(tuple(d["loc"]), d["type"]) for d in detail] == [(("body", "balance"), kind)]


def test_create_account_requires_owner_and_balance(db_server):
    detail = assert_validation_error(db_server.post_json("/accounts", {}))
    assert {tuple(d["loc"]) for d in detail} == {("body", "owner"), ("body", "balance")}
    assert_validation_error(db_server.post_json("/accounts", {"owner": "", "balance": 1}))


def test_unknown_account_is_404(db_server):
    resp = db_server.get("/accounts/987654321")
    assert_json_detail(resp, 404)
    assert resp.json() == {"detail": "Account not found"}


# ---- transfers


def test_transfer_moves_the_amount_in_one_answer(db_server):
    a, b = new_account(db_server, 100), new_account(db_server, 5.5)
    resp = transfer(db_server, a["id"], b["id"], 40.25)
    assert resp.status == 200, resp
    body = resp.json()
    assert body["from_account"] == a["id"] and body["to_account"] == b["id"]
    assert body["amount"] == 40.25
    assert body["from_balance"] == 59.75 and body["to_balance"] == 45.75
    assert cents(db_server, a["id"]) == 5975 and cents(db_server, b["id"]) == 4575


def test_transfer_of_the_whole_balance_is_allowed_and_one_cent_more_is_not(db_server):
    a, b = new_account(db_server, 10), new_account(db_server, 0)
    assert transfer(db_server, a["id"], b["id"], 10.01).status == 400
    assert transfer(db_server, a["id"], b["id"], 10).status == 200
    assert cents(db_server, a["id"]) == 0 and cents(db_server, b["id"]) == 1000


@pytest.mark.parametrize("amount", [0, -1, -0.01])
def test_transfer_of_a_non_positive_amount_is_400(db_server, amount):
    a, b = new_account(db_server, 10), new_account(db_server, 10)
    assert_json_detail(transfer(db_server, a["id"], b["id"], amount), 400)
    assert cents(db_server, a["id"]) == 1000 and cents(db_server, b["id"]) == 1000


def test_transfer_with_insufficient_funds_is_400_and_changes_nothing(db_server):
    a, b = new_account(db_server, 3), new_account(db_server, 7)
    resp = transfer(db_server, a["id"], b["id"], 3.01)
    assert_json_detail(resp, 400)
    assert "insufficient" in resp.json()["detail"].lower()
    assert cents(db_server, a["id"]) == 300 and cents(db_server, b["id"]) == 700


def test_transfer_to_the_same_account_is_400(db_server):
    a = new_account(db_server, 10)
    assert_json_detail(transfer(db_server, a["id"], a["id"], 1), 400)
    assert cents(db_server, a["id"]) == 1000


def test_transfer_from_or_to_a_missing_account_is_404(db_server):
    a = new_account(db_server, 10)
    for src, dst in ((a["id"], 987654321), (987654321, a["id"])):
        resp = transfer(db_server, src, dst, 1)
        assert_json_detail(resp, 404)
        assert resp.json() == {"detail": "Account not found"}
    assert cents(db_server, a["id"]) == 1000


def test_transfer_body_is_validated(db_server):
    detail = assert_validation_error(db_server.post_json("/transfer", {}))
    assert {tuple(d["loc"]) for d in detail} == {
        ("body", "from_account"), ("body", "to_account"), ("body", "amount")}
    detail = assert_validation_error(
        db_server.post_json("/transfer", {"from_account": "1", "to_account": 2.5,
                                          "amount": 1.001}))
    assert {tuple(d["loc"]) for d in detail} == {
        ("body", "from_account"), ("body", "to_account"), ("body", "amount")}


@pytest.mark.deadline(120)
def test_200_concurrent_random_transfers_lose_nothing_and_overdraw_nothing(db_server):
    rng = random.Random(20240601)
    accounts = [new_account(db_server, rng.choice([5, 20, 50]))["id"] for _ in range(10)]
    before = {a: cents(db_server, a) for a in accounts}
    plan = []
    for _ in range(200):
        src, dst = rng.sample(accounts, 2)
        plan.append((src, dst, rng.randint(1, 2500) / 100))  # up to 25.00: many will not fit
    barrier = threading.Barrier(32)

    def run(i):
        if i < 32:
            barrier.wait(timeout=30)  # the first 32 start at the same moment
        src, dst, amount = plan[i]
        resp = transfer(db_server, src, dst, amount, timeout=60)
        return src, dst, round(amount * 100), resp

    with ThreadPoolExecutor(max_workers=32) as ex:
        results = list(ex.map(run, range(200)))
    statuses = [r[3].status for r in results]
    assert set(statuses) <= {200, 400}, [r[3] for r in results if r[3].status not in (200, 400)]
    assert statuses.count(200) > 20 and statuses.count(400) > 0, statuses
    for _, _, _, resp in results:
        if resp.status == 400:
            assert "insufficient" in resp.json()["detail"].lower(), resp
    after = {a: cents(db_server, a) for a in accounts}
    assert sum(after.values()) == sum(before.values())
    assert min(after.values()) >= 0
    # every committed transfer is in the final balances, whatever order they ran in
    expected = dict(before)
    for src, dst, amount, resp in results:
        if resp.status == 200:
            expected[src] -= amount
            expected[dst] += amount
    assert after == expected
    for resp in (r[3] for r in results if r[3].status == 200):
        assert resp.json()["from_balance"] >= 0


# ---- batch


def batch(srv, operations, **kw):
    return srv.post_json("/batch", {"operations": operations}, **kw)


def test_batch_commits_the_good_operations_and_reports_the_failed_ones(db_server):
    t = uuid.uuid4().hex[:8]
    a, b = new_account(db_server, 10), new_account(db_server, 0)
    ops = [
        {"op": "create_user", "data": {"username": f"bat_{t}", "email": f"bat.{t}@ex.io"}},
        {"op": "create_user", "data": {"username": f"bat_{t}", "email": f"other.{t}@ex.io"}},
        {"op": "transfer", "data": {"from_account": a["id"], "to_account": b["id"],
                                    "amount": 4}},
        {"op": "transfer", "data": {"from_account": a["id"], "to_account": b["id"],
                                    "amount": 7}},
        {"op": "transfer", "data": {"from_account": a["id"], "to_account": 987654321,
                                    "amount": 1}},
        {"op": "create_account", "data": {"owner": f"bat_{t}", "balance": 2.5}},
        {"op": "create_user", "data": {"username": "no", "email": "bad"}},
        {"op": "explode"},
    ]
    resp = batch(db_server, ops)
    assert resp.status == 200, resp
    body = resp.json()
    results = body["results"]
    assert [r["index"] for r in results] == list(range(len(ops)))
    assert [r["status"] for r in results] == ["success", "failed", "success", "failed",
                                              "failed", "success", "failed", "failed"]
    assert [r["code"] for r in results] == [201, 409, 200, 400, 404, 201, 422, 422]
    for r in results:
        assert set(r) >= {"index", "status", "error"}
        assert (r["error"] is None) == (r["status"] == "success"), r
    assert body["succeeded"] == 3 and body["failed"] == 5
    # the successes are committed, the failures left nothing behind
    user_id = results[0]["result"]["id"]
    assert db_server.get(f"/users/{user_id}").json()["username"] == f"bat_{t}"
    assert cents(db_server, a["id"]) == 600 and cents(db_server, b["id"]) == 400
    new_acc = results[5]["result"]
    assert cents(db_server, new_acc["id"]) == 250
    assert db_server.post_json("/users", {"username": f"z{t}",
                                          "email": f"other.{t}@ex.io"}).status == 201
    assert {tuple(e["loc"]) for e in results[6]["errors"]} == {
        ("body", "operations", 6, "data", "username"), ("body", "operations", 6, "data", "email")}


def test_a_failed_operation_undoes_only_its_own_savepoint(db_server):
    """update then a conflicting update of the same user: the first survives the second."""
    t = uuid.uuid4().hex[:8]
    taken = db_server.post_json("/users", {"username": f"tk_{t}", "email": f"tk.{t}@ex.io"})
    mine = db_server.post_json("/users", {"username": f"mn_{t}", "email": f"mn.{t}@ex.io"})
    uid = mine.json()["id"]
    ops = [
        {"op": "update_user", "id": uid, "data": {"full_name": "First"}},
        {"op": "update_user", "id": uid, "data": {"full_name": "Second",
                                                  "email": taken.json()["email"]}},
        {"op": "delete_user", "id": 987654321},
        {"op": "update_user", "id": uid, "data": {"is_active": False}},
    ]
    body = batch(db_server, ops).json()
    assert [r["code"] for r in body["results"]] == [200, 409, 404, 200]
    user = db_server.get(f"/users/{uid}").json()
    assert user["full_name"] == "First" and user["is_active"] is False
    assert user["email"] == f"mn.{t}@ex.io"
    body = batch(db_server, [{"op": "delete_user", "id": uid}]).json()
    assert body["results"][0]["code"] == 204
    assert db_server.get(f"/users/{uid}").status == 404


def test_batch_of_only_failures_commits_nothing_and_answers_200(db_server):
    body = batch(db_server, [{"op": "delete_user", "id": 987654321},
                             {"op": "update_user", "data": {}}]).json()
    assert body["succeeded"] == 0 and body["failed"] == 2
    assert body["results"][1]["code"] == 422


def test_batch_body_is_validated(db_server):
    assert_validation_error(db_server.post_json("/batch", {}))
    assert_validation_error(batch(db_server, []))
    assert_validation_error(batch(db_server, "x"))
    too_many = [{"op": "delete_user", "id": 1}] * 1001
    assert_validation_error(batch(db_server, too_many))


def test_batch_of_1000_operations(db_server):
    t = uuid.uuid4().hex[:8]
    ops = [{"op": "create_account", "data": {"owner": f"many_{t}", "balance": i}}
           for i in range(1000)]
    resp = batch(db_server, ops, timeout=60)
    assert resp.status == 200, resp
    body = resp.json()
    assert body["succeeded"] == 1000
    last = body["results"][-1]["result"]
    assert cents(db_server, last["id"]) == 99900
    assert json.loads(json.dumps(body))["failed"] == 0
