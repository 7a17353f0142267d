"""The FastAPI articles' background work, task status, Celery examples (libvips, bulk emails,
ffmpeg through the exec type) and data examples at their own paths, with the articles' request
and answer shapes; no loop stalls while they run."""

import shutil
import subprocess
import time

import pytest

from conftest import metric_sum

FFMPEG = shutil.which("ffmpeg")


@pytest.fixture
def srv(shared_servers):
    # --stall-ms 500: ffmpeg and vips children share 2 busy cores; a handler that blocks a loop
    # would still pass it (/bad-example blocks 1 s)
    flags = ("--threads", "2", "--stall-ms", "500", "--email-delay-s", "0", "--job-workers", "2",
             "--exec", f"ffmpeg={FFMPEG or '/usr/bin/ffmpeg'} -y -nostdin -progress pipe:1")
    with shared_servers.use(*flags) as s:
        yield s
        assert metric_sum(s.metrics(), "roost_loop_stalls_total") == 0, "a loop stalled"


def wait_for(srv, task_id, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t = srv.get(f"/tasks/{task_id}").json()
        if t["status"] in ("completed", "failed", "cancelled"):
            return t
        time.sleep(0.1)
    pytest.fail(f"task {task_id} did not finish")


def wait_file(path, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.05)
    pytest.fail(f"{path} was not written")


def test_register_creates_the_user_then_two_background_tasks(srv):
    r = srv.request("POST", "/register?email=ann@example.com&name=annie")
    assert r.status == 201, r
    assert r.json()["message"] == "User registered"
    assert r.json()["user"]["email"] == "ann@example.com"
    assert "ann@example.com" in wait_file(srv.data_dir / "emails.log")
    assert "ann@example.com" in wait_file(srv.data_dir / "login_stats.log")
    assert srv.request("POST", "/register?email=bad&name=annie").status == 422


def test_send_notification_answers_before_it_sends(srv):
    r = srv.request("POST", "/send-notification?email=a@example.com&content=hello")
    assert r.status == 200 and r.json() == {"message": "Notification sent in the background"}
    assert "a@example.com: hello" in wait_file(srv.data_dir / "notifications.log")


def test_send_notification_sync_answers_after(srv):
    r = srv.request("POST", "/send-notification-sync?email=b@example.com&content=hi")
    assert r.status == 200 and r.json() == {"message": "Notification sent"}


def test_process_data_in_the_background(srv):
    r = srv.request("POST", "/process-data?data=abc")
    assert r.status == 200 and r.json() == {"message": "Processing started"}
    assert "processed abc" in wait_file(srv.data_dir / "processed.log")


def test_search_logs_the_query_after_the_response(srv):
    r = srv.get("/search?q=fastapi")
    assert r.status == 200 and r.json() == {"query": "fastapi", "results": []}
    assert "query fastapi" in wait_file(srv.data_dir / "search.log")


def test_start_task_then_progress_then_completed(srv):
    r = srv.request("POST", "/start-task?duration=3")
    assert r.status == 202, r
    body = r.json()
    assert set(body) == {"task_id", "status"} and body["status"] == "pending"
    seen = set()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        st = srv.get(f"/task-status/{body['task_id']}").json()
        seen.add(st["status"])
        if st["status"] == "completed":
            break
        time.sleep(0.2)
    assert "completed" in seen
    assert any(s.startswith("progress: ") and s.endswith("/3") for s in seen), seen
    assert srv.get("/task-status/999999").status == 404


def make_png(path):
    if shutil.which("vips"):
        subprocess.run(["vips", "black", str(path), "64", "48", "--bands", "3"], check=True)
    else:
        pytest.skip("the vips command (libvips-tools) is not installed")


def test_process_image_resizes_and_rotates_with_libvips(srv):
    srv.data_dir.mkdir(exist_ok=True)
    make_png(srv.data_dir / "in.png")
    r = srv.post_json("/process-image", {"image_path": "in.png", "operations": [
        {"type": "resize", "width": 32, "height": 24}, {"type": "rotate", "angle": 90}]})
    assert r.status == 202, r
    t = wait_for(srv, r.json()["task_id"])
    assert t["status"] == "completed", t
    res = t["result"]
    assert (res["width"], res["height"]) == (24, 32)
    assert (srv.data_dir / res["output_path"]).exists()
    bad = srv.post_json("/process-image", {"image_path": "../etc/passwd", "operations": []})
    assert bad.status == 422


def test_send_bulk_emails_reports_progress_after_each(srv):
    r = srv.post_json("/send-bulk-emails", {"emails": ["a@x.io", "b@x.io", "c@x.io"],
                                            "template": "Hello"})
    assert r.status == 202, r
    t = wait_for(srv, r.json()["task_id"])
    assert t["status"] == "completed" and t["result"] == {"sent": 3}
    assert t["progress"]["current"] == 3 and t["progress"]["total"] == 3
    assert t["progress"]["percent"] == 100
    assert wait_file(srv.data_dir / "outbox.log").count("Hello") >= 3


@pytest.mark.skipif(not FFMPEG, reason="ffmpeg is not installed")
def test_encode_runs_ffmpeg_with_progress(srv):
    srv.data_dir.mkdir(exist_ok=True)
    subprocess.run([FFMPEG, "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc=duration=1:size=128x96:rate=10", str(srv.data_dir / "clip.mp4")],
                   check=True)
    r = srv.post_json("/encode", {"input_path": "clip.mp4", "output_path": "out.mp4",
                                  "preset": "ultrafast"})
    assert r.status == 202, r
    t = wait_for(srv, r.json()["task_id"], timeout=60)
    assert t["status"] == "completed", t
    assert t["progress"]["total"] == 1000 and t["progress"]["current"] == 1000
    assert (srv.data_dir / "out.mp4").stat().st_size > 0
    assert srv.post_json("/encode", {"input_path": "/etc/passwd", "output_path": "o.mp4"}).status \
        == 422


def test_encode_is_cancellable(srv):
    if not FFMPEG:
        pytest.skip("ffmpeg is not installed")
    srv.data_dir.mkdir(exist_ok=True)
    subprocess.run([FFMPEG, "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc=duration=60:size=64x48:rate=25", "-c:v", "mpeg4",
                    str(srv.data_dir / "long.mp4")], check=True)
    r = srv.post_json("/encode", {"input_path": "long.mp4", "output_path": "long_out.mp4",
                                  "preset": "veryslow"})
    task_id = r.json()["task_id"]
    time.sleep(0.5)
    c = srv.request("POST", f"/tasks/{task_id}/cancel")
    assert c.status == 200, c
    assert wait_for(srv, task_id)["status"] == "cancelled"


def test_batch_operation_and_batch_insert_and_pool_status(srv):
    r = srv.post_json("/batch-insert", {"users": [
        {"username": "bulk1", "email": "bulk1@example.com"},
        {"username": "bulk2", "email": "bulk2@example.com"}]})
    assert r.status == 201, r
    r = srv.post_json("/batch-operation", {"operations": [
        {"op": "create_user", "data": {"username": "bop1", "email": "bop1@example.com"}},
        {"op": "create_user", "data": {"username": "bop1", "email": "bop1@example.com"}}]})
    assert r.status == 200, r
    p = srv.get("/db-pool-status")
    assert p.status == 200 and set(p.json()) == set(srv.get("/db/pool").json())
    assert {"size", "checked_in", "checked_out", "overflow"} <= set(p.json())



def test_items_cursor_pages_walk_the_items_table(srv):
    first = srv.get("/items?limit=30")
    assert first.status == 200, first
    page = first.json()
    assert len(page["items"]) == 30 and page["has_more"] is True
    assert set(page["items"][0]) == {"id", "name", "price"}
    seen = [i["id"] for i in page["items"]]
    while page["next_cursor"]:
        page = srv.get(f"/items?limit=30&cursor={page['next_cursor']}").json()
        seen += [i["id"] for i in page["items"]]
    assert len(seen) == 100 and seen == sorted(set(seen))
    assert srv.get("/items?cursor=garbage").status == 422
