"""A small raw WebSocket client for roost's end-to-end tests (RFC 6455, client side).

It speaks the protocol over a plain socket so tests can send what a real library never would:
unmasked frames, RSV bits, unknown opcodes, oversized control frames, bad UTF-8 cut at any byte.
`WsConn.open(port, path)` does the handshake and checks the 101; `send_frame` builds any frame;
`recv_frame` reads one frame as sent; `recv_message` reassembles fragments (answering or
collecting pings on the way); `expect_close` reads up to the server's close frame and the EOF.
"""

import base64
import hashlib
import json
import os
import socket
import struct
import time
from dataclasses import dataclass

from conftest import ConnectionClosed, RawConnection, build_request, http_request

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
CONTROL_OPCODES = (OP_CLOSE, OP_PING, OP_PONG)


def new_key():
    return base64.b64encode(os.urandom(16)).decode()


def accept_for(key):
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def upgrade_headers(key=None, version="13", origin=None, upgrade="websocket",
                    connection="Upgrade", extra=None, omit=()):
    """Headers of an opening handshake; pass None (or name it in `omit`) to leave one out."""
    headers = [
        ("Upgrade", upgrade),
        ("Connection", connection),
        ("Sec-WebSocket-Key", key if key is not None else new_key()),
        ("Sec-WebSocket-Version", version),
        ("Origin", origin),
    ]
    headers += list(extra or [])
    omit = {o.lower() for o in omit}
    return [(k, v) for k, v in headers if v is not None and k.lower() not in omit]


def upgrade_request(port, path, timeout=10.0, **kw):
    """Send an opening handshake on a fresh connection and return the HTTP response (for the
    refusals: 400, 403, 422, 426, 503)."""
    return http_request(port, "GET", path, headers=upgrade_headers(**kw), timeout=timeout)


def build_frame(opcode, payload=b"", fin=True, mask=True, rsv=0, mask_key=None):
    """Bytes of one frame. `rsv`: the three RSV bits as a number 0-7 (4 = RSV1)."""
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = mask_key if mask_key is not None else os.urandom(4)
    return head + key + mask_bytes(payload, key)


def mask_bytes(payload, key):
    if not payload:
        return b""
    n = len(payload)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack("!H", code) + reason


@dataclass
class Frame:
    fin: bool
    rsv: int
    opcode: int
    masked: bool
    payload: bytes

    @property
    def close_code(self):
        assert self.opcode == OP_CLOSE, self
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    @property
    def close_reason(self):
        return self.payload[2:].decode("utf-8", "replace")

    def json(self):
        assert self.opcode == OP_TEXT, self
        return json.loads(self.payload)

    def __repr__(self):
        p = self.payload if len(self.payload) < 200 else self.payload[:200] + b"..."
        return f"<Frame fin={self.fin} rsv={self.rsv} op={self.opcode} masked={self.masked} {p!r}>"


class WsError(AssertionError):
    pass


class WsConn:
    """One client WebSocket over a RawConnection (whose buffer holds bytes read past the 101)."""

    def __init__(self, raw, response):
        self.raw = raw
        self.response = response
        self.pings = []  # payloads of pings seen by recv_message / recv_json

    @classmethod
    def open(cls, port, path, timeout=10.0, rcvbuf=None, **kw):
        """Connect, send the handshake, check the 101 and its Sec-WebSocket-Accept."""
        if rcvbuf is None:
            raw = RawConnection(port, timeout=timeout)
        else:  # SO_RCVBUF must be set before connect to shrink the window
            raw = RawConnection.__new__(RawConnection)
            raw.timeout = timeout
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            s.settimeout(timeout)
            s.connect(("127.0.0.1", port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            raw.sock, raw.buf, raw.eof, raw.reset = s, b"", False, False
        key = kw.pop("key", None) or new_key()
        try:
            raw.send(build_request("GET", path, upgrade_headers(key=key, **kw)))
            resp = raw.read_response(timeout=timeout)
        except BaseException:
            raw.close()
            raise
        if resp.status != 101:
            raw.close()
            raise WsError(f"upgrade of {path} refused: {resp!r}")
        accept = resp.header("Sec-WebSocket-Accept")
        if accept != accept_for(key):
            raw.close()
            raise WsError(f"bad Sec-WebSocket-Accept {accept!r} for key {key!r}: {resp!r}")
        return cls(raw, resp)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.raw.close()

    def fileno(self):
        return self.raw.sock.fileno()

    # -- sending

    def send_raw(self, data):
        self.raw.send(data)

    def send_frame(self, opcode, payload=b"", **kw):
        self.raw.send(build_frame(opcode, payload, **kw))

    def send_text(self, text):
        self.send_frame(OP_TEXT, text.encode() if isinstance(text, str) else text)

    def send_binary(self, data):
        self.send_frame(OP_BINARY, data)

    def send_json(self, obj):
        self.send_text(json.dumps(obj))

    def send_close(self, code=1000, reason=b""):
        self.send_frame(OP_CLOSE, close_payload(code, reason))

    # -- receiving

    def _need(self, n, deadline):
        while len(self.raw.buf) < n:
            if not self.raw._fill(deadline):
                raise ConnectionClosed(
                    f"connection closed (reset={self.raw.reset}) with {len(self.raw.buf)} of "
                    f"{n} frame bytes buffered: {self.raw.buf[:200]!r}"
                )

    def recv_frame(self, timeout=5.0):
        """One frame as sent. TimeoutError if none completes in time; ConnectionClosed at EOF."""
        deadline = time.monotonic() + timeout
        self._need(2, deadline)
        b0, b1 = self.raw.buf[0], self.raw.buf[1]
        n, off = b1 & 0x7F, 2
        if n == 126:
            self._need(4, deadline)
            n, off = struct.unpack("!H", self.raw.buf[2:4])[0], 4
        elif n == 127:
            self._need(10, deadline)
            n, off = struct.unpack("!Q", self.raw.buf[2:10])[0], 10
        masked = bool(b1 & 0x80)
        key = b""
        if masked:
            self._need(off + 4, deadline)
            key, off = self.raw.buf[off : off + 4], off + 4
        self._need(off + n, deadline)
        payload = self.raw.buf[off : off + n]
        self.raw.buf = self.raw.buf[off + n :]
        if masked:
            payload = mask_bytes(payload, key)
        return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF, masked, payload)

    def recv_message(self, timeout=5.0, answer_pings=True):
        """(opcode, payload) of the next complete data message; pings on the way are recorded
        in self.pings (and answered when answer_pings). A close frame raises WsError."""
        deadline = time.monotonic() + timeout
        opcode, parts = None, []
        while True:
            f = self.recv_frame(timeout=max(0.0, deadline - time.monotonic()))
            if f.masked:
                raise WsError(f"server frame is masked: {f!r}")
            if f.opcode == OP_PING:
                self.pings.append(f.payload)
                if answer_pings:
                    self.send_frame(OP_PONG, f.payload)
                continue
            if f.opcode == OP_PONG:
                continue
            if f.opcode == OP_CLOSE:
                raise WsError(f"server closed: code {f.close_code} {f.close_reason!r}")
            if opcode is None:
                if f.opcode not in (OP_TEXT, OP_BINARY):
                    raise WsError(f"server sent a bad first frame: {f!r}")
                opcode = f.opcode
            elif f.opcode != OP_CONT:
                raise WsError(f"server interleaved a data frame in a fragmented message: {f!r}")
            parts.append(f.payload)
            if f.fin:
                return opcode, b"".join(parts)

    def recv_json(self, timeout=5.0):
        opcode, payload = self.recv_message(timeout=timeout)
        if opcode != OP_TEXT:
            raise WsError(f"expected a text frame, got opcode {opcode}: {payload[:200]!r}")
        return json.loads(payload)

    def recv_until(self, predicate, timeout=5.0):
        """Frames (as JSON) up to and including the first for which predicate holds; returns
        (that frame, the skipped ones)."""
        deadline = time.monotonic() + timeout
        skipped = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no matching frame in {timeout} s; skipped {skipped!r}")
            msg = self.recv_json(timeout=remaining)
            if predicate(msg):
                return msg, skipped
            skipped.append(msg)

    def recv_type(self, type_, timeout=5.0, skip=("join", "leave")):
        """The next frame of `type_`, skipping only frames whose type is in `skip`."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv_json(timeout=max(0.0, deadline - time.monotonic()))
            if msg.get("type") == type_:
                return msg
            if msg.get("type") not in skip:
                raise WsError(f"expected a {type_!r} frame, got {msg!r}")

    def expect_silence(self, seconds):
        """No data frame within `seconds` (pings are answered); returns what was buffered."""
        try:
            msg = self.recv_message(timeout=seconds)
        except TimeoutError:
            return None
        raise WsError(f"expected nothing, got {msg!r}")

    def expect_close(self, timeout=5.0, eof_timeout=5.0, reply=True):
        """Read frames until the server's close frame; returns (code, reason, frames before it).
        `reply`: answer it with a close frame echoing the code, as a client should. Then the
        server must close the TCP connection (EOF or reset) within eof_timeout."""
        deadline = time.monotonic() + timeout
        before = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no close frame within {timeout} s; got {before[-5:]!r}")
            try:
                f = self.recv_frame(timeout=remaining)
            except ConnectionClosed as e:
                raise WsError(f"TCP closed without a close frame; frames before: "
                              f"{before[-5:]!r} ({e})") from None
            if f.opcode == OP_CLOSE:
                break
            before.append(f)
        code, reason = f.close_code, f.close_reason
        if reply:
            try:
                self.send_close(code if code not in (None, 1005, 1006, 1015) else None)
            except OSError:
                pass  # the server may already have closed
        self.assert_eof(eof_timeout)
        return code, reason, before

    def assert_eof(self, timeout=5.0):
        try:
            rest = self.raw.read_until_close(timeout)
        except TimeoutError:
            raise WsError(f"server did not close the TCP connection within {timeout} s") from None
        assert rest == b"", f"bytes after the close frame: {rest[:200]!r}"


def ws_path(room, user, **query):
    q = "&".join(f"{k}={v}" for k, v in query.items() if v is not None)
    return f"/ws/{room}/{user}" + (f"?{q}" if q else "")


def join(port, room, user, timeout=10.0, **query):
    """Open a chat connection; returns (conn, welcome frame)."""
    conn = WsConn.open(port, ws_path(room, user, **query), timeout=timeout)
    try:
        welcome = conn.recv_json(timeout=timeout)
    except BaseException:
        conn.close()
        raise
    assert welcome.get("type") == "welcome", welcome
    return conn, welcome


def unique(prefix="r"):
    return f"{prefix}-{os.urandom(5).hex()}"


def post_broadcasts(port, room, texts, batch=50, timeout=30.0):
    """POST /broadcast once per text on one keep-alive connection, `batch` requests pipelined
    at a time; returns the JSON bodies in order (each response must be 200)."""
    out = []
    with RawConnection(port, timeout=timeout) as conn:
        for start in range(0, len(texts), batch):
            chunk = texts[start : start + batch]
            conn.send(b"".join(
                build_request("POST", "/broadcast", {"Content-Type": "application/json"},
                              json.dumps({"room": room, "message": t}).encode())
                for t in chunk))
            for _ in chunk:
                resp = conn.read_response(timeout=timeout)
                assert resp.status == 200, resp
                out.append(resp.json())
    return out


def presence_names(frame):
    """The names a join/leave frame announces: `users` when coalesced, else [`user`]."""
    if "users" in frame:
        return list(frame["users"])
    return [frame["user"]]


def assert_presence(frame, type_, room, user, online):
    """A join/leave frame announcing exactly `user` (coalesced or not)."""
    assert frame.get("type") == type_, frame
    assert frame.get("room") == room, frame
    assert frame.get("user") == user, frame
    assert frame.get("online") == online, frame
    # The contract lists no "ts" for presence frames; roost adds one (harmless, so allowed).
    assert set(frame) <= {"type", "room", "user", "online", "users", "more", "ts"}, frame
    if "users" in frame:
        assert frame["users"] == [user], frame
        assert frame.get("more", 0) == 0, frame


def assert_ts(ts):
    assert isinstance(ts, float), f"ts is not a float: {ts!r}"
    assert abs(ts - time.time()) < 30, f"ts far from now: {ts!r}"
