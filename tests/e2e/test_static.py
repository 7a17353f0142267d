"""Static files (--static URL_PREFIX=DIR): bytes, ETag / Last-Modified and 304s, Range (206, 416),
HEAD, types from /etc/mime.types, index.html, and nothing outside DIR whatever the path says."""

import email.utils
import os
import socket
import threading
import time

import pytest

from conftest import RawConnection, metric_sum

SECRET = b"top secret, outside the static folder\n"
BIG = 100 * 1024 * 1024


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    base = tmp_path_factory.mktemp("static")
    (base / "secret.txt").write_bytes(SECRET)
    www = base / "www"
    (www / "sub").mkdir(parents=True)
    (www / "noindex").mkdir()
    (www / "hello.txt").write_bytes(b"Hello, static world!\n")
    (www / "digits.txt").write_bytes(b"0123456789")
    (www / "sub" / "index.html").write_bytes(b"<h1>sub</h1>\n")
    (www / "noindex" / "x.txt").write_bytes(b"x")
    for name in ("style.css", "app.js", "data.json", "pic.png", "file.unknownext", "README"):
        (www / name).write_bytes(b"content of " + name.encode())
    os.symlink(base / "secret.txt", www / "out_abs")
    os.symlink("../secret.txt", www / "out_rel")
    os.symlink(base, www / "out_dir")
    os.symlink("hello.txt", www / "in_link.txt")
    with open(www / "big.bin", "wb") as f:  # sparse: 100 MB on disk costs nothing
        f.truncate(BIG)
    return base


@pytest.fixture
def srv(shared_servers, tree):
    with shared_servers.use("--threads", "2", "--static", f"/static={tree / 'www'}") as s:
        yield s


def test_file_is_served_with_its_length_type_etag_and_last_modified(srv, tree):
    resp = srv.get("/static/hello.txt")
    assert resp.status == 200, resp
    assert resp.body == b"Hello, static world!\n"
    assert resp.header("Content-Length") == str(len(resp.body))
    assert resp.header("Content-Type") == "text/plain"
    assert resp.header("Accept-Ranges") == "bytes"
    st = os.stat(tree / "www" / "hello.txt")
    assert resp.header("ETag") == f'"{int(st.st_mtime):x}-{st.st_size:x}"'  # nginx's form
    assert email.utils.parsedate_to_datetime(resp.header("Last-Modified")).timestamp() == int(
        st.st_mtime
    )


def test_if_none_match_with_the_etag_gives_304_without_a_body(srv):
    etag = srv.get("/static/hello.txt").header("ETag")
    for inm in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
        resp = srv.get("/static/hello.txt", headers={"If-None-Match": inm})
        assert resp.status == 304, (inm, resp)
        assert resp.body == b""
        assert resp.header("ETag") == etag
    resp = srv.get("/static/hello.txt", headers={"If-None-Match": '"other"'})
    assert resp.status == 200 and resp.body == b"Hello, static world!\n"


def test_if_modified_since_gives_304_unless_the_file_is_newer(srv):
    lastmod = srv.get("/static/hello.txt").header("Last-Modified")
    resp = srv.get("/static/hello.txt", headers={"If-Modified-Since": lastmod})
    assert resp.status == 304, resp
    old = email.utils.formatdate(0, usegmt=True)
    resp = srv.get("/static/hello.txt", headers={"If-Modified-Since": old})
    assert resp.status == 200 and resp.body == b"Hello, static world!\n"
    # If-None-Match decides alone when both are sent (RFC 9110 13.2.2).
    resp = srv.get(
        "/static/hello.txt", headers={"If-Modified-Since": lastmod, "If-None-Match": '"other"'}
    )
    assert resp.status == 200


@pytest.mark.parametrize(
    "rng,body,content_range",
    [
        ("bytes=2-4", b"234", "bytes 2-4/10"),
        ("bytes=7-", b"789", "bytes 7-9/10"),
        ("bytes=-3", b"789", "bytes 7-9/10"),
        ("bytes=5-100", b"56789", "bytes 5-9/10"),
        ("bytes=-100", b"0123456789", "bytes 0-9/10"),
    ],
)
def test_single_range_is_206_with_content_range(srv, rng, body, content_range):
    resp = srv.get("/static/digits.txt", headers={"Range": rng})
    assert resp.status == 206, resp
    assert resp.body == body
    assert resp.header("Content-Range") == content_range
    assert resp.header("Content-Length") == str(len(body))


@pytest.mark.parametrize("rng", ["bytes=10-", "bytes=50-60", "bytes=-0"])
def test_unsatisfiable_range_is_416_with_the_size(srv, rng):
    resp = srv.get("/static/digits.txt", headers={"Range": rng})
    assert resp.status == 416, resp
    assert resp.header("Content-Range") == "bytes */10"


@pytest.mark.parametrize("rng", ["bytes=0-1,4-5", "items=0-1", "bytes=5-2", "bytes=x-"])
def test_several_or_malformed_ranges_get_the_whole_file(srv, rng):
    resp = srv.get("/static/digits.txt", headers={"Range": rng})
    assert resp.status == 200, resp
    assert resp.body == b"0123456789"


def test_if_range_with_an_old_etag_gets_the_whole_file(srv):
    etag = srv.get("/static/digits.txt").header("ETag")
    resp = srv.get("/static/digits.txt", headers={"Range": "bytes=0-1", "If-Range": etag})
    assert resp.status == 206 and resp.body == b"01"
    resp = srv.get("/static/digits.txt", headers={"Range": "bytes=0-1", "If-Range": '"old"'})
    assert resp.status == 200 and resp.body == b"0123456789"


def test_head_has_the_length_and_no_body_and_the_connection_goes_on(srv):
    with srv.connect() as conn:
        conn.send(b"HEAD /static/hello.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        resp = conn.read_response(head=True)
        assert resp.status == 200
        assert resp.header("Content-Length") == "21"
        assert resp.header("ETag")
        # No body bytes came after the head: the next answer on the connection is intact.
        again = conn.request("GET", "/static/digits.txt")
    assert (again.status, again.body) == (200, b"0123456789")


def test_pipelined_files_and_other_answers_keep_their_order(srv):
    with srv.connect() as conn:
        conn.send(
            b"GET /static/hello.txt HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /static/digits.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=1-2\r\n\r\n"
            b"GET /json HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        a, b, c, d = (conn.read_response() for _ in range(4))
        assert a.body == b"Hello, static world!\n"
        assert b.json() == {"status": "ok"}
        assert c.status == 206 and c.body == b"12"
        assert d.json() == {"message": "Hello, World!"}


def system_mime_type(ext):
    """What /etc/mime.types names first for ext (the server reads the same file)."""
    with open("/etc/mime.types") as f:
        for line in f:
            words = line.split()
            if words and not words[0].startswith("#") and ext in words[1:]:
                return words[0]
    return "application/octet-stream"


@pytest.mark.parametrize(
    "name,ctype",
    [
        ("style.css", "text/css"),
        ("app.js", system_mime_type("js")),  # text/javascript or application/javascript
        ("data.json", "application/json"),
        ("pic.png", "image/png"),
        ("file.unknownext", "application/octet-stream"),
        ("README", "application/octet-stream"),
    ],
)
def test_content_type_comes_from_mime_types(srv, name, ctype):
    resp = srv.get(f"/static/{name}")
    assert resp.status == 200
    assert resp.header("Content-Type") == ctype
    assert resp.body == b"content of " + name.encode()


def test_directory_with_index_html_serves_it(srv):
    for target in ("/static/sub/", "/static/sub"):
        resp = srv.get(target)
        assert resp.status == 200, (target, resp)
        assert resp.body == b"<h1>sub</h1>\n"
        assert resp.header("Content-Type") == "text/html"


def test_directory_without_index_html_is_404(srv):
    for target in ("/static/noindex/", "/static/noindex", "/static/", "/static/nothing-here.txt"):
        resp = srv.get(target)
        assert resp.status == 404, (target, resp)
        assert resp.json() == {"detail": "Not Found"}


@pytest.mark.parametrize(
    "target",
    [
        "/static/../secret.txt",
        "/static/sub/../../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/%2E%2E/secret.txt",
        "/static/..%2fsecret.txt",
        "/static/..%2Fsecret.txt",
        "/static/%2e%2e%2fsecret.txt",
        "/static/sub%2f..%2f..%2fsecret.txt",
        "/static/%252e%252e/secret.txt",
        "/static/..%5csecret.txt",
        "/static//" + "secret.txt",
        "/static/out_abs",
        "/static/out_rel",
        "/static/out_dir/secret.txt",
        "/static/%00/secret.txt",
    ],
)
def test_nothing_outside_the_folder_is_served(srv, tree, target):
    with srv.connect() as conn:
        # Sent as is: no client-side normalisation of the dot segments.
        conn.send(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        resp = conn.read_response()
    assert resp.status in (400, 404), (target, resp)
    assert SECRET not in resp.body


def test_symlink_inside_the_folder_is_served(srv):
    resp = srv.get("/static/in_link.txt")
    assert resp.status == 200 and resp.body == b"Hello, static world!\n"


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@pytest.mark.deadline(120)
def test_a_100mb_file_goes_out_whole_while_the_server_rss_stays_low(srv):
    pid = srv.proc.pid
    srv.get("/static/hello.txt")
    before = rss_kb(pid)
    peak = [before]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kb(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
            s.sendall(b"GET /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(65536)
            head, body = head.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 200 ")
            assert f"Content-Length: {BIG}".encode() in head
            got = len(body)
            zeros = body.count(0) == len(body)
            while got < BIG:
                chunk = s.recv(1 << 20)
                assert chunk, f"closed after {got} bytes"
                got += len(chunk)
                if zeros and chunk.count(0) != len(chunk):
                    zeros = False
            assert got == BIG and zeros
    finally:
        stop.set()
        sampler.join()
    # The file is never read into the server's memory: it grows by far less than 100 MB.
    assert peak[0] - before < 20 * 1024, (before, peak[0])
    srv.assert_healthy()


def test_files_open_at_once_are_bounded_and_counted(start_server, tree):
    srv = start_server("--threads", "1", "--static", f"/s={tree / 'www'}", "--static-max-open", "1")
    # A client that reads nothing keeps the big file open in the socket's write queue.
    stalled = socket.create_connection(("127.0.0.1", srv.port))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(b"GET /s/big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
    deadline = time.monotonic() + 5
    while True:
        resp = srv.get("/s/hello.txt")
        if resp.status == 503 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert resp.status == 503, resp
    assert metric_sum(srv.metrics(), "roost_limit_hits_total", limit="static_open_files") >= 1
    stalled.close()  # the file closes with its connection, and the next answer works
    deadline = time.monotonic() + 5
    while srv.get("/s/hello.txt").status != 200:
        assert time.monotonic() < deadline, "the open file was never let go"
        time.sleep(0.05)


@pytest.mark.deadline(60)
def test_a_slow_reader_that_keeps_reading_is_not_cut_by_the_write_timeout(start_server, tree):
    """--write-timeout-s drops a client that reads nothing; one that reads slowly but steadily
    gets the whole file even when it takes several times that long."""
    size = 24 * 1024 * 1024
    with open(tree / "www" / "slow.bin", "wb") as f:
        f.truncate(size)
    srv = start_server("--threads", "1", "--static", f"/s={tree / 'www'}", "--write-timeout-s", "1")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(b"GET /s/slow.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        got, start = 0, time.monotonic()
        while True:
            chunk = s.recv(256 * 1024)
            if not chunk:
                break
            got += len(chunk)
            if got >= size:
                break
            time.sleep(0.02)  # at most about 12 MB/s: a few seconds for the file
        elapsed = time.monotonic() - start
    head_len = got - size
    assert head_len > 0, f"closed after {got} bytes in {elapsed:.1f} s"
    assert elapsed > 1.5, f"too fast to prove anything ({elapsed:.1f} s)"
