"""The gzip middleware: what a client that sends Accept-Encoding gets (a body that gunzips to the
plain one, Vary), what it must never get compressed (q=0, small bodies, HEAD, 204/206/304, a body
encoded already, images), streamed bodies compressed and readable as they come, --gzip off and
the counters."""

import gzip
import json
import time
import zlib

import pytest

from conftest import RawConnection, metric_sum

GZ = {"Accept-Encoding": "gzip"}


@pytest.fixture
def dbg(shared_servers):
    with shared_servers.use("--debug-routes") as srv:
        yield srv


def plain_large(srv):
    resp = srv.get("/large-data")
    assert resp.status == 200
    assert resp.header("Content-Encoding") is None
    return resp


def test_large_data_is_the_articles_list_of_10000_items(server):
    items = plain_large(server).json()
    assert isinstance(items, list) and len(items) == 10000
    assert items[0] == {"id": 0, "data": "x" * 100}
    assert items[9999] == {"id": 9999, "data": "x" * 100}


def test_gzip_body_decompresses_to_the_plain_body(server):
    plain = plain_large(server)
    resp = server.get("/large-data", headers=GZ)
    assert resp.status == 200
    assert resp.header("Content-Encoding") == "gzip"
    assert resp.has_token("Vary", "Accept-Encoding")
    assert int(resp.header("Content-Length")) == len(resp.body)
    assert len(resp.body) < len(plain.body) // 10
    assert gzip.decompress(resp.body) == plain.body
    assert resp.header("Content-Type", "").startswith("application/json")


@pytest.mark.parametrize(
    "accept",
    ["gzip, deflate, br", "deflate;q=0.5, gzip;q=0.1", "*", "br, *;q=0.3", "GZIP", "x-gzip"],
)
def test_accept_encoding_forms_that_allow_gzip(server, accept):
    resp = server.get("/large-data", headers={"Accept-Encoding": accept})
    assert resp.header("Content-Encoding") == "gzip", accept
    assert json.loads(gzip.decompress(resp.body))[5]["id"] == 5


@pytest.mark.parametrize(
    "accept", ["gzip;q=0", "gzip; q=0.000", "br, deflate", "*, gzip;q=0", "*;q=0", "identity"]
)
def test_accept_encoding_forms_that_refuse_gzip(server, accept):
    resp = server.get("/large-data", headers={"Accept-Encoding": accept})
    assert resp.status == 200
    assert resp.header("Content-Encoding") is None, accept
    assert resp.has_token("Vary", "Accept-Encoding")  # the answer still depends on the field
    assert len(resp.json()) == 10000


def test_no_accept_encoding_gets_the_plain_body(server):
    resp = plain_large(server)
    assert resp.has_token("Vary", "Accept-Encoding")


def test_small_body_is_not_compressed(server):
    resp = server.get("/json", headers=GZ)
    assert resp.status == 200
    assert resp.header("Content-Encoding") is None
    assert resp.header("Vary") is None
    assert resp.json() == {"message": "Hello, World!"}


def test_min_bytes_bound_is_1000(dbg):
    below = dbg.get("/debug/body?bytes=999", headers=GZ)
    at = dbg.get("/debug/body?bytes=1000", headers=GZ)
    assert below.header("Content-Encoding") is None and len(below.body) == 999
    assert at.header("Content-Encoding") == "gzip"
    assert len(gzip.decompress(at.body)) == 1000


def test_head_is_never_compressed(server):
    get = plain_large(server)
    resp = server.request("HEAD", "/large-data", headers=GZ)
    assert resp.status == 200
    assert resp.header("Content-Encoding") is None
    assert resp.header("Content-Length") == str(len(get.body))
    assert resp.body == b""


@pytest.mark.parametrize("status", [204, 206, 304])
def test_bodyless_and_partial_statuses_are_untouched(dbg, status):
    resp = dbg.get(f"/debug/body?bytes=5000&status={status}", headers=GZ)
    assert resp.status == status
    assert resp.header("Content-Encoding") is None
    if status == 206:
        assert len(resp.body) == 5000 and resp.body[:3] == b"abc"


def test_already_encoded_body_is_untouched(dbg):
    resp = dbg.get("/debug/body?bytes=5000&encoding=br", headers=GZ)
    assert resp.header_all("Content-Encoding") == ["br"]
    assert len(resp.body) == 5000 and resp.body[:7] == b"abcdefg"


@pytest.mark.parametrize(
    "ctype",
    ["image/png", "video/mp4", "audio/ogg", "application/zip", "application/gzip",
     "application/octet-stream"],
)
def test_compressed_types_are_untouched(dbg, ctype):
    resp = dbg.get(f"/debug/body?bytes=5000&type={ctype}", headers=GZ)
    assert resp.header("Content-Encoding") is None, ctype
    assert len(resp.body) == 5000


def test_svg_is_compressed(dbg):
    resp = dbg.get("/debug/body?bytes=5000&type=image/svg%2Bxml", headers=GZ)
    assert resp.header("Content-Encoding") == "gzip"


def test_streamed_body_is_compressed_and_whole(server):
    plain = server.get("/download-large-file")
    resp = server.get("/download-large-file", headers=GZ)
    assert resp.has_token("Transfer-Encoding", "chunked")
    assert resp.header("Content-Encoding") == "gzip"
    assert gzip.decompress(resp.body) == plain.body
    assert plain.body.count(b"\n") == 1000


@pytest.mark.deadline(30)
def test_streamed_gzip_is_readable_as_it_comes(server):
    """Each write is sync-flushed: the first lines inflate long before the stream ends."""
    with RawConnection(server.port, timeout=10) as conn:
        conn.send(
            "GET /download-large-file?lines=40&line_delay_ms=50 HTTP/1.1\r\nHost: t\r\n"
            "Accept-Encoding: gzip\r\n\r\n"
        )
        start = time.monotonic()
        deadline = start + 10
        conn._read_until(b"\r\n\r\n", deadline)
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        text = b""
        while b"Line 0: " not in text:
            size = int(conn._read_until(b"\r\n", deadline).strip(), 16)
            assert size > 0, "the stream ended before its first line inflated"
            text += inflater.decompress(conn._read_exact(size + 2, deadline)[:-2])
        first_at = time.monotonic() - start
        while True:
            size = int(conn._read_until(b"\r\n", deadline).strip(), 16)
            if size == 0:
                break
            text += inflater.decompress(conn._read_exact(size + 2, deadline)[:-2])
        total = time.monotonic() - start
    assert text.count(b"\n") == 40 and text.startswith(b"Line 0: x")
    assert total > 1.5  # 39 pauses of 50 ms
    assert first_at < total / 3


def test_gzip_off_never_compresses(shared_servers):
    with shared_servers.use("--gzip", "off") as srv:
        resp = srv.get("/large-data", headers=GZ)
        assert resp.header("Content-Encoding") is None
        assert resp.header("Vary") is None
        assert len(resp.json()) == 10000


def test_gzip_level_and_min_bytes_flags(shared_servers):
    with shared_servers.use("--gzip-level", "1", "--gzip-min-bytes", "20") as srv:
        resp = srv.get("/json", headers=GZ)
        assert resp.header("Content-Encoding") == "gzip"
        assert json.loads(gzip.decompress(resp.body)) == {"message": "Hello, World!"}


def test_counters_show_compressed_and_skipped_answers(shared_servers):
    with shared_servers.use("--gzip-min-bytes", "1000") as srv:
        before = srv.metrics()
        srv.get("/large-data", headers=GZ)
        srv.get("/large-data", headers={"Accept-Encoding": "gzip;q=0"})
        srv.get("/json", headers=GZ)
        after = srv.metrics()

        def delta(name, **labels):
            return metric_sum(after, name, **labels) - metric_sum(before, name, **labels)

        assert delta("roost_gzip_responses_total", mode="whole") == 1
        assert delta("roost_gzip_skipped_total", reason="not_accepted") >= 1
        assert delta("roost_gzip_skipped_total", reason="small") >= 1
        assert delta("roost_gzip_bytes_in_total") >= 1_000_000
        assert 0 < delta("roost_gzip_bytes_out_total") < 100_000


@pytest.mark.deadline(40)
def test_sse_is_compressed_and_each_event_inflates_when_sent(server):
    body = json.dumps({"type": "sleep", "payload": {"steps": 3, "seconds": 0.5}}).encode()
    resp = server.request("POST", "/tasks", {"Content-Type": "application/json"}, body)
    tid = resp.json()["task_id"]
    with RawConnection(server.port, timeout=15) as conn:
        conn.send(f"GET /tasks/{tid}/events HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n")
        start = time.monotonic()
        deadline = start + 15
        head = conn._read_until(b"\r\n\r\n", deadline).decode().lower()
        assert "content-encoding: gzip" in head and "text/event-stream" in head
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        text, first_event_at = b"", None
        while True:
            size = int(conn._read_until(b"\r\n", deadline).strip(), 16)
            if size == 0:
                break
            text += inflater.decompress(conn._read_exact(size + 2, deadline)[:-2])
            if first_event_at is None and b"event: task" in text:
                first_event_at = time.monotonic() - start
        total = time.monotonic() - start
    assert inflater.eof  # the gzip member is complete
    events = [b for b in text.decode().split("\n\n") if "event: task" in b]
    assert len(events) >= 3
    assert '"status":"completed"' in events[-1]
    assert total > 1.2 and first_event_at < total / 2


def gzip_cache_delta(before, after, result):
    return metric_sum(after, "roost_gzip_cache_total", result=result) - metric_sum(
        before, "roost_gzip_cache_total", result=result
    )


def test_a_shared_body_is_compressed_once_and_its_gzip_kept(shared_servers):
    with shared_servers.use("--gzip-cache-bytes", "4000000") as srv:
        plain = plain_large(srv).body
        before = srv.metrics()
        bodies = [srv.get("/large-data", headers=GZ) for _ in range(3)]
        after = srv.metrics()
        for resp in bodies:
            assert resp.header("Content-Encoding") == "gzip"
            assert gzip.decompress(resp.body) == plain
        assert bodies[0].body == bodies[1].body == bodies[2].body
        hits = gzip_cache_delta(before, after, "hit")
        assert hits >= 2 and hits + gzip_cache_delta(before, after, "stored") == 3
        # a client that refuses gzip still gets the plain bytes
        assert srv.get("/large-data", headers={"Accept-Encoding": "identity"}).body == plain


@pytest.mark.parametrize("cache_bytes, too_big", [("100000", 2), ("0", 0)])
def test_gzip_kept_only_within_its_bound(shared_servers, cache_bytes, too_big):
    # 100 kB cannot hold the 1.2 MB body it was made from; 0 turns keeping off
    with shared_servers.use("--gzip-cache-bytes", cache_bytes) as srv:
        plain = plain_large(srv).body
        before = srv.metrics()
        for _ in range(2):
            assert gzip.decompress(srv.get("/large-data", headers=GZ).body) == plain
        after = srv.metrics()
        assert gzip_cache_delta(before, after, "hit") == 0
        assert gzip_cache_delta(before, after, "stored") == 0
        assert gzip_cache_delta(before, after, "too_big") == too_big
