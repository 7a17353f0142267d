"""Size limits: --max-url (414), --max-header-size and --max-headers (431), --max-body (413, sent
before the body is read), each counted in /metrics; the server keeps serving afterwards."""

import json
import time

import pytest

from conftest import metric_sum

MAX_URL, MAX_HEADER_SIZE, MAX_HEADERS, MAX_BODY = 256, 2048, 10, 1024
LIMIT_FLAGS = ("--threads", "2", "--max-url", MAX_URL, "--max-header-size", MAX_HEADER_SIZE,
               "--max-headers", MAX_HEADERS, "--max-body", MAX_BODY)


@pytest.fixture
def limited(shared_servers):
    """A server with small limits: --max-url 256 --max-header-size 2048 --max-headers 10
    --max-body 1024."""
    with shared_servers.use(*LIMIT_FLAGS) as srv:
        yield srv


def target_of_length(n):
    target = "/plaintext?pad="
    return target + "a" * (n - len(target))


def get_with_headers(target, headers):
    return (f"GET {target} HTTP/1.1\r\nHost: t\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n").encode()


def item_body_of_length(n):
    """A valid /items JSON body of exactly n bytes."""
    base = json.dumps({"name": "big", "description": "", "price": 1}).encode()
    return json.dumps({"name": "big", "description": "d" * (n - len(base)), "price": 1}).encode()


def limit_hits(srv, limit):
    return metric_sum(srv.metrics(), "roost_limit_hits_total", limit=limit)


# -- URL


def test_target_over_max_url_gets_414(limited):
    with limited.connect() as conn:
        conn.send(get_with_headers(target_of_length(MAX_URL + 1), []))
        resp = conn.read_response()
    assert resp.status == 414, resp
    limited.assert_healthy()


def test_target_under_max_url_is_served(limited):
    resp = limited.get(target_of_length(MAX_URL - 20))
    assert resp.status == 200, resp
    assert resp.body == b"Hello, World!"


def test_default_max_url_is_8192(server):
    assert server.get(target_of_length(8192 + 1)).status == 414
    assert server.get(target_of_length(8000)).status == 200


def test_url_limit_hit_is_counted(limited):
    before = limit_hits(limited, "url")
    assert limited.get(target_of_length(MAX_URL * 2)).status == 414
    assert limit_hits(limited, "url") >= before + 1


# -- header section size and count


def test_header_section_over_max_header_size_gets_431(limited):
    with limited.connect() as conn:
        conn.send(get_with_headers("/plaintext", [("X-Pad", "a" * (MAX_HEADER_SIZE + 64))]))
        resp = conn.read_response()
    assert resp.status == 431, resp
    limited.assert_healthy()


def test_many_small_headers_over_max_header_size_get_431(limited):
    headers = [(f"X-Pad-{i}", "b" * 300) for i in range(MAX_HEADERS - 2)]  # ~2.5 KB, 9 fields
    with limited.connect() as conn:
        conn.send(get_with_headers("/plaintext", headers))
        resp = conn.read_response()
    assert resp.status == 431, resp


def test_header_section_under_max_header_size_is_served(limited):
    resp = limited.get("/plaintext", headers={"X-Pad": "a" * (MAX_HEADER_SIZE // 2)})
    assert resp.status == 200, resp


def test_more_than_max_headers_fields_get_431(limited):
    headers = [(f"X-H{i}", "v") for i in range(MAX_HEADERS)]  # plus Host: one too many
    with limited.connect() as conn:
        conn.send(get_with_headers("/plaintext", headers))
        resp = conn.read_response()
    assert resp.status == 431, resp
    limited.assert_healthy()


def test_exactly_max_headers_fields_are_served(limited):
    headers = [(f"X-H{i}", "v") for i in range(MAX_HEADERS - 1)]  # plus Host: exactly the limit
    with limited.connect() as conn:
        conn.send(get_with_headers("/plaintext", headers))
        resp = conn.read_response()
    assert resp.status == 200, resp


def test_default_header_limits(server):
    with server.connect() as conn:
        conn.send(get_with_headers("/plaintext", [("X-Pad", "a" * 33000)]))
        assert conn.read_response().status == 431
    with server.connect() as conn:
        conn.send(get_with_headers("/plaintext", [(f"X-H{i}", "v") for i in range(100)]))
        assert conn.read_response().status == 431
    with server.connect() as conn:
        conn.send(get_with_headers("/plaintext", [(f"X-H{i}", "v") for i in range(99)]))
        assert conn.read_response().status == 200


# -- body


def test_content_length_over_max_body_gets_413_before_body_is_sent(limited):
    with limited.connect() as conn:
        conn.send(b"POST /items HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % (MAX_BODY + 1))
        resp = conn.read_response(timeout=3.0)  # the body is never sent
    assert resp.status == 413, resp
    assert resp.json().get("detail"), resp
    limited.assert_healthy()


def test_body_of_exactly_max_body_is_accepted(limited):
    body = item_body_of_length(MAX_BODY)
    assert len(body) == MAX_BODY
    resp = limited.request("POST", "/items", {"Content-Type": "application/json"}, body)
    assert resp.status == 200, resp
    assert resp.json()["name"] == "big"


def test_chunked_body_growing_over_max_body_gets_413(limited):
    with limited.connect() as conn:
        conn.send(b"POST /items HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 600
        conn.send(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        time.sleep(0.1)
        conn.send(b"%x\r\n" % len(chunk) + chunk + b"\r\n")  # 1200 > 1024, no final chunk
        resp = conn.read_response(timeout=3.0)
    assert resp.status == 413, resp
    limited.assert_healthy()


def test_chunked_body_under_max_body_is_accepted(limited):
    body = item_body_of_length(MAX_BODY)
    chunks = b"".join(b"%x\r\n" % len(body[i:i + 100]) + body[i:i + 100] + b"\r\n"
                      for i in range(0, len(body), 100))
    with limited.connect() as conn:
        conn.send(b"POST /items HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
        resp = conn.read_response()
    assert resp.status == 200, resp


def test_default_max_body_is_one_mebibyte(server):
    with server.connect() as conn:
        conn.send(b"POST /items HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1048577\r\n\r\n")
        assert conn.read_response(timeout=3.0).status == 413
    body = item_body_of_length(1048576)
    resp = server.request("POST", "/items", {"Content-Type": "application/json"}, body,
                          timeout=20.0)
    assert resp.status == 200, resp


def test_body_limit_hit_is_counted(limited):
    before = limit_hits(limited, "body")
    with limited.connect() as conn:
        conn.send(b"POST /items HTTP/1.1\r\nHost: t\r\nContent-Length: 99999\r\n\r\n")
        assert conn.read_response(timeout=3.0).status == 413
    assert limit_hits(limited, "body") >= before + 1


def test_header_limit_hits_are_counted(limited):
    before_size = limit_hits(limited, "header_size")
    before_count = limit_hits(limited, "headers")
    with limited.connect() as conn:
        conn.send(get_with_headers("/plaintext", [("X-Pad", "a" * (MAX_HEADER_SIZE * 2))]))
        assert conn.read_response().status == 431
    with limited.connect() as conn:
        conn.send(get_with_headers("/plaintext", [(f"X-H{i}", "v") for i in range(MAX_HEADERS * 2)]))
        assert conn.read_response().status == 431
    assert limit_hits(limited, "header_size") >= before_size + 1
    assert limit_hits(limited, "headers") >= before_count + 1
