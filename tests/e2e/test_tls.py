"""TLS (--tls-cert/--tls-key, --tls-port): HTTPS and wss:// with a CA and certificates made by
the openssl command in a temporary folder; TLS 1.2 and 1.3 only, ALPN http/1.1, resumption by
tickets, a plain-HTTP request or garbage closed without harm, the handshake timeout, and SIGHUP
serving a new certificate to new connections while an old keep-alive connection keeps working."""

import os
import signal
import socket
import ssl
import subprocess
import time

import pytest

from conftest import RawConnection, build_request, free_port, metric_sum
from wsclient import OP_TEXT, WsConn, accept_for, new_key, unique, upgrade_headers


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_cert(folder, name, ca="ca"):
    """A key and a certificate for localhost / 127.0.0.1 signed by the CA in folder."""
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
            f"{name}.csr", "-subj", f"/CN={name}", cwd=folder)
    (folder / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", "ext.cnf",
            cwd=folder)
    return folder / f"{name}.pem", folder / f"{name}.key"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "2", "-subj", "/CN=roost test CA", cwd=folder)
    cert, key = make_cert(folder, "server")
    return {"dir": folder, "ca": folder / "ca.pem", "cert": cert, "key": key}


def tls_flags(pki, *more):
    return ("--threads", "2", "--tls-cert", pki["cert"], "--tls-key", pki["key"], *more)


@pytest.fixture(scope="module")
def tls_port():
    return free_port()


@pytest.fixture
def beside(shared_servers, pki, tls_port):
    """Plain HTTP on --port (readiness, metrics) and TLS on --tls-port."""
    with shared_servers.use(*tls_flags(pki, "--tls-port", tls_port,
                                       "--tls-handshake-timeout-s", "0.5")) as srv:
        srv.tls_port = tls_port
        yield srv


def client_ctx(pki, **kw):
    ctx = ssl.create_default_context(cafile=str(pki["ca"]))
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def tls_conn(port, ctx, timeout=5.0, session=None):
    """A RawConnection whose socket speaks TLS (the handshake done)."""
    raw = RawConnection.__new__(RawConnection)
    raw.timeout = timeout
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    raw.sock = ctx.wrap_socket(s, server_hostname="localhost", session=session)
    raw.buf, raw.eof, raw.reset = b"", False, False
    return raw


def https_get(port, pki, target, ctx=None):
    with tls_conn(port, ctx or client_ctx(pki)) as c:
        c.send(build_request("GET", target, {"Connection": "close"}))
        return c.read_response()


def curl(pki, url, *more):
    return subprocess.run(["curl", "-sS", "--cacert", str(pki["ca"]), *more, url],
                          capture_output=True, text=True, timeout=20)


def test_curl_gets_https_with_the_ca(beside, pki):
    done = curl(pki, f"https://localhost:{beside.tls_port}/json", "-v")
    assert done.returncode == 0, done.stderr
    assert '"message"' in done.stdout
    assert "ALPN: server accepted http/1.1" in done.stderr
    done = curl(pki, f"https://localhost:{beside.tls_port}/healthz")
    assert done.stdout == '{"status":"ok"}'
    assert beside.get("/healthz").status == 200  # the plain port beside it


def test_keep_alive_and_pipelining_over_tls(beside, pki):
    with tls_conn(beside.tls_port, client_ctx(pki)) as c:
        c.send(build_request("GET", "/plaintext") * 3)
        for _ in range(3):
            resp = c.read_response()
            assert resp.status == 200 and resp.body == b"Hello, World!"
        c.send(build_request("GET", "/json"))
        assert c.read_response().json() == {"message": "Hello, World!"}


def test_a_pipeline_deeper_than_max_pipeline_over_tls(beside, pki):
    """Records read before the pipeline filled hold more requests: they are answered once the
    connection resumes, without waiting for more bytes from the client."""
    with tls_conn(beside.tls_port, client_ctx(pki), timeout=20) as c:
        c.send(build_request("GET", "/plaintext") * 300)  # --max-pipeline is 64
        for _ in range(300):
            resp = c.read_response(timeout=20)
            assert resp.status == 200 and resp.body == b"Hello, World!"


def test_a_pipeline_of_one_record_per_request_over_tls(beside, pki):
    """Many small records arriving while the head of the pipeline waits on a worker: each is
    decrypted from the loop's read buffer in place (tls.c's input BIO) and answered in order."""
    with tls_conn(beside.tls_port, client_ctx(pki), timeout=20) as c:
        # On a worker, so that the 64 of --max-pipeline are all waiting when the rest arrives.
        pad = {"X-Pad": "p" * 400}  # ~400 KiB in all: reads of the read buffer's whole size
        for i in range(1000):  # one TLS record each, sent back to back
            wait = 0.3 if i == 0 else 0  # the rest piles up in the socket meanwhile
            c.sock.sendall(build_request("GET", f"/slow-sync?seconds={wait}&i={i}", pad))
        for _ in range(1000):
            assert c.read_response(timeout=20).status == 200
        c.send(build_request("GET", "/json"))
        assert c.read_response().json() == {"message": "Hello, World!"}

def test_a_connection_idle_past_the_buffer_sweep_still_works(beside, pki):
    """A kept-alive connection idle for over a second has its record buffers freed (tls.c's
    net_tls_sweep); its next requests, in both directions, must not notice."""
    with tls_conn(beside.tls_port, client_ctx(pki)) as c:
        for _ in range(2):
            c.send(build_request("GET", "/plaintext"))
            assert c.read_response().body == b"Hello, World!"
            time.sleep(2.2)  # two sweeps: the first marks it idle, the second frees
        c.send(build_request("GET", "/plaintext", {"X-Pad": "p" * 6000}))  # a bigger record
        assert c.read_response().body == b"Hello, World!"
        c.send(build_request("GET", "/metrics"))  # a bigger answer
        resp = c.read_response()
        assert resp.status == 200 and b"roost_" in resp.body

def test_alpn_selects_http11(beside, pki):
    ctx = client_ctx(pki)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with tls_conn(beside.tls_port, ctx) as c:
        assert c.sock.selected_alpn_protocol() == "http/1.1"
        assert c.sock.version() in ("TLSv1.2", "TLSv1.3")


def test_tls_1_1_is_refused_and_1_2_accepted(beside, pki):
    def ctx_for(version):
        ctx = client_ctx(pki)
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # the client would allow 1.1; the server not
        ctx.minimum_version = ctx.maximum_version = version
        return ctx

    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        tls_conn(beside.tls_port, ctx_for(ssl.TLSVersion.TLSv1_1)).close()
    with tls_conn(beside.tls_port, ctx_for(ssl.TLSVersion.TLSv1_2)) as c:
        assert c.sock.version() == "TLSv1.2"
        c.send(build_request("GET", "/healthz"))
        assert c.read_response().status == 200
    beside.assert_healthy()


def test_session_resumption_tls12_by_ticket(beside, pki):
    ctx = client_ctx(pki)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with tls_conn(beside.tls_port, ctx) as c:
        session = c.sock.session
        assert not c.sock.session_reused
    with tls_conn(beside.tls_port, ctx, session=session) as c:
        assert c.sock.session_reused


def test_session_resumption_tls13_with_s_client(beside, pki, tmp_path):
    sess = tmp_path / "sess.pem"
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    base = ["openssl", "s_client", "-connect", f"127.0.0.1:{beside.tls_port}", "-CAfile",
            str(pki["ca"]), "-servername", "localhost", "-tls1_3", "-ign_eof"]
    first = subprocess.run(base + ["-sess_out", str(sess)], input=request, capture_output=True,
                           timeout=20)
    assert b'{"status":"ok"}' in first.stdout, first.stdout[-500:]
    assert b"New, TLSv1.3" in first.stdout
    second = subprocess.run(base + ["-sess_in", str(sess)], input=request, capture_output=True,
                            timeout=20)
    assert b"Reused, TLSv1.3" in second.stdout, second.stdout[-800:]
    assert b'{"status":"ok"}' in second.stdout


def test_plain_http_to_the_tls_port_is_closed_without_harm(beside):
    before = metric_sum(beside.metrics(), "roost_tls_handshakes_total", result="failed")
    with RawConnection(beside.tls_port) as c:
        c.send(build_request("GET", "/healthz"))
        assert b"HTTP/1.1 200" not in c.read_until_close()
    time.sleep(0.2)
    after = metric_sum(beside.metrics(), "roost_tls_handshakes_total", result="failed")
    assert after == before + 1
    beside.assert_healthy()


def test_garbage_handshakes_are_closed_without_harm(beside, pki):
    for junk in (b"\x16\x03\x01\x00\x05hello", os.urandom(3000), b"\x16\x03\x03" + b"\xff" * 600):
        with RawConnection(beside.tls_port) as c:
            try:
                c.send(junk)
                c.sock.settimeout(3)
                while c.sock.recv(4096):
                    pass
            except (ConnectionResetError, BrokenPipeError):
                pass
    assert https_get(beside.tls_port, pki, "/healthz").status == 200


def test_a_silent_handshake_times_out_and_is_counted(beside):
    before = metric_sum(beside.metrics(), "roost_tls_handshakes_total", result="timeout")
    with RawConnection(beside.tls_port) as c:
        c.sock.settimeout(5)
        start = time.monotonic()
        assert c.sock.recv(100) == b""  # closed by the server, nothing sent
        assert time.monotonic() - start < 3
    after = metric_sum(beside.metrics(), "roost_tls_handshakes_total", result="timeout")
    assert after == before + 1


def ws_open_tls(port, pki, path):
    conn = tls_conn(port, client_ctx(pki), timeout=10)
    key = new_key()
    conn.send(build_request("GET", path, upgrade_headers(key=key)))
    resp = conn.read_response()
    assert resp.status == 101, resp
    assert resp.header("Sec-WebSocket-Accept") == accept_for(key)
    return WsConn(conn, resp)


def test_wss_echo_of_a_large_message(beside, pki):
    with ws_open_tls(beside.tls_port, pki, "/echo") as ws:
        ws.send_text("small")
        assert ws.recv_message(timeout=5)[1] == b"small"
        big = os.urandom(400_000).hex()  # 800 KB: many TLS records, a queued write
        ws.send_text(big)
        opcode, data = ws.recv_message(timeout=20)
        assert opcode == OP_TEXT and data == big.encode()


def test_wss_chat_gets_a_broadcast(beside, pki):
    room = unique()
    with ws_open_tls(beside.tls_port, pki, f"/ws/{room}/alice") as ws:
        assert ws.recv_json(timeout=5)["type"] == "welcome"
        resp = beside.post_json("/broadcast", {"room": room, "message": "over tls"})
        assert resp.status == 200
        for _ in range(5):
            msg = ws.recv_json(timeout=5)
            if msg.get("text") == "over tls" or msg.get("message") == "over tls":
                break
        else:
            pytest.fail("broadcast not received over wss")


def test_tls_on_the_main_port(start_server, pki):
    srv = start_server(*tls_flags(pki), wait=False)
    deadline = time.monotonic() + 15
    while True:
        try:
            resp = https_get(srv.port, pki, "/healthz")
            break
        except (OSError, ssl.SSLError):
            assert srv.alive() and time.monotonic() < deadline, srv.stderr()[-2000:]
            time.sleep(0.1)
    assert resp.status == 200 and resp.json() == {"status": "ok"}
    assert "https://127.0.0.1" in srv.stderr()


def test_a_bad_certificate_stops_the_start(run_roost, pki, tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    done = run_roost("--tls-cert", bad, "--tls-key", pki["key"], "--port", "0")
    assert done.returncode != 0
    assert "tls" in done.stderr


def test_sighup_reloads_the_certificate_for_new_connections(start_server, pki, tmp_path):
    folder = tmp_path / "live"
    folder.mkdir()
    for name in ("ca.pem", "ca.key"):
        (folder / name).write_bytes((pki["dir"] / name).read_bytes())
    cert, key = make_cert(folder, "first")
    port = free_port()
    srv = start_server("--threads", "2", "--tls-cert", cert, "--tls-key", key, "--tls-port", port)
    ctx = client_ctx(pki)
    old = tls_conn(port, ctx)
    old_serial = old.sock.getpeercert()["serialNumber"]
    old.send(build_request("GET", "/healthz"))
    assert old.read_response().status == 200

    new_cert, new_key_ = make_cert(folder, "second")
    cert.write_bytes(new_cert.read_bytes())
    key.write_bytes(new_key_.read_bytes())
    srv.signal(signal.SIGHUP)
    assert srv.wait_for_stderr(lambda line: "reloaded" in line, timeout=5)

    with tls_conn(port, ctx) as fresh:
        peer = fresh.sock.getpeercert()
        assert peer["serialNumber"] != old_serial
        assert dict(x[0] for x in peer["subject"])["commonName"] == "second"
        fresh.send(build_request("GET", "/healthz"))
        assert fresh.read_response().status == 200
    old.send(build_request("GET", "/json"))  # the old connection, on its old context
    assert old.read_response().status == 200
    old.close()
    assert metric_sum(srv.metrics(), "roost_tls_reloads_total") == 1


def test_sigterm_does_not_wait_for_a_pending_handshake(start_server, pki):
    """A connection still in its handshake has nothing in flight: draining closes it at once
    instead of waiting for --tls-handshake-timeout-s (or --drain-s)."""
    port = free_port()
    srv = start_server(*tls_flags(pki, "--tls-port", port, "--tls-handshake-timeout-s", "30",
                                  "--drain-s", "20"))
    with RawConnection(port) as silent:
        silent.send(b"\x16\x03\x01")  # the first bytes of a ClientHello, and no more
        time.sleep(0.3)
        start = time.monotonic()
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(10) == 0
        assert time.monotonic() - start < 5


def test_a_refused_tls_client_gets_the_503_over_tls(start_server, pki):
    """Over a per-address limit the answer comes after the handshake, encrypted, then the
    connection closes; the client's held connection is not disturbed."""
    port = free_port()
    srv = start_server(*tls_flags(pki, "--tls-port", port, "--max-conns-per-ip", "1",
                                  "--trusted-ips", "127.0.0.1"))

    def from_127_0_0_2():
        raw = RawConnection.__new__(RawConnection)
        raw.timeout = 5
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        s.bind(("127.0.0.2", 0))
        s.connect(("127.0.0.1", port))
        raw.sock = client_ctx(pki).wrap_socket(s, server_hostname="localhost")
        raw.buf, raw.eof, raw.reset = b"", False, False
        return raw

    with from_127_0_0_2() as held:
        held.send(build_request("GET", "/healthz"))
        assert held.read_response().status == 200
        with from_127_0_0_2() as extra:
            resp = extra.read_response()
            assert resp.status == 503 and resp.json() == {"detail": "Too many connections"}
        held.send(build_request("GET", "/healthz"))
        assert held.read_response().status == 200
    assert metric_sum(srv.metrics(), "roost_limit_hits_total", limit="conns_per_ip") == 1
