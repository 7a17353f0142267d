"""Request smuggling over raw sockets: chunk data must end with CRLF, field names are tokens,
the version is HTTP/DIGIT.DIGIT. Each refusal is a 400 with `Connection: close`, after which
the server closes, so nothing sent behind the bad request on that connection is answered.
Whitespace before a chunk extension's ';' (RFC 9112 §7.1.1) is accepted."""

import json

import pytest

H = b"Host: t\r\n"
CHUNKED = b"POST /items HTTP/1.1\r\n" + H + b"Content-Type: application/json\r\n" \
          b"Transfer-Encoding: chunked\r\n\r\n"
FOLLOWER = b"GET /plaintext HTTP/1.1\r\n" + H + b"\r\n"
ITEM = json.dumps({"name": "x", "price": 2.0}).encode()


def refused_and_closed(server, data):
    """Sends data, expects one 400 with Connection: close, then EOF with nothing after it."""
    with server.connect() as conn:
        conn.send(data)
        resp = conn.read_response(timeout=5.0)
        assert resp.status == 400, resp
        assert resp.has_token("Connection", "close"), resp
        rest = conn.read_until_close(timeout=5.0)
        assert b"HTTP/1.1" not in rest, f"answered after the 400: {rest[:300]!r}"
        return resp


@pytest.mark.parametrize("terminator", [b"XX", b"\n\r", b"\r", b"\n", b"  ", b"\r\r"])
def test_chunk_data_not_followed_by_crlf_is_400_and_the_next_request_unanswered(server,
                                                                              terminator):
    data = CHUNKED + b"5\r\nhello" + terminator + b"0\r\n\r\n" + FOLLOWER
    refused_and_closed(server, data)


def test_chunk_crlf_checked_when_it_arrives_in_a_later_packet(server):
    with server.connect() as conn:
        conn.send(CHUNKED + b"5\r\nhello")
        conn.send(b"X")
        conn.send(b"Y0\r\n\r\n" + FOLLOWER)
        resp = conn.read_response(timeout=5.0)
        assert resp.status == 400, resp
        assert b"Hello, World!" not in conn.read_until_close(timeout=5.0)


def test_well_framed_chunked_body_then_pipelined_request_both_answered(server):
    body = CHUNKED + b"%x\r\n" % len(ITEM) + ITEM + b"\r\n0\r\n\r\n"
    with server.connect() as conn:
        conn.send(body + FOLLOWER)
        first = conn.read_response(timeout=5.0)
        second = conn.read_response(timeout=5.0)
    assert first.status == 200, first
    assert first.json()["name"] == "x"
    assert second.status == 200 and second.body == b"Hello, World!", second


@pytest.mark.parametrize("size_line", [b"%x ;ext=1", b"%x\t;ext", b"%x \t ;a=\"q s\""])
def test_whitespace_before_a_chunk_extension_is_accepted(server, size_line):
    with server.connect() as conn:
        conn.send(CHUNKED + (size_line % len(ITEM)) + b"\r\n" + ITEM + b"\r\n0 ;last\r\n\r\n")
        resp = conn.read_response(timeout=5.0)
    assert resp.status == 200, resp
    assert resp.json()["name"] == "x"


def test_whitespace_after_a_chunk_size_without_extension_is_400(server):
    refused_and_closed(server, CHUNKED + b"5 \r\nhello\r\n0\r\n\r\n" + FOLLOWER)


@pytest.mark.parametrize("line", [b"Bad Name: y", b": y", b"X\"y: y", b"X(y: y", b"X/y: y",
                                  b"X\x80y: y", b"X,y: y", b"X\ty: y"])
def test_field_name_outside_token_is_400_and_closed(server, line):
    refused_and_closed(server, b"GET /plaintext HTTP/1.1\r\n" + H + line + b"\r\n\r\n" + FOLLOWER)


@pytest.mark.parametrize("version", [b"HTTP/A.B", b"HTTP/1.10", b"HTTP/11", b"HTTP/1.1a"])
def test_malformed_version_is_400_and_closed(server, version):
    refused_and_closed(server, b"GET /plaintext " + version + b"\r\n" + H + b"\r\n" + FOLLOWER)


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/1.2", b"HTTP/9.9"])
def test_well_formed_unknown_version_is_505(server, version):
    with server.connect() as conn:
        conn.send(b"GET /plaintext " + version + b"\r\n" + H + b"\r\n")
        resp = conn.read_response(timeout=5.0)
    assert resp.status == 505, resp


@pytest.mark.parametrize("head_tail", [b"X:\rGET /plaintext HTTP/1.1\r\n", b"X: \rb\r\n",
                                       b"\rX"])
def test_bare_cr_in_the_header_section_is_400_and_closed(server, head_tail):
    refused_and_closed(server, b"GET /plaintext HTTP/1.1\r\n" + H + head_tail + b"\r\n" + FOLLOWER)


def test_empty_transfer_encoding_is_400_and_closed(server):
    refused_and_closed(server, b"POST /items HTTP/1.1\r\n" + H + b"Transfer-Encoding:\r\n\r\n"
                       b"5\r\nhello\r\n0\r\n\r\n" + FOLLOWER)
