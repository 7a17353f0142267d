"""The chat page (GET /) in headless Chromium: see tests/e2e/browser/chat.test.js."""

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_page_is_served_with_its_controls(server):
    from conftest import http_get

    resp = http_get(server.port, "/")
    assert resp.status == 200
    assert resp.header("Content-Type").startswith("text/html")
    for control in (b'id="room"', b'id="user"', b'id="connect"', b'id="online"', b'id="send"'):
        assert control in resp.body


def test_two_pages_chat_and_a_dropped_page_catches_up(start_server):
    srv = start_server("--threads", "2")
    proc = subprocess.run(
        ["node", str(REPO / "tests/e2e/browser/chat.test.js"), f"http://127.0.0.1:{srv.port}"],
        cwd=REPO, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr
