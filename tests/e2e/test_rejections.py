"""Malformed or smuggling-prone requests are rejected with the exact status; after a 400 the
response says `Connection: close` and the server closes. The server keeps serving others."""

import pytest

H = b"Host: t\r\n"

BAD_REQUESTS = {
    # framing (request smuggling vectors)
    "content-length-with-transfer-encoding": (
        b"POST /items HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n", 400),
    "transfer-encoding-with-content-length": (
        b"POST /items HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
        b"0\r\n\r\n", 400),
    "two-different-content-lengths": (
        b"POST /items HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef",
        400),
    "content-length-abc": (b"POST /items HTTP/1.1\r\n" + H + b"Content-Length: abc\r\n\r\n", 400),
    "content-length-negative": (b"POST /items HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400),
    "transfer-encoding-gzip": (
        b"POST /items HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n", 400),
    # Host
    "http11-without-host": (b"GET /plaintext HTTP/1.1\r\n\r\n", 400),
    "two-host-headers": (b"GET /plaintext HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    # header syntax
    "obsolete-line-folding-space": (
        b"GET /plaintext HTTP/1.1\r\n" + H + b"X-A: one\r\n two\r\n\r\n", 400),
    "obsolete-line-folding-tab": (
        b"GET /plaintext HTTP/1.1\r\n" + H + b"X-A: one\r\n\ttwo\r\n\r\n", 400),
    "bare-cr-in-header": (b"GET /plaintext HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n", 400),
    "ctl-0x01-in-header-value": (b"GET /plaintext HTTP/1.1\r\n" + H + b"X-A: a\x01b\r\n\r\n", 400),
    "del-0x7f-in-header-value": (b"GET /plaintext HTTP/1.1\r\n" + H + b"X-A: a\x7fb\r\n\r\n", 400),
    "header-without-colon": (b"GET /plaintext HTTP/1.1\r\n" + H + b"X-A b\r\n\r\n", 400),
    "space-before-colon": (b"GET /plaintext HTTP/1.1\r\nHost : t\r\n\r\n", 400),
    # request line
    "request-line-garbage": (b"HELLO\r\n\r\n", 400),
    "request-line-method-only": (b"GET\r\n\r\n", 400),
    # version
    "http-2.0": (b"GET /plaintext HTTP/2.0\r\n" + H + b"\r\n", 505),
    "http-3.1": (b"GET /plaintext HTTP/3.1\r\n" + H + b"\r\n", 505),
}


def send_bad(server, data):
    conn = server.connect()
    conn.send(data)
    return conn, conn.read_response(timeout=5.0)


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_gets_exact_status(server, case):
    data, status = BAD_REQUESTS[case]
    conn, resp = send_bad(server, data)
    with conn:
        assert resp.status == status, resp
        if status == 400:
            assert resp.has_token("Connection", "close"), resp
            closed, extra = conn.closed_within(3.0)
            assert closed, "connection left open after a 400"
            assert extra == b"", f"bytes after the 400: {extra!r}"
    server.assert_healthy()


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_answer_is_json_detail(server, case):
    data, status = BAD_REQUESTS[case]
    conn, resp = send_bad(server, data)
    with conn:
        assert resp.status == status, resp
        assert resp.header("Content-Type", "").startswith("application/json"), resp
        body = resp.json()
        assert isinstance(body, dict) and isinstance(body.get("detail"), str), body
        assert int(resp.header("Content-Length")) == len(resp.body)


def test_bad_request_after_good_one_on_same_connection(server):
    """A protocol error mid-connection: the earlier answer stands, then 400 and close."""
    with server.connect() as conn:
        conn.send(b"GET /plaintext HTTP/1.1\r\n" + H + b"\r\n"
                  b"GET /plaintext HTTP/1.1\r\n" + H + b"X-A: one\r\n two\r\n\r\n")
        first = conn.read_response()
        assert first.status == 200 and first.body == b"Hello, World!"
        second = conn.read_response()
        assert second.status == 400, second
        closed, _ = conn.closed_within(3.0)
        assert closed


def test_smuggled_request_in_body_is_not_executed(server):
    """CL+TE: a front end reading Content-Length and one reading chunked disagree; roost must
    reject the request rather than pick one and run the smuggled GET."""
    smuggled = b"0\r\n\r\nGET /json HTTP/1.1\r\n" + H + b"\r\n"
    with server.connect() as conn:
        conn.send(b"POST /items HTTP/1.1\r\n" + H + b"Content-Type: application/json\r\n"
                  b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(smuggled)
                  + smuggled)
        resp = conn.read_response()
        assert resp.status == 400, resp
        closed, extra = conn.closed_within(3.0)
    assert closed
    assert b"Hello, World!" not in extra
