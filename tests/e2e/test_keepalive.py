"""Persistent connections: keep-alive by default on HTTP/1.1, opt-in on HTTP/1.0, and
`Connection: close` honoured both ways."""

REQ_11 = b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n"


def test_many_requests_share_one_http11_connection(server):
    with server.connect() as conn:
        for i in range(50):
            target = "/plaintext" if i % 2 else "/json"
            resp = conn.request("GET", target)
            assert resp.status == 200, (i, resp)
            assert not resp.has_token("Connection", "close"), (i, resp)
        closed, _ = conn.closed_within(0.3)
        assert not closed, "server closed a keep-alive connection it had no reason to close"


def test_http10_without_keepalive_gets_response_then_close(server):
    with server.connect() as conn:
        conn.send(b"GET /plaintext HTTP/1.0\r\n\r\n")
        resp = conn.read_response()
        assert resp.status == 200
        assert resp.body == b"Hello, World!"
        assert resp.version in ("HTTP/1.0", "HTTP/1.1")
        assert not resp.has_token("Connection", "keep-alive")
        closed, extra = conn.closed_within(3.0)
    assert closed, "HTTP/1.0 connection without keep-alive stayed open"
    assert extra == b""


def test_http10_with_keepalive_stays_open(server):
    with server.connect() as conn:
        conn.send(b"GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        first = conn.read_response()
        assert first.status == 200 and first.body == b"Hello, World!"
        assert first.has_token("Connection", "keep-alive"), first
        conn.send(b"GET /json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        second = conn.read_response()
        assert second.status == 200 and second.json() == {"message": "Hello, World!"}
        assert second.has_token("Connection", "keep-alive"), second
        # Without the header again, HTTP/1.0 falls back to one response then close.
        conn.send(b"GET /healthz HTTP/1.0\r\n\r\n")
        third = conn.read_response()
        assert third.status == 200
        closed, _ = conn.closed_within(3.0)
    assert closed


def test_connection_close_on_http11_is_echoed_then_closed(server):
    with server.connect() as conn:
        conn.send(b"GET /plaintext HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        resp = conn.read_response()
        assert resp.status == 200 and resp.body == b"Hello, World!"
        assert resp.has_token("Connection", "close"), resp
        closed, extra = conn.closed_within(3.0)
    assert closed, "server kept the connection open after Connection: close"
    assert extra == b""


def test_connection_close_token_is_case_insensitive(server):
    with server.connect() as conn:
        conn.send(b"GET /plaintext HTTP/1.1\r\nHost: t\r\nConnection: Close\r\n\r\n")
        resp = conn.read_response()
        assert resp.status == 200
        assert resp.has_token("Connection", "close"), resp
        closed, _ = conn.closed_within(3.0)
    assert closed


def test_keepalive_survives_error_responses(server):
    """404, 405 and 422 are answers, not protocol errors: the connection stays usable."""
    with server.connect() as conn:
        assert conn.request("GET", "/no-such-route").status == 404
        assert conn.request("DELETE", "/plaintext").status == 405
        assert conn.request("POST", "/items", {"Content-Type": "application/json"},
                            b'{"price": 0}').status == 422
        resp = conn.request("GET", "/plaintext")
        assert resp.status == 200 and resp.body == b"Hello, World!"


def test_post_with_body_then_get_on_same_connection(server):
    with server.connect() as conn:
        for i in range(5):
            resp = conn.request("POST", "/items", {"Content-Type": "application/json"},
                                b'{"name":"k%d","price":%d}' % (i, i + 1))
            assert resp.status == 200, resp
            assert resp.json()["name"] == f"k{i}"
            assert conn.request("GET", "/plaintext").body == b"Hello, World!"
