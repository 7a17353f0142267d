"""Request bodies: chunked transfer coding (also split across writes) and Expect: 100-continue."""

import json
import time

ITEM = {"name": "Chunky", "description": "in pieces", "price": 12.5, "tax": 2.5}
ITEM_BYTES = json.dumps(ITEM).encode()
CHUNKED_HEAD = (b"POST /items HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")


def chunked(data, sizes):
    """`data` in chunks of the given sizes (the rest in a last chunk), with the final 0 chunk."""
    out, pos = b"", 0
    for size in list(sizes) + [len(data)]:
        piece = data[pos : pos + size]
        if piece:
            out += b"%x\r\n" % len(piece) + piece + b"\r\n"
        pos += len(piece)
    return out + b"0\r\n\r\n"


def assert_item_echoed(resp):
    assert resp.status == 200, resp
    body = resp.json()
    assert body["name"] == "Chunky"
    assert body["description"] == "in pieces"
    assert body["price_with_tax"] == 15.0


def test_chunked_body_in_one_write(server):
    with server.connect() as conn:
        conn.send(CHUNKED_HEAD + chunked(ITEM_BYTES, [10, 5, 20]))
        assert_item_echoed(conn.read_response())


def test_chunked_body_split_across_writes(server):
    data = CHUNKED_HEAD + chunked(ITEM_BYTES, [9, 1, 17])
    body_start = len(CHUNKED_HEAD)
    with server.connect() as conn:
        conn.send(data[: body_start - 3])  # even the header section arrives in two parts
        time.sleep(0.05)
        rest = data[body_start - 3 :]
        # 1- and 2-byte writes split chunk-size lines, CRLFs and chunk data.
        pos = 0
        for step in [1, 2, 1, 3, 1, 1, 2, 5, 1, 4]:
            conn.send(rest[pos : pos + step])
            pos += step
            time.sleep(0.02)
        conn.send(rest[pos:])
        assert_item_echoed(conn.read_response())


def test_chunk_extensions_are_ignored(server):
    body = b"%x;name=value\r\n" % len(ITEM_BYTES) + ITEM_BYTES + b"\r\n0\r\n\r\n"
    with server.connect() as conn:
        conn.send(CHUNKED_HEAD + body)
        assert_item_echoed(conn.read_response())


def test_chunked_request_then_next_request_on_same_connection(server):
    with server.connect() as conn:
        conn.send(CHUNKED_HEAD + chunked(ITEM_BYTES, [3]) + b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n")
        assert_item_echoed(conn.read_response())
        resp = conn.read_response()
        assert resp.status == 200 and resp.body == b"Hello, World!"


def test_expect_100_continue_gets_interim_response_before_body(server):
    with server.connect() as conn:
        conn.send(
            b"POST /items HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(ITEM_BYTES)
        )
        interim = conn.read_response(timeout=3.0)
        assert interim.status == 100, interim
        assert interim.version == "HTTP/1.1"
        conn.send(ITEM_BYTES)
        assert_item_echoed(conn.read_response())


def test_expect_100_continue_with_chunked_body(server):
    head = CHUNKED_HEAD.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n")
    with server.connect() as conn:
        conn.send(head)
        interim = conn.read_response(timeout=3.0)
        assert interim.status == 100, interim
        conn.send(chunked(ITEM_BYTES, [8]))
        assert_item_echoed(conn.read_response())


def test_expect_100_continue_over_max_body_gets_413_without_continue(server):
    with server.connect() as conn:
        conn.send(
            b"POST /items HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2000000\r\nExpect: 100-continue\r\n\r\n"
        )
        resp = conn.read_response(timeout=3.0)
        assert resp.status == 413, f"expected 413 first, got {resp!r}"
    server.assert_healthy()
