"""SIGTERM drains: requests in flight are answered, new connections are not served, and the
process exits 0 once done (or when --drain-s runs out)."""

import concurrent.futures
import signal
import socket
import struct
import time

import pytest

from conftest import ConnectionClosed, RawConnection


def new_connection_outcome(port):
    """What a client connecting now gets: 'refused', 'closed' (without a 200), or the response."""
    try:
        conn = RawConnection(port, timeout=5.0)
    except (ConnectionRefusedError, socket.timeout):
        return "refused"
    with conn:
        try:
            conn.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            data = conn.read_until_close(timeout=8.0)
        except (BrokenPipeError, ConnectionResetError):
            return "closed"
        except TimeoutError:
            return "left open"
    return "closed" if not data.startswith(b"HTTP/1.1 200") else f"served: {data[:200]!r}"


def drain_in_flight(start_server, route):
    srv = start_server("--threads", "2", "--workers", "32", "--drain-s", "10")
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        futures = [pool.submit(srv.get, f"{route}?seconds=2", timeout=10.0) for _ in range(20)]
        time.sleep(0.5)
        t_term = time.monotonic()
        srv.signal(signal.SIGTERM)
        time.sleep(0.3)
        late = new_connection_outcome(srv.port)
        results = []
        for f in futures:
            try:
                results.append(f.result())
            except (OSError, ConnectionClosed) as e:
                results.append(e)
    code = srv.wait_exit(timeout=max(0.1, 5.0 - (time.monotonic() - t_term)))
    exited_after = time.monotonic() - t_term
    statuses = [getattr(r, "status", repr(r)) for r in results]
    assert statuses == [200] * 20, statuses
    assert late in ("refused", "closed"), f"a connection made after SIGTERM: {late}"
    assert code is not None, "roost still running 5 s after SIGTERM"
    assert code == 0, f"exit code {code}; stderr tail:\n{srv.stderr()[-3000:]}"
    assert exited_after >= 1.0, "exited before the in-flight requests could finish"


@pytest.mark.deadline(60)
def test_sigterm_drains_in_flight_worker_requests(start_server):
    drain_in_flight(start_server, "/slow-sync")


@pytest.mark.deadline(60)
def test_sigterm_drains_in_flight_loop_timer_requests(start_server):
    drain_in_flight(start_server, "/slow-async")


def test_sigterm_on_idle_server_exits_zero_promptly(start_server):
    srv = start_server("--threads", "2")
    assert srv.get("/plaintext").status == 200
    srv.signal(signal.SIGTERM)
    code = srv.wait_exit(timeout=3.0)
    assert code == 0, f"exit code {code}; stderr tail:\n{srv.stderr()[-3000:]}"


def test_idle_keepalive_connection_does_not_delay_shutdown(start_server):
    srv = start_server("--threads", "2", "--drain-s", "10", "--keepalive-timeout-s", "60")
    with srv.connect() as conn:
        assert conn.request("GET", "/plaintext").status == 200
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        closed, extra = conn.closed_within(4.0)
        code = srv.wait_exit(timeout=5.0)
    assert closed, "idle keep-alive connection still open 4 s after SIGTERM"
    assert extra == b""
    assert code == 0, f"exit code {code}"
    assert time.monotonic() - t0 < 5.0


def test_drain_gives_up_after_drain_seconds(start_server):
    srv = start_server("--threads", "2", "--drain-s", "1")
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        stuck = [pool.submit(new_get, srv.port, "/slow-async?seconds=20"),
                 pool.submit(new_get, srv.port, "/slow-sync?seconds=20")]
        time.sleep(0.5)
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        code = srv.wait_exit(timeout=5.0)
        elapsed = time.monotonic() - t0
        for f in stuck:
            f.result()
    assert code is not None, "roost still running 5 s after SIGTERM with --drain-s 1"
    assert elapsed >= 0.9, f"exited after {elapsed:.2f} s, before --drain-s 1 ran out"


def new_get(port, target):
    """A request whose fate does not matter (the connection may be cut)."""
    try:
        with RawConnection(port, timeout=10.0) as conn:
            return conn.request("GET", target, timeout=10.0)
    except (OSError, ConnectionClosed) as e:
        return e


def open_room_clients(port, room, n):
    """n WebSockets in one room, handshakes sent all at once and their 101s read after."""
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10.0)
        s.sendall(f"GET /ws/{room}/u{i} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode())
        socks.append(s)
    for s in socks:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            assert chunk, "closed during the handshake"
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head[:200]
    return socks


def reset(s):
    """Close with RST (SO_LINGER 0), as a killed client does: the server's next write fails."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


@pytest.mark.deadline(90)
def test_sigterm_while_many_websockets_reset_drains_cleanly(start_server):
    """The wsbench crash: SIGTERM while a room's clients are going away. The drain writes a
    close frame to every WebSocket; one that meets a reset socket closes that connection at
    once (and its goodbye to the room can close others): the server must neither touch what
    was freed nor skip anyone, and must exit 0."""
    for rnd in range(4):
        srv = start_server("--threads", "2", "--drain-s", "5")
        socks = open_room_clients(srv.port, "bench", 600)
        # Half reset before the signal, a quarter around it, the rest stay to be drained.
        for s in socks[:300]:
            reset(s)
        srv.signal(signal.SIGTERM)
        for s in socks[300:450]:
            reset(s)
        code = srv.wait_exit(timeout=15.0)
        for s in socks[450:]:
            s.close()
        assert code == 0, f"round {rnd}: exit code {code}; stderr tail:\n{srv.stderr()[-3000:]}"
        report = srv.sanitizer_report()
        assert report is None, f"round {rnd}: {report}"
