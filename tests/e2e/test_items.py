"""POST /items: FastAPI's first example (an Item model validated like pydantic v2), including every
invalid field reported at once in one 422."""

import json
import time

import pytest

from conftest import assert_validation_error, http_request


def errors_by_field(detail):
    """{field: type} from a 422 detail list whose locs are ["body", field]."""
    out = {}
    for item in detail:
        assert item["loc"][0] == "body", item
        assert len(item["loc"]) == 2, item
        out[item["loc"][1]] = item["type"]
    return out


def test_valid_item_is_echoed_with_price_with_tax(server):
    item = {"name": "Foo", "description": "A very nice Item", "price": 35.4, "tax": 3.2}
    resp = server.post_json("/items", item)
    assert resp.status == 200, resp
    assert resp.header("Content-Type", "").startswith("application/json")
    body = resp.json()
    assert set(body) == {"name", "description", "price", "tax", "price_with_tax"}
    assert body["name"] == "Foo"
    assert body["description"] == "A very nice Item"
    assert body["price"] == pytest.approx(35.4)
    assert body["tax"] == pytest.approx(3.2)
    assert body["price_with_tax"] == pytest.approx(38.6)


def test_missing_optional_fields_are_null_and_tax_counts_as_zero(server):
    resp = server.post_json("/items", {"name": "Bar", "price": 10})
    assert resp.status == 200, resp
    body = resp.json()
    assert body["name"] == "Bar"
    assert body["description"] is None
    assert body["tax"] is None
    assert body["price"] == 10
    assert body["price_with_tax"] == 10


def test_explicit_null_optional_fields_are_accepted(server):
    resp = server.post_json("/items", {"name": "Baz", "description": None, "price": 2.5, "tax": None})
    assert resp.status == 200, resp
    body = resp.json()
    assert body["description"] is None and body["tax"] is None
    assert body["price_with_tax"] == pytest.approx(2.5)


@pytest.mark.parametrize("length", [1, 100])
def test_name_length_bounds_are_inclusive(server, length):
    resp = server.post_json("/items", {"name": "n" * length, "price": 1})
    assert resp.status == 200, resp
    assert resp.json()["name"] == "n" * length


def test_unicode_name_is_echoed(server):
    resp = server.post_json("/items", {"name": "Café ☕", "price": 3})
    assert resp.status == 200, resp
    assert resp.json()["name"] == "Café ☕"


def test_empty_object_lists_both_required_fields(server):
    resp = server.post_json("/items", {})
    detail = assert_validation_error(resp)
    assert errors_by_field(detail) == {"name": "missing", "price": "missing"}
    assert all(item["msg"] == "Field required" for item in detail)


@pytest.mark.parametrize(
    "item,field,error_type",
    [
        ({"name": "", "price": 1}, "name", "string_too_short"),
        ({"name": "n" * 101, "price": 1}, "name", "string_too_long"),
        ({"name": 123, "price": 1}, "name", "string_type"),
        ({"name": "Foo", "price": 0}, "price", "greater_than"),
        ({"name": "Foo", "price": -1.5}, "price", "greater_than"),
        ({"name": "Foo", "price": "abc"}, "price", "float_type"),
        ({"name": "Foo", "price": 1, "tax": "abc"}, "tax", "float_type"),
        ({"name": "Foo", "description": 5, "price": 1}, "description", "string_type"),
        ({"price": 1}, "name", "missing"),
        ({"name": "Foo"}, "price", "missing"),
    ],
    ids=["empty-name", "long-name", "int-name", "zero-price", "negative-price", "string-price",
         "string-tax", "int-description", "missing-name", "missing-price"],
)
def test_invalid_field_gives_422_with_its_loc_and_type(server, item, field, error_type):
    detail = assert_validation_error(server.post_json("/items", item))
    assert errors_by_field(detail) == {field: error_type}


def test_every_invalid_field_is_reported_in_one_response(server):
    resp = server.post_json("/items", {"name": "", "description": 7, "price": -1, "tax": "x"})
    detail = assert_validation_error(resp)
    assert errors_by_field(detail) == {
        "name": "string_too_short",
        "description": "string_type",
        "price": "greater_than",
        "tax": "float_type",
    }


def test_missing_and_invalid_fields_are_reported_together(server):
    detail = assert_validation_error(server.post_json("/items", {"price": "abc"}))
    assert errors_by_field(detail) == {"name": "missing", "price": "float_type"}


@pytest.mark.parametrize("body", [b'{"name": "Foo", "price": ', b"{name: Foo}", b"not json",
                                  b'{"name":"Foo","price":1}}'])
def test_malformed_json_gives_one_json_invalid_error(server, body):
    resp = http_request(server.port, "POST", "/items", {"Content-Type": "application/json"}, body)
    detail = assert_validation_error(resp)
    assert len(detail) == 1, detail
    assert detail[0]["type"] == "json_invalid"
    assert detail[0]["loc"][0] == "body"


@pytest.mark.parametrize("body", [[1, 2], "Foo", 42])
def test_json_that_is_not_an_object_gives_dict_type(server, body):
    resp = http_request(server.port, "POST", "/items", {"Content-Type": "application/json"},
                        json.dumps(body).encode())
    detail = assert_validation_error(resp)
    assert len(detail) == 1, detail
    assert detail[0]["type"] == "dict_type"
    assert detail[0]["loc"][0] == "body"


def test_body_split_across_writes_is_read_whole(server):
    body = json.dumps({"name": "Split", "price": 4, "tax": 1}).encode()
    with server.connect() as conn:
        conn.send(
            b"POST /items HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        for i in range(0, len(body), 7):
            time.sleep(0.02)
            conn.send(body[i : i + 7])
        resp = conn.read_response()
    assert resp.status == 200, resp
    assert resp.json()["price_with_tax"] == 5
