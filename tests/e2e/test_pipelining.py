"""HTTP/1.1 pipelining: requests sent in one write are answered in request order, whatever mix of
loop, timer and worker handlers they hit."""

import json
import time


def get(target, extra=""):
    return f"GET {target} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode()


def post_item(name, price):
    body = json.dumps({"name": name, "price": price}).encode()
    return (
        b"POST /items HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body


def test_pipelined_requests_answered_in_order(server):
    with server.connect(timeout=10) as conn:
        t0 = time.monotonic()
        conn.send(
            get("/slow-sync?seconds=1")
            + get("/plaintext")
            + get("/slow-async?seconds=0.3")
            + get("/json")
            + get("/no-such-route")
            + post_item("piped", 2)
            + get("/healthz")
        )
        slow_sync = conn.read_response(timeout=10)
        first_done = time.monotonic() - t0
        plaintext = conn.read_response()
        slow_async = conn.read_response()
        as_json = conn.read_response()
        missing = conn.read_response()
        item = conn.read_response()
        health = conn.read_response()

    assert slow_sync.status == 200 and slow_sync.header("Content-Type", "").startswith(
        "application/json"), slow_sync
    assert first_done >= 0.99, "the worker response came back before its second elapsed"
    assert plaintext.status == 200 and plaintext.body == b"Hello, World!", plaintext
    assert slow_async.status == 200 and slow_async.header("Content-Type", "").startswith(
        "application/json"), slow_async
    assert as_json.status == 200 and as_json.json() == {"message": "Hello, World!"}, as_json
    assert missing.status == 404 and missing.json() == {"detail": "Not Found"}, missing
    assert item.status == 200 and item.json()["name"] == "piped", item
    assert health.status == 200 and health.json() == {"status": "ok"}, health


def test_immediate_response_waits_for_earlier_worker_response(server):
    """The /plaintext answer is ready at once but must not overtake the slow one."""
    with server.connect(timeout=10) as conn:
        conn.send(get("/slow-sync?seconds=1") + get("/plaintext") + get("/slow-sync?seconds=0.2")
                  + get("/plaintext"))
        statuses = []
        bodies = []
        for _ in range(4):
            resp = conn.read_response(timeout=10)
            statuses.append(resp.status)
            bodies.append(resp.body)
    assert statuses == [200, 200, 200, 200]
    assert bodies[1] == b"Hello, World!" and bodies[3] == b"Hello, World!"
    assert bodies[0] != b"Hello, World!" and bodies[2] != b"Hello, World!"


def test_fifty_pipelined_requests_all_answered_in_order(server):
    targets = ["/plaintext", "/json", "/healthz", "/no-such-route", "/slow-async?seconds=0"] * 10
    with server.connect(timeout=10) as conn:
        conn.send(b"".join(get(t) for t in targets))
        for i, target in enumerate(targets):
            resp = conn.read_response(timeout=10)
            if target == "/plaintext":
                assert resp.body == b"Hello, World!", (i, resp)
            elif target == "/json":
                assert resp.json() == {"message": "Hello, World!"}, (i, resp)
            elif target == "/healthz":
                assert resp.json() == {"status": "ok"}, (i, resp)
            elif target == "/no-such-route":
                assert resp.status == 404, (i, resp)
            else:
                assert resp.status == 200, (i, resp)
                assert resp.json() != {"message": "Hello, World!"}, (i, resp)


def test_a_pipeline_deeper_than_max_pipeline_behind_a_slow_request(server):
    """With 64 answers waiting behind a slow first one (--max-pipeline), reading stops and the
    rest of what was read is kept: it is answered, in order, once the pipeline has room again,
    without the client sending anything more."""
    targets = ["/slow-sync?seconds=0.3"] + [f"/plaintext?i={i}" for i in range(299)]
    with server.connect(timeout=10) as conn:
        conn.send(b"".join(get(t) for t in targets))
        assert conn.read_response(timeout=10).status == 200
        for i in range(299):
            resp = conn.read_response(timeout=10)
            assert resp.status == 200 and resp.body == b"Hello, World!", (i, resp)
        conn.send(get("/json"))
        assert conn.read_response().json() == {"message": "Hello, World!"}


def test_connection_close_in_the_kept_back_part_of_a_pipeline_closes(server):
    """The request that says Connection: close was read while the pipeline was full: once it is
    answered the server closes the connection, as it does for one answered straight away."""
    targets = ["/slow-sync?seconds=0.3"] + [f"/plaintext?i={i}" for i in range(98)]
    data = b"".join(get(t) for t in targets) + get("/plaintext", "Connection: close\r\n")
    with server.connect(timeout=10) as conn:
        conn.send(data)
        for i in range(100):
            assert conn.read_response(timeout=10).status == 200, i
        conn.sock.settimeout(3)
        assert conn.sock.recv(1) == b"", "the connection stayed open after Connection: close"


def test_pipeline_split_mid_request_across_writes(server):
    data = get("/plaintext") + post_item("split", 3) + get("/json")
    with server.connect() as conn:
        for i in range(0, len(data), 11):
            conn.send(data[i : i + 11])
            time.sleep(0.005)
        assert conn.read_response().body == b"Hello, World!"
        assert conn.read_response().json()["name"] == "split"
        assert conn.read_response().json() == {"message": "Hello, World!"}


def test_requests_after_connection_close_are_not_answered(server):
    """RFC 9112 9.6: after the response to a request with `close`, the server closes and
    processes nothing further on that connection."""
    with server.connect() as conn:
        conn.send(get("/plaintext") + get("/json", "Connection: close\r\n") + get("/healthz"))
        first = conn.read_response()
        second = conn.read_response()
        assert first.body == b"Hello, World!"
        assert second.json() == {"message": "Hello, World!"}
        assert second.has_token("Connection", "close")
        closed, extra = conn.closed_within(3.0)
    assert closed
    assert extra == b"", f"server answered a request sent after Connection: close: {extra!r}"
