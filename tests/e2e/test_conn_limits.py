"""Per-client limits: --max-conns-per-ip and --new-conns-per-ip-s (off by default); above them a
new connection gets 503 {"detail":"Too many connections"} and is closed, counted in
roost_limit_hits_total; --trusted-ips (CIDRs) are exempt. Clients come from 127.0.0.2 and
others: loopback owns the whole 127/8, so each source address is another client."""

import json
import socket
import time

import pytest

from conftest import RawConnection, build_request, metric_sum


def connect_from(port, source, timeout=5.0):
    raw = RawConnection.__new__(RawConnection)
    raw.timeout = timeout
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    raw.sock, raw.buf, raw.eof, raw.reset = s, b"", False, False
    return raw


def get_healthz(conn):
    conn.send(build_request("GET", "/healthz"))
    return conn.read_response()


def assert_refused(conn):
    resp = conn.read_response()
    assert resp.status == 503, resp
    assert json.loads(resp.body) == {"detail": "Too many connections"}
    closed, _ = conn.closed_within(3)
    assert closed


def hits(srv, limit):
    return metric_sum(srv.metrics(), "roost_limit_hits_total", limit=limit)


def test_connections_above_the_per_address_limit_get_503(start_server):
    srv = start_server("--threads", "2", "--max-conns-per-ip", "3",
                       "--trusted-ips", "127.0.0.1")  # the test's own probes stay exempt
    held = [connect_from(srv.port, "127.0.0.2") for _ in range(3)]
    for c in held:  # each accepted and answered, so each is counted
        assert get_healthz(c).status == 200
    with connect_from(srv.port, "127.0.0.2") as extra:
        assert_refused(extra)
    with connect_from(srv.port, "127.0.0.3") as other:  # another client is not affected
        assert get_healthz(other).status == 200
    held.pop().close()
    time.sleep(0.3)  # the server sees the close
    with connect_from(srv.port, "127.0.0.2") as again:
        assert get_healthz(again).status == 200
    assert hits(srv, "conns_per_ip") == 1
    for c in held:
        assert get_healthz(c).status == 200  # the held ones were never disturbed
        c.close()


def test_new_connections_a_second_with_bursts_of_twice_the_rate(start_server):
    srv = start_server("--threads", "2", "--new-conns-per-ip-s", "5", "--trusted-ips",
                       "127.0.0.1")
    ok = refused = 0
    start = time.monotonic()
    for _ in range(30):
        with connect_from(srv.port, "127.0.0.5") as c:
            resp = get_healthz(c)
            if resp.status == 200:
                ok += 1
            else:
                assert resp.status == 503 and json.loads(resp.body)["detail"] == \
                    "Too many connections"
                refused += 1
    elapsed = time.monotonic() - start
    assert ok >= 10  # the burst
    assert ok <= 10 + 5 * elapsed + 1
    assert refused >= 1
    assert hits(srv, "new_conns_per_ip") == refused
    time.sleep(0.5)  # refilled: 2 tokens or more
    with connect_from(srv.port, "127.0.0.5") as c:
        assert get_healthz(c).status == 200


def test_trusted_addresses_are_exempt(start_server):
    srv = start_server("--threads", "1", "--max-conns-per-ip", "1",
                       "--trusted-ips", "10.0.0.0/8, 127.0.0.0/30,::1/128")
    held = [connect_from(srv.port, "127.0.0.2") for _ in range(4)]  # in 127.0.0.0/30
    for c in held:
        assert get_healthz(c).status == 200
    first = connect_from(srv.port, "127.0.0.9")
    assert get_healthz(first).status == 200
    with connect_from(srv.port, "127.0.0.9") as second:
        assert_refused(second)
    first.close()
    for c in held:
        c.close()


def test_limits_are_off_by_default(server):
    held = [connect_from(server.port, "127.0.0.7") for _ in range(20)]
    for c in held:
        assert get_healthz(c).status == 200
        c.close()


@pytest.mark.parametrize("bad", ["300.1.1.1", "10.0.0.0/33", "::1/129", "host.example"])
def test_a_bad_trusted_list_stops_the_start(run_roost, bad):
    done = run_roost("--max-conns-per-ip", "2", "--trusted-ips", bad, "--port", "0")
    assert done.returncode != 0
    assert "--trusted-ips" in done.stderr
