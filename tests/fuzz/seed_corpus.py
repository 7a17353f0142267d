#!/usr/bin/env python3
"""Seeds tests/fuzz/corpus/<target>/ from the unit tests' inputs: the requests written in
tests/unit/test_http_parse.c (HTTP targets), the paths of test_router.c and test_url.c, the
cursors of test_cursor.c, and a few client frames and handshakes like those of the ws unit
tests. Run once by hand, then `make fuzz-long` grows and minimizes the corpus; the folders are
committed. Existing files are kept; seeds are named by their content's hash."""

import ast
import hashlib
import pathlib
import re
import struct

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "fuzz" / "corpus"
LITERAL = re.compile(r'"(?:[^"\\\n]|\\.)*"')


def c_strings(path):
    """Each run of adjacent C string literals (macros from #define expanded), as bytes."""
    text = (ROOT / path).read_text()
    for name, value in re.findall(r'#define (\w+) ((?:"(?:[^"\\\n]|\\.)*"\s*)+)', text):
        text = text.replace(name, value)
    out = []
    for run in re.finditer(r'(?:"(?:[^"\\\n]|\\.)*"\s*)+', text):
        parts = LITERAL.findall(run.group(0))
        raw = "".join(ast.literal_eval(p.replace("\\x", "\\\\x")) for p in parts)
        raw = re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), raw)
        out.append(raw.encode("latin-1", "replace"))
    return out


def client_frame(b0, payload, key=b"\x37\xfa\x21\x3d"):
    n = len(payload)
    head = bytes([b0]) + (bytes([0x80 | n]) if n <= 125 else bytes([0x80 | 126]) + struct.pack("!H", n))
    return head + key + bytes(c ^ key[i & 3] for i, c in enumerate(payload))


def write(target, seeds):
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    for s in seeds:
        (folder / hashlib.sha1(s).hexdigest()).write_bytes(s)


requests = [s for s in c_strings("tests/unit/test_http_parse.c")
            if re.match(rb"[A-Z-]+ ", s) and b"%s" not in s]
write("fuzz_http_parse", requests)
write("fuzz_http_roundtrip", requests)
paths = [s for s in c_strings("tests/unit/test_router.c") + c_strings("tests/unit/test_url.c")
         if s.startswith(b"/")]
write("fuzz_router", paths)
write("fuzz_query", paths + [s for s in c_strings("tests/unit/test_url.c") if b"=" in s])
write("fuzz_cursor", [s for s in c_strings("tests/unit/test_cursor.c") if 0 < len(s) < 64])
frames = [
    client_frame(0x81, b"hello"),
    client_frame(0x01, b"hel") + client_frame(0x89, b"ping") + client_frame(0x80, b"lo"),
    client_frame(0x82, bytes(range(200))),
    client_frame(0x88, struct.pack("!H", 1000) + b"bye"),
    client_frame(0x81, "h\u00e9\u20ac\U0001f600".encode()),
]
write("fuzz_ws_frame", [b"\x07\x00" + f for f in frames] + [b"\x05\x10" + frames[2]])
handshake = (b"http://a.test\nUpgrade: websocket\nConnection: Upgrade\n"
             b"Sec-WebSocket-Version: 13\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n"
             b"Origin: http://a.test\n")
write("fuzz_ws_handshake", [b"\x00\x00" + handshake, b"\x01\x02" + handshake.replace(b"13", b"8")])
