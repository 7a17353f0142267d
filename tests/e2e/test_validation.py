"""One 422 everywhere, in FastAPI's pydantic v2 shape: the listings answer a bad ?limit= with the
same item and words, every bad body field is listed at once, and the route's schema is checked
before its handler runs."""

import pytest

from conftest import assert_validation_error, http_request

LISTINGS = ["/users", "/tasks"]


def one_item(resp):
    detail = assert_validation_error(resp)
    assert len(detail) == 1, detail
    item = detail[0]
    assert set(item) <= {"type", "loc", "msg", "input", "ctx"}, item
    return item


@pytest.mark.parametrize("path", LISTINGS)
def test_limit_above_100_is_less_than_equal_in_pydantics_words(server, path):
    item = one_item(server.get(f"{path}?limit=101"))
    assert item == {"type": "less_than_equal", "loc": ["query", "limit"],
                    "msg": "Input should be less than or equal to 100", "input": "101",
                    "ctx": {"le": 100}}


def test_every_listing_answers_a_bad_limit_with_the_same_item(server):
    for query in ("limit=101", "limit=0", "limit=abc", "limit=1.5", "cursor=nope"):
        items = [one_item(server.get(f"{path}?{query}")) for path in LISTINGS]
        assert items[0] == items[1], (query, items)


@pytest.mark.parametrize("value", ["abc", "1.5", ""])
def test_limit_that_is_no_integer_is_int_parsing(server, value):
    item = one_item(server.get(f"/users?limit={value}"))
    assert item["type"] == "int_parsing", item
    assert item["msg"] == "Input should be a valid integer, unable to parse string as an integer"
    assert item["input"] == value and "ctx" not in item


def test_limit_below_1_is_greater_than_equal(server):
    item = one_item(server.get("/tasks?limit=0"))
    assert (item["type"], item["ctx"], item["input"]) == ("greater_than_equal", {"ge": 1}, "0")
    assert item["msg"] == "Input should be greater than or equal to 1"


def test_unknown_task_status_lists_the_allowed_values(server):
    item = one_item(server.get("/tasks?status=done"))
    assert item["type"] == "enum" and item["loc"] == ["query", "status"], item
    assert item["msg"] == ("Input should be 'pending', 'running', 'completed', 'failed' or "
                           "'cancelled'")


def test_a_valid_limit_still_pages(server):
    resp = server.get("/tasks?limit=100")
    assert resp.status == 200, resp
    assert set(resp.json()) >= {"items", "next_cursor", "has_more"}


def test_items_with_two_bad_fields_lists_both(server):
    detail = assert_validation_error(server.post_json("/items", {"name": "", "price": -1}))
    assert [(d["type"], d["loc"]) for d in detail] == [
        ("string_too_short", ["body", "name"]), ("greater_than", ["body", "price"])]
    assert detail[0]["msg"] == "String should have at least 1 character"
    assert detail[0]["ctx"] == {"min_length": 1} and detail[0]["input"] == ""
    assert detail[1]["msg"] == "Input should be greater than 0"
    assert detail[1]["ctx"] == {"gt": 0} and detail[1]["input"] == -1


@pytest.mark.parametrize("path,body,field", [
    ("/items", {"price": 1}, "name"),
    ("/users", {"email": "a@example.com"}, "username"),
    ("/tasks", {"payload": {}}, "type"),
    ("/transfer", {"from_account": 1, "to_account": 2}, "amount"),
    ("/broadcast", {"room": "lobby"}, "message"),
])
def test_a_missing_body_field_is_missing(server, path, body, field):
    item = one_item(server.post_json(path, body))
    assert item["type"] == "missing" and item["loc"] == ["body", field], item
    assert item["msg"] == "Field required"
    assert item["input"] == body  # FastAPI shows the whole body


@pytest.mark.parametrize("path", ["/items", "/users", "/tasks", "/transfer", "/broadcast"])
def test_every_body_route_answers_bad_json_and_a_list_alike(server, path):
    resp = http_request(server.port, "POST", path, {"Content-Type": "application/json"}, b"{")
    item = one_item(resp)
    assert item["type"] == "json_invalid" and item["loc"][0] == "body", item
    assert item["msg"] == "JSON decode error"
    item = one_item(server.post_json(path, [1, 2]))
    assert item == {"type": "dict_type", "loc": ["body"],
                    "msg": "Input should be a valid dictionary", "input": [1, 2]}


def test_job_payload_errors_use_the_same_items(server):
    detail = assert_validation_error(
        server.post_json("/tasks", {"type": "sleep", "payload": {"steps": 0}}))
    assert detail == [{"type": "greater_than_equal", "loc": ["body", "payload", "steps"],
                       "msg": "Input should be greater than or equal to 1", "input": 0,
                       "ctx": {"ge": 1}}]


def test_slow_route_query_is_coerced_and_bounded(server):
    item = one_item(server.get("/slow-async?seconds=31"))
    assert (item["type"], item["ctx"]) == ("less_than_equal", {"le": 30}), item
    item = one_item(server.get("/slow-async?seconds=soon"))
    assert item["type"] == "float_parsing", item
    assert server.get("/slow-async?seconds=0").status == 200
