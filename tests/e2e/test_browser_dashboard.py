"""The jobs dashboard (GET /dashboard) in headless Chromium: see tests/e2e/browser/dashboard.test.js."""

import re
import subprocess
from pathlib import Path

import pytest

from conftest import http_get

REPO = Path(__file__).resolve().parents[2]


def test_dashboard_is_served_self_contained_with_its_controls(server):
    resp = http_get(server.port, "/dashboard")
    assert resp.status == 200
    assert resp.header("Content-Type").startswith("text/html")
    for control in (b'id="job-type"', b'id="job-payload"', b'id="submit"', b'id="job-priority"',
                    b'id="job-delay"', b'id="job-retries"', b'id="job-timeout"', b'id="jobs"',
                    b'id="rooms"'):
        assert control in resp.body, control
    for t in (b"sleep", b"hash", b"email", b"exec", b"noop"):
        assert b'<option value="' + t + b'">' in resp.body
    # No external resources: nothing is loaded from another origin.
    text = resp.text
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', text), "external resource"
    assert not re.search(r"@import|url\(\s*['\"]?(https?:)?//", text)


@pytest.mark.deadline(120)
def test_jobs_progress_cancel_and_rooms_in_a_browser(start_server):
    srv = start_server("--threads", "2", "--job-workers", "2")
    proc = subprocess.run(
        ["node", str(REPO / "tests/e2e/browser/dashboard.test.js"), f"http://127.0.0.1:{srv.port}"],
        cwd=REPO, capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.deadline(120)
def test_live_charts_draw_and_move_under_load(start_server, tmp_path):
    """uPlot charts fed by /metrics/stream: see tests/e2e/browser/metrics_charts.test.js. The
    screenshot goes to $ROOST_DASHBOARD_PNG when set (the lead's copy), else to tmp_path."""
    import os
    srv = start_server("--threads", "2", "--job-workers", "2")
    shot = os.environ.get("ROOST_DASHBOARD_PNG") or str(tmp_path / "dashboard.png")
    proc = subprocess.run(
        ["node", str(REPO / "tests/e2e/browser/metrics_charts.test.js"),
         f"http://127.0.0.1:{srv.port}", shot],
        cwd=REPO, capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert Path(shot).stat().st_size > 10000


@pytest.mark.deadline(120)
def test_dashboard_signs_in_with_an_api_key_in_a_browser(start_server):
    """With --api-key the page asks for the key, trades it for an HttpOnly cookie and then works
    (fetch and EventSource); without the cookie the data is refused: see
    tests/e2e/browser/dashboard_auth.test.js."""
    key = "browser-key-0123456789"
    srv = start_server("--threads", "2", "--job-workers", "2", "--api-key", key)
    proc = subprocess.run(
        ["node", str(REPO / "tests/e2e/browser/dashboard_auth.test.js"),
         f"http://127.0.0.1:{srv.port}", key],
        cwd=REPO, capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, proc.stdout + proc.stderr
