"""WebSocket protocol conformance (docs/ws-contract.md, "Endpoints" and "Protocol rules and close
codes"): the opening handshake and its refusals, GET /echo, framing errors and their close codes,
limits (message size, rate, connections), the server's heartbeat and the close on shutdown.
Frames are built by hand (wsclient.py) so that the invalid ones can be sent at all."""

import asyncio
import os
import signal
import socket
import struct
import time

import pytest
import websockets

from conftest import assert_json_detail, metric_sum
from wsclient import (
    OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, WsConn, accept_for, build_frame,
    WsError, close_payload, upgrade_request,
)

pytestmark = pytest.mark.deadline(20)


def echo(server, **kw):
    return WsConn.open(server.port, "/echo", **kw)


def expect_close_code(conn, code, timeout=5.0):
    got, reason, _ = conn.expect_close(timeout=timeout)
    assert got == code, f"expected close {code}, got {got} ({reason!r})"
    return reason


# --------------------------------------------------------------------------------------------
# Opening handshake


def test_handshake_answers_101_with_the_accept_key(server):
    key = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3's example
    assert accept_for(key) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    with echo(server, key=key) as ws:
        resp = ws.response
        assert resp.status == 101
        assert resp.header("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        assert resp.has_token("Upgrade", "websocket"), resp
        assert resp.has_token("Connection", "upgrade"), resp
        assert resp.header("Sec-WebSocket-Extensions") is None, resp  # none was offered
        ws.send_text("after the handshake")
        assert ws.recv_message() == (OP_TEXT, b"after the handshake")


def test_handshake_header_tokens_are_case_insensitive_and_listed(server):
    # Firefox sends "Connection: keep-alive, Upgrade"; token matching ignores case.
    with echo(server, upgrade="WebSocket", connection="keep-alive, Upgrade") as ws:
        ws.send_text("ok")
        assert ws.recv_message() == (OP_TEXT, b"ok")


def test_handshake_with_extension_offer_is_accepted_without_extensions(server):
    with echo(server, extra=[("Sec-WebSocket-Extensions", "permessage-deflate")]) as ws:
        assert ws.response.header("Sec-WebSocket-Extensions") is None, ws.response
        ws.send_text("plain")
        assert ws.recv_message() == (OP_TEXT, b"plain")


@pytest.mark.parametrize(
    "key", ["abc", "", "!!!!!!!!!!!!!!!!!!!!!!==", "QUFBQUFBQUFBQUFBQUFBQUFB"],
    ids=["short", "empty", "not-base64", "18-bytes"],
)
def test_bad_sec_websocket_key_is_400(server, key):
    resp = upgrade_request(server.port, "/echo", key=key)
    assert_json_detail(resp, 400)


def test_missing_sec_websocket_key_is_400(server):
    resp = upgrade_request(server.port, "/echo", omit=["Sec-WebSocket-Key"])
    assert_json_detail(resp, 400)


@pytest.mark.parametrize("version", ["12", "8", "14"])
def test_wrong_version_is_426_naming_13(server, version):
    resp = upgrade_request(server.port, "/echo", version=version)
    assert_json_detail(resp, 426)
    assert resp.header("Sec-WebSocket-Version") == "13", resp


def test_missing_version_is_426_naming_13(server):
    resp = upgrade_request(server.port, "/echo", omit=["Sec-WebSocket-Version"])
    assert_json_detail(resp, 426)
    assert resp.header("Sec-WebSocket-Version") == "13", resp


@pytest.mark.parametrize("path", ["/echo", "/ws/lobby/alice"])
def test_missing_upgrade_header_is_426(server, path):
    resp = upgrade_request(server.port, path, omit=["Upgrade"], connection="keep-alive")
    assert_json_detail(resp, 426)


@pytest.mark.parametrize("path", ["/echo", "/ws/lobby/alice"])
def test_plain_get_on_a_ws_route_is_426(server, path):
    resp = server.get(path)
    assert_json_detail(resp, 426)


def test_origin_not_allowed_is_403_and_allowed_is_101(start_server):
    srv = start_server("--allowed-origins", "http://good.example,https://also.example")
    resp = upgrade_request(srv.port, "/echo", origin="http://evil.example")
    assert_json_detail(resp, 403)
    resp = upgrade_request(srv.port, "/ws/lobby/alice", origin="http://evil.example")
    assert_json_detail(resp, 403)
    for origin in ("http://good.example", "https://also.example"):
        with WsConn.open(srv.port, "/echo", origin=origin) as ws:
            ws.send_text(origin)
            assert ws.recv_message() == (OP_TEXT, origin.encode())


def test_over_max_connections_is_503(start_server):
    srv = start_server("--max-connections", "3")
    conns = [WsConn.open(srv.port, "/echo") for _ in range(3)]
    try:
        for ws in conns:  # all three really are open
            ws.send_text("x")
            assert ws.recv_message() == (OP_TEXT, b"x")
        resp = upgrade_request(srv.port, "/echo")
        assert_json_detail(resp, 503)
        resp = upgrade_request(srv.port, "/ws/lobby/alice")
        assert_json_detail(resp, 503)
        assert srv.get("/healthz").status == 200  # plain HTTP is not limited by it
        # A closed one frees its slot.
        conns[0].send_close(1000)
        conns[0].expect_close()
        conns[0].close()
        deadline = time.monotonic() + 5
        while True:
            resp = upgrade_request(srv.port, "/echo")
            if resp.status != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert resp.status == 101, resp
    finally:
        for ws in conns:
            ws.close()


# --------------------------------------------------------------------------------------------
# Echo


def test_echo_text_and_binary_keep_their_opcode(server):
    with echo(server) as ws:
        ws.send_text("hello, world")
        assert ws.recv_message() == (OP_TEXT, b"hello, world")
        data = bytes(range(256))
        ws.send_binary(data)
        assert ws.recv_message() == (OP_BINARY, data)
        ws.send_text("é€😀")
        assert ws.recv_message() == (OP_TEXT, "é€😀".encode())
        ws.send_text(b"")
        assert ws.recv_message() == (OP_TEXT, b"")
        ws.send_binary(b"")
        assert ws.recv_message() == (OP_BINARY, b"")


@pytest.mark.parametrize("size", [125, 126, 65535, 65536, 200_000])
def test_echo_length_encodings(server, size):
    with echo(server) as ws:
        data = os.urandom(size)
        ws.send_binary(data)
        assert ws.recv_message(timeout=10) == (OP_BINARY, data)
        text = ("abcdefgh" * (size // 8 + 1))[:size]
        ws.send_text(text)
        assert ws.recv_message(timeout=10) == (OP_TEXT, text.encode())


def test_fragmented_messages_with_a_ping_between_fragments(server):
    with echo(server) as ws:
        ws.send_frame(OP_TEXT, b"Hello, ", fin=False)
        ws.send_frame(OP_PING, b"in the middle")
        ws.send_frame(OP_CONT, b"frag", fin=False)
        ws.send_frame(OP_CONT, b"mented", fin=True)
        f = ws.recv_frame()
        assert (f.opcode, f.payload, f.fin) == (OP_PONG, b"in the middle", True), f
        assert ws.recv_message() == (OP_TEXT, b"Hello, fragmented")

        ws.send_frame(OP_BINARY, b"\x00\x01", fin=False)
        ws.send_frame(OP_CONT, b"", fin=False)
        ws.send_frame(OP_PING, b"")
        ws.send_frame(OP_CONT, b"\x02\xff", fin=True)
        f = ws.recv_frame()
        assert (f.opcode, f.payload) == (OP_PONG, b""), f
        assert ws.recv_message() == (OP_BINARY, b"\x00\x01\x02\xff")


def test_ping_is_answered_with_the_same_payload(server):
    with echo(server) as ws:
        for payload in (b"", b"ping!", os.urandom(125)):
            ws.send_frame(OP_PING, payload)
            f = ws.recv_frame()
            assert (f.opcode, f.payload, f.fin, f.masked) == (OP_PONG, payload, True, False), f


def test_unsolicited_pong_is_ignored(server):
    with echo(server) as ws:
        ws.send_frame(OP_PONG, b"nobody asked")
        ws.send_text("still fine")
        assert ws.recv_message() == (OP_TEXT, b"still fine")


def test_frames_split_into_single_bytes_are_reassembled(server):
    with echo(server) as ws:
        data = build_frame(OP_TEXT, b"byte by byte") + build_frame(OP_BINARY, b"\x01" * 300)
        for i in range(len(data)):
            ws.send_raw(data[i : i + 1])
        assert ws.recv_message() == (OP_TEXT, b"byte by byte")
        assert ws.recv_message() == (OP_BINARY, b"\x01" * 300)


# --------------------------------------------------------------------------------------------
# Protocol errors: 1002


def test_unmasked_frame_is_closed_1002(server):
    with echo(server) as ws:
        ws.send_frame(OP_TEXT, b"no mask", mask=False)
        expect_close_code(ws, 1002)


@pytest.mark.parametrize("rsv", [4, 2, 1], ids=["rsv1", "rsv2", "rsv3"])
def test_rsv_bit_is_closed_1002(server, rsv):
    with echo(server) as ws:
        ws.send_frame(OP_TEXT, b"reserved", rsv=rsv)
        expect_close_code(ws, 1002)


@pytest.mark.parametrize("opcode", [3, 7, 0xB, 0xF])
def test_unknown_opcode_is_closed_1002(server, opcode):
    with echo(server) as ws:
        ws.send_frame(opcode, b"what is this")
        expect_close_code(ws, 1002)


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_control_frame_over_125_bytes_is_closed_1002(server, opcode):
    with echo(server) as ws:
        payload = close_payload(1000, b"r" * 124) if opcode == OP_CLOSE else b"p" * 126
        assert len(payload) == 126
        ws.send_frame(opcode, payload)
        expect_close_code(ws, 1002)


def test_fragmented_ping_is_closed_1002(server):
    with echo(server) as ws:
        ws.send_frame(OP_PING, b"part", fin=False)
        ws.send_frame(OP_CONT, b"rest", fin=True)
        expect_close_code(ws, 1002)


def test_continuation_without_a_start_is_closed_1002(server):
    with echo(server) as ws:
        ws.send_frame(OP_CONT, b"orphan", fin=True)
        expect_close_code(ws, 1002)


def test_non_final_continuation_without_a_start_is_closed_1002(server):
    with echo(server) as ws:
        ws.send_frame(OP_CONT, b"orphan", fin=False)
        expect_close_code(ws, 1002)


def test_new_message_inside_a_fragmented_one_is_closed_1002(server):
    with echo(server) as ws:
        ws.send_frame(OP_TEXT, b"first ", fin=False)
        ws.send_frame(OP_TEXT, b"second", fin=True)
        expect_close_code(ws, 1002)


# --------------------------------------------------------------------------------------------
# UTF-8: 1007


@pytest.mark.parametrize(
    "payload",
    [b"\xff", b"abc\xc3\x28", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"ok\xe2\x82"],
    ids=["ff", "bad-continuation", "overlong", "surrogate", "over-10ffff", "truncated"],
)
def test_invalid_utf8_text_is_closed_1007(server, payload):
    with echo(server) as ws:
        ws.send_frame(OP_TEXT, payload)
        expect_close_code(ws, 1007)


def test_multibyte_characters_cut_across_fragments_are_valid(server):
    text = "é€😀"  # 2, 3 and 4 byte sequences
    data = text.encode()
    with echo(server) as ws:
        for cut in range(1, len(data)):
            ws.send_frame(OP_TEXT, data[:cut], fin=False)
            ws.send_frame(OP_CONT, data[cut:], fin=True)
            assert ws.recv_message() == (OP_TEXT, data), cut
        # one byte per fragment
        ws.send_frame(OP_TEXT, data[:1], fin=False)
        for i in range(1, len(data) - 1):
            ws.send_frame(OP_CONT, data[i : i + 1], fin=False)
        ws.send_frame(OP_CONT, data[-1:], fin=True)
        assert ws.recv_message() == (OP_TEXT, data)


def test_invalid_byte_in_second_fragment_is_closed_1007(server):
    with echo(server) as ws:
        ws.send_frame(OP_TEXT, "valid €".encode(), fin=False)
        ws.send_frame(OP_CONT, b"\xff", fin=True)
        expect_close_code(ws, 1007)


def test_sequence_cut_across_fragments_then_broken_is_closed_1007(server):
    with echo(server) as ws:
        ws.send_frame(OP_TEXT, b"abc\xe2\x82", fin=False)  # valid so far: an incomplete euro
        ws.send_frame(OP_CONT, b"(", fin=True)  # not a continuation byte
        expect_close_code(ws, 1007)


def test_message_ending_inside_a_sequence_is_closed_1007(server):
    with echo(server) as ws:
        ws.send_frame(OP_TEXT, b"abc\xe2", fin=False)
        ws.send_frame(OP_CONT, b"\x82", fin=False)
        ws.send_frame(OP_CONT, b"", fin=True)
        expect_close_code(ws, 1007)


def test_invalid_utf8_in_binary_is_fine(server):
    with echo(server) as ws:
        ws.send_binary(b"\xff\xfe\xc0\xaf")
        assert ws.recv_message() == (OP_BINARY, b"\xff\xfe\xc0\xaf")


# --------------------------------------------------------------------------------------------
# Closing


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1007, 1011, 3000, 4999])
def test_valid_close_code_is_echoed(server, code):
    with echo(server) as ws:
        ws.send_close(code, b"bye")
        got, _, before = ws.expect_close(reply=False)
        assert got == code
        assert before == []


def test_close_without_payload_is_answered(server):
    with echo(server) as ws:
        ws.send_frame(OP_CLOSE, b"")
        got, _, _ = ws.expect_close(reply=False)
        assert got in (None, 1000)


def test_messages_before_the_close_are_echoed_first(server):
    with echo(server) as ws:
        ws.send_raw(build_frame(OP_TEXT, b"one") + build_frame(OP_TEXT, b"two")
                    + build_frame(OP_CLOSE, close_payload(1000)))
        got, _, before = ws.expect_close(reply=False)
        assert got == 1000
        assert [(f.opcode, f.payload) for f in before] == [(OP_TEXT, b"one"), (OP_TEXT, b"two")]


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
def test_invalid_close_code_is_closed_1002(server, code):
    with echo(server) as ws:
        ws.send_close(code)
        expect_close_code(ws, 1002)


def test_one_byte_close_payload_is_closed_1002(server):
    with echo(server) as ws:
        ws.send_frame(OP_CLOSE, b"\x03")
        expect_close_code(ws, 1002)


def test_shutdown_closes_with_1001(start_server):
    srv = start_server()
    with WsConn.open(srv.port, "/echo") as ws:
        ws.send_text("up")
        assert ws.recv_message() == (OP_TEXT, b"up")
        srv.signal(signal.SIGTERM)
        expect_close_code(ws, 1001, timeout=10)
    assert srv.wait_exit(10) == 0


# --------------------------------------------------------------------------------------------
# Limits


@pytest.fixture
def small_messages(shared_servers):
    with shared_servers.use("--ws-max-message", "1024") as srv:
        yield srv


def test_message_at_max_size_is_echoed(small_messages):
    with echo(small_messages) as ws:
        ws.send_binary(b"b" * 1024)
        assert ws.recv_message() == (OP_BINARY, b"b" * 1024)
        ws.send_frame(OP_TEXT, b"t" * 1000, fin=False)
        ws.send_frame(OP_CONT, b"t" * 24, fin=True)
        assert ws.recv_message() == (OP_TEXT, b"t" * 1024)


def test_message_over_max_size_is_closed_1009(small_messages):
    with echo(small_messages) as ws:
        ws.send_text("t" * 1025)
        expect_close_code(ws, 1009)


def test_fragmented_message_over_max_size_is_closed_1009(small_messages):
    with echo(small_messages) as ws:
        ws.send_frame(OP_BINARY, b"b" * 600, fin=False)
        ws.send_frame(OP_CONT, b"b" * 425, fin=True)
        expect_close_code(ws, 1009)


def test_huge_declared_length_is_closed_1009_without_sending_it(small_messages):
    with echo(small_messages) as ws:
        # A header announcing 1 GiB, and only a little of the payload.
        ws.send_raw(struct.pack("!BBQ", 0x82, 0x80 | 127, 1 << 30) + os.urandom(4) + b"x" * 100)
        expect_close_code(ws, 1009)


def test_rate_over_max_rate_is_closed_1008(start_server):
    srv = start_server("--ws-max-rate", "5")
    with WsConn.open(srv.port, "/echo") as ws:
        ws.send_text("one")  # a single message is fine
        assert ws.recv_message() == (OP_TEXT, b"one")
        ws.send_raw(b"".join(build_frame(OP_TEXT, f"m{i}".encode()) for i in range(50)))
        got, reason, before = ws.expect_close(timeout=5)
        assert got == 1008, (got, reason)
        echoed = [f for f in before if f.opcode == OP_TEXT]
        assert len(echoed) < 50, "every message was echoed: the rate limit did not act"


def test_rate_within_max_rate_is_fine(start_server):
    srv = start_server("--ws-max-rate", "5")
    with WsConn.open(srv.port, "/echo") as ws:
        for i in range(8):  # 2.5 per second, under the limit
            ws.send_text(f"m{i}")
            assert ws.recv_message() == (OP_TEXT, f"m{i}".encode())
            time.sleep(0.4)


# --------------------------------------------------------------------------------------------
# Heartbeat


@pytest.fixture
def heartbeat(shared_servers):
    with shared_servers.use("--ws-ping-s", "1", "--ws-pong-timeout-s", "1") as srv:
        yield srv


def test_silent_client_is_pinged_then_closed_1008(heartbeat):
    with echo(heartbeat) as ws:
        t0 = time.monotonic()
        ping = ws.recv_frame(timeout=4)
        t_ping = time.monotonic() - t0
        assert ping.opcode == OP_PING, ping
        assert not ping.masked and ping.fin and len(ping.payload) <= 125
        assert t_ping >= 0.8, f"pinged after {t_ping:.2f} s, before --ws-ping-s 1"
        # No answer: close 1008 after --ws-pong-timeout-s, then the TCP connection ends without
        # waiting for our close frame.
        got, reason, before = ws.expect_close(timeout=3, eof_timeout=2, reply=False)
        t_close = time.monotonic() - t0
        assert got == 1008, (got, reason)
        assert [f.opcode for f in before if f.opcode != OP_PING] == []
        assert t_close < 4.0, f"closed after {t_close:.2f} s"
        assert t_close - t_ping >= 0.8, f"closed {t_close - t_ping:.2f} s after the ping"


def test_client_answering_pings_stays_open(heartbeat):
    with echo(heartbeat) as ws:
        # recv_message answers every ping with a pong; no data arrives meanwhile.
        assert ws.expect_silence(4.5) is None
        assert len(ws.pings) >= 2, ws.pings
        ws.send_text("still here")
        assert ws.recv_message() == (OP_TEXT, b"still here")


def test_library_client_stays_open_past_the_pong_timeout(heartbeat):
    async def run():
        uri = f"ws://127.0.0.1:{heartbeat.port}/echo"
        async with websockets.connect(uri, ping_interval=None, open_timeout=5) as ws:
            await asyncio.sleep(4.5)
            await ws.send("still here")
            return await asyncio.wait_for(ws.recv(), 5)

    assert asyncio.run(run()) == "still here"


def test_talking_client_is_not_closed(heartbeat):
    with echo(heartbeat) as ws:
        t_end = time.monotonic() + 3.5
        i = 0
        while time.monotonic() < t_end:
            ws.send_text(f"m{i}")
            assert ws.recv_message() == (OP_TEXT, f"m{i}".encode())
            i += 1
            time.sleep(0.3)


def test_abrupt_client_disconnects_do_not_hurt_the_server(server):
    for i in range(20):
        ws = echo(server)
        if i % 2:
            ws.send_frame(OP_TEXT, b"half a message", fin=False)
        else:
            ws.send_raw(build_frame(OP_BINARY, b"x" * 1000)[:500])
        ws.raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        ws.close()  # RST
    server.assert_healthy()
    with echo(server) as ws:
        ws.send_text("ok")
        assert ws.recv_message() == (OP_TEXT, b"ok")


@pytest.mark.deadline(60)
def test_message_of_default_max_size_is_echoed_not_closed_as_slow(server):
    """--ws-max-message and --ws-max-backlog are both 1 MiB by default: the echo of one message
    of exactly that size is a message the server chose to send, not a slow reader's backlog."""
    size = 1 << 20
    payload = os.urandom(size)
    with echo(server) as ws:
        ws.send_binary(payload)
        assert ws.recv_message(timeout=20.0) == (OP_BINARY, payload)
        text = "é" * (size // 2)  # 1 MiB of UTF-8
        ws.send_text(text)
        assert ws.recv_message(timeout=20.0) == (OP_TEXT, text.encode())
        ws.send_text("still open")
        assert ws.recv_message() == (OP_TEXT, b"still open")


@pytest.mark.deadline(60)
def test_client_that_reads_no_echoes_is_closed_as_slow_once_they_back_up(start_server):
    """The other side of the rule: echoes queued behind the one being written count, so a
    client that sends without reading is closed as slow (the 1008 frame reaches it only if it
    reads within the close wait, so the limit counter is what tells)."""
    srv = start_server("--threads", "1")
    with echo(srv, rcvbuf=4096) as ws:
        ws.raw.sock.settimeout(1.0)
        try:
            for _ in range(40):  # 10 MiB of echoes against a 1 MiB backlog
                ws.send_binary(b"s" * (256 << 10))
        except (socket.timeout, BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading once it closed
        try:
            got, _, _ = ws.expect_close(timeout=20.0)
            assert got == 1008, got
        except WsError:
            pass  # closed before the client took the frame
    text = srv.get("/metrics").text
    assert metric_sum(text, "roost_limit_hits_total", limit="ws_backlog") == 1, text
