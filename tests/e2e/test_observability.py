"""Observability (issue 14): /metrics by route template through the Prometheus client's own
parser, W3C trace context from request to job to WebSocket frame and upstream call, the access
and slow logs (common and JSON), the OTLP/HTTP JSON span export to a local collector, the
metric snapshot stream, and the flags that turn metrics and tracing off."""

import json
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import RawConnection, build_request, free_port, http_get, metric_sum
from wsclient import join, unique

pytestmark = pytest.mark.deadline(60)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TP = f"00-{TRACE}-{PARENT}-01"
HEX32 = re.compile(r"^[0-9a-f]{32}$")
REPO = Path(__file__).resolve().parents[2]


def families(text):
    """Parses with prometheus_client (which raises on malformed text) and checks that every
    family's HELP/TYPE appears once and its samples are not interleaved with another's."""
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    seen, current = set(), None
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name = line.split()[2]
            assert name not in seen, f"TYPE {name} twice"
            seen.add(name)
            current = name
        elif line and not line.startswith("#"):
            sample = re.split(r"[{ ]", line, maxsplit=1)[0]
            assert sample.startswith(current), f"{sample} outside its family ({current})"
    return fams


def samples(fams, name, sample=None, **labels):
    sample = sample or name
    return [s for s in fams[name].samples
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())]


def test_metrics_parse_and_label_requests_by_route_template(start_server):
    srv = start_server("--threads", "2")
    for i in range(3):
        assert srv.get(f"/rooms/room{i}/count").status == 200
    for i in range(20):  # a scanner: every unmatched path is one series
        assert srv.get(f"/wp-admin/{i}.php").status == 404
    assert srv.request("POST", "/items", {"Content-Type": "application/json"},
                       b'{"name":"a","price":1}').status == 200
    fams = families(srv.metrics())
    total = samples(fams, "roost_http_requests", "roost_http_requests_total",
                    route="/rooms/{room}/count", method="GET", status="200")
    assert len(total) == 1 and total[0].value == 3, total
    unmatched = samples(fams, "roost_http_requests", "roost_http_requests_total", route="unmatched")
    assert [(s.labels["method"], s.labels["status"], s.value) for s in unmatched] == [
        ("GET", "404", 20)], unmatched
    assert not any("wp-admin" in json.dumps(s.labels) for f in fams.values() for s in f.samples)
    # The duration histogram has the buckets, cumulative, and a count per route.
    buckets = samples(fams, "roost_http_request_duration_seconds",
                      "roost_http_request_duration_seconds_bucket", route="/items", method="POST")
    les = [b.labels["le"] for b in buckets]
    assert les == ["0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5", "0.75", "1",
                   "2.5", "5", "7.5", "10", "+Inf"], les
    assert [b.value for b in buckets] == sorted(b.value for b in buckets) and buckets[-1].value == 1
    # Body sizes: the /items request had 22 body bytes, its answer more than 0.
    req = samples(fams, "roost_http_request_size_bytes", "roost_http_request_size_bytes_sum",
                  route="/items")
    assert req[0].value == 22, req
    res = samples(fams, "roost_http_response_size_bytes", "roost_http_response_size_bytes_count",
                  route="/items")
    assert res[0].value == 1, res
    for name in ("process_cpu_seconds", "process_resident_memory_bytes", "process_open_fds",
                 "process_start_time_seconds"):
        assert name in fams, name
    assert fams["process_resident_memory_bytes"].samples[0].value > 1e6
    assert abs(fams["process_start_time_seconds"].samples[0].value - time.time()) < 120
    assert fams["roost_db_query_duration_seconds"].type == "histogram"


def test_websocket_and_room_metrics(start_server):
    srv = start_server("--threads", "2")
    room = unique()
    conn, _ = join(srv.port, room, "ann")
    try:
        r = srv.post_json("/broadcast", {"room": room, "message": "x"})
        assert r.status == 200
        conn.recv_type("broadcast")
        fams = families(srv.metrics())
        assert fams["roost_ws_connections"].type == "gauge"
        assert fams["roost_ws_connections"].samples[0].value == 1
        assert samples(fams, "roost_room_members")[0].value == 1
        assert samples(fams, "roost_room_deliveries", "roost_room_deliveries_total")[0].value >= 1
        out = samples(fams, "roost_ws_messages", "roost_ws_messages_total", direction="out")
        assert out[0].value >= 2  # the welcome and the broadcast
    finally:
        conn.close()
    deadline = time.time() + 5
    while time.time() < deadline:
        m = srv.metrics()
        if metric_sum(m, "roost_ws_connections") == 0:
            break
        time.sleep(0.05)
    assert metric_sum(m, "roost_ws_connections") == 0
    assert metric_sum(m, "roost_ws_closes_total") >= 1


def test_traceparent_reaches_logs_job_frame_and_task(start_server):
    srv = start_server("--threads", "2", "--access-log", "--log-format", "json")
    room = unique()
    conn, _ = join(srv.port, room, "watcher")
    try:
        # A request with a traceparent: its broadcast frame names the trace.
        r = srv.request("POST", "/broadcast",
                        {"Content-Type": "application/json", "traceparent": TP},
                        json.dumps({"room": room, "message": "m"}).encode())
        assert r.status == 200
        assert conn.recv_type("broadcast")["trace_id"] == TRACE
        # A job submitted in a traced request keeps the trace and publishes with it.
        tp2 = f"00-{'ab' * 16}-{PARENT}-01"
        r = srv.request("POST", "/tasks", {"Content-Type": "application/json", "traceparent": tp2},
                        json.dumps({"type": "announce",
                                    "payload": {"room": room, "text": "from a job"}}).encode())
        assert r.status in (200, 201, 202), r
        tid = r.json()["task_id"]
        frame = conn.recv_type("announce", timeout=10)
        assert frame["trace_id"] == "ab" * 16 and frame["text"] == "from a job", frame
        assert srv.get(f"/tasks/{tid}").json()["trace_id"] == "ab" * 16
    finally:
        conn.close()
    # The access log: one JSON line per request with route, status, bytes, duration, trace id.
    line = srv.wait_for_stderr(lambda l: '"route":"/broadcast"' in l and TRACE in l, timeout=3)
    assert line, srv.stderr()[-2000:]
    entry = json.loads(line[line.index("{"):])
    assert entry["status"] == 200 and entry["trace_id"] == TRACE and entry["bytes"] > 0
    assert entry["duration_ms"] >= 0 and entry["method"] == "POST"


def test_invalid_traceparent_starts_a_new_trace(start_server):
    srv = start_server("--threads", "1", "--access-log")
    bad = ["00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
           "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
           "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x"]  # 00 with more
    offset = len(srv.stderr())
    for i, tp in enumerate(bad):
        assert srv.request("GET", f"/json?n={i}", {"traceparent": tp}).status == 200
    for i in range(len(bad)):
        line = srv.wait_for_stderr(lambda l, i=i: f"/json?n={i}" in l, timeout=3, start=offset)
        assert line, srv.stderr()[offset:]
        tid = line.rsplit("trace_id=", 1)[1].strip()
        assert HEX32.match(tid) and tid != TRACE and tid != "0" * 32, line
    # A valid one from a later version with extra fields is accepted.
    srv.request("GET", "/json?n=v", {"traceparent": f"01-{TRACE}-{PARENT}-01-extra"})
    assert srv.wait_for_stderr(lambda l: "/json?n=v" in l and TRACE in l, timeout=3, start=offset)


def test_slow_log_names_route_time_and_trace(start_server):
    srv = start_server("--threads", "1", "--slow-ms", "100")
    offset = len(srv.stderr())
    assert srv.request("GET", "/slow-async?seconds=0.2", {"traceparent": TP}).status == 200
    assert srv.get("/json").status == 200
    line = srv.wait_for_stderr(lambda l: "slow request" in l, timeout=3, start=offset)
    assert line and 'route="/slow-async"' in line and f"trace_id={TRACE}" in line, line
    ms = float(re.search(r"duration_ms=([0-9.]+)", line).group(1))
    assert 190 <= ms < 2000, line
    time.sleep(0.3)
    assert not any("slow request" in l and "/json" in l for l in srv.stderr_lines(offset))
    assert metric_sum(srv.metrics(), "roost_http_slow_requests_total") == 1


def test_upstream_calls_carry_the_request_trace(start_server):
    port = free_port()
    up = subprocess.Popen([sys.executable, str(Path(__file__).with_name("upstream.py")), str(port)],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert up.stdout.readline().strip() == b"ready"
        srv = start_server("--upstream", f"api=http://127.0.0.1:{port}", "--access-log")
        offset = len(srv.stderr())
        r = srv.get("/proxy/api/headers")  # no traceparent: the server's own trace goes on
        assert r.status == 200
        sent = r.json()["traceparent"]
        m = re.match(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$", sent)
        assert m, sent
        line = srv.wait_for_stderr(lambda l: "/proxy/api/headers" in l, timeout=3, start=offset)
        assert line.rstrip().endswith("trace_id=" + m.group(1)), (line, sent)
    finally:
        up.kill()
        up.wait()


class Collector:
    """A local OTLP/HTTP collector: records every JSON body POSTed to /v1/traces."""

    def __init__(self, delay=0.0):
        self.bodies, self.delay = [], delay
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                time.sleep(outer.delay)
                outer.bodies.append((self.path, self.headers.get("Content-Type"), body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def spans(self):
        out = []
        for _, _, body in list(self.bodies):
            doc = json.loads(body)
            for rs in doc["resourceSpans"]:
                for ss in rs["scopeSpans"]:
                    out.extend(ss["spans"])
        return out

    def close(self):
        self.httpd.shutdown()


def wait_spans(col, pred, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = [s for s in col.spans() if pred(s)]
        if found:
            return found
        time.sleep(0.1)
    return []


def test_otlp_export_to_a_local_collector(start_server):
    col = Collector()
    try:
        srv = start_server("--threads", "2", "--otlp-endpoint",
                           f"http://127.0.0.1:{col.port}/v1/traces")
        assert srv.request("GET", "/json", {"traceparent": TP}).status == 200
        r = srv.request("POST", "/tasks", {"Content-Type": "application/json", "traceparent": TP},
                        b'{"type":"noop"}')
        tid = r.json()["task_id"]
        server = wait_spans(col, lambda s: s["traceId"] == TRACE and s["kind"] == 2
                            and s["name"] == "GET /json")
        assert server, col.spans()
        s = server[0]
        assert s.get("parentSpanId") == PARENT and re.match(r"^[0-9a-f]{16}$", s["spanId"])
        assert int(s["endTimeUnixNano"]) >= int(s["startTimeUnixNano"]) > 1.6e18
        attrs = {a["key"]: a["value"]["stringValue"] for a in s["attributes"]}
        assert attrs["http.route"] == "/json" and attrs["http.response.status_code"] == "200"
        job = wait_spans(col, lambda s: s["traceId"] == TRACE and s["name"] == "job run")
        assert job, col.spans()
        assert srv.get(f"/tasks/{tid}").json()["trace_id"] == TRACE
        assert all(ct == "application/json" and path == "/v1/traces"
                   for path, ct, _ in col.bodies)
        m = srv.metrics()
        assert metric_sum(m, "roost_otlp_spans_exported_total") >= 2
        assert metric_sum(m, "roost_otlp_spans_dropped_total") == 0
    finally:
        col.close()


def test_otlp_exporter_drops_instead_of_blocking(start_server):
    col = Collector(delay=2.0)  # a collector that lags
    try:
        srv = start_server("--threads", "1", "--otlp-endpoint",
                           f"http://127.0.0.1:{col.port}/v1/traces")
        t0 = time.monotonic()
        with RawConnection(srv.port, timeout=30) as conn:
            for _ in range(40):
                conn.send(b"".join(build_request("GET", "/json") for _ in range(250)))
                for _ in range(250):
                    assert conn.read_response().status == 200
        took = time.monotonic() - t0
        assert took < 25, took  # the loop never waited for the collector
        m = srv.metrics()
        assert metric_sum(m, "roost_otlp_spans_dropped_total") > 0, m
    finally:
        col.close()


def test_metrics_and_tracing_can_be_turned_off(start_server):
    srv = start_server("--threads", "1", "--metrics", "off", "--tracing", "off", "--access-log")
    offset = len(srv.stderr())
    assert srv.request("GET", "/json", {"traceparent": TP}).status == 200
    fams = families(srv.metrics())
    assert "roost_http_request_duration_seconds" not in fams
    assert metric_sum(srv.metrics(), "roost_http_requests_total") >= 1  # the plain total stays
    line = srv.wait_for_stderr(lambda l: "/json" in l, timeout=3, start=offset)
    assert line.rstrip().endswith("trace_id=-"), line


def test_metric_stream_sends_snapshots_every_second(start_server):
    srv = start_server("--threads", "2")
    with RawConnection(srv.port, timeout=10) as conn:
        conn.send(build_request("GET", "/metrics/stream"))
        deadline = time.monotonic() + 5
        head = conn._read_until(b"\r\n\r\n", deadline)
        assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head, head
        stop = threading.Event()

        def load():  # requests all along, so some second's snapshot counts them
            while not stop.is_set():
                http_get(srv.port, "/json")
                time.sleep(0.01)

        threading.Thread(target=load, daemon=True).start()
        try:
            deadline = time.monotonic() + 8
            while conn.buf.count(b"event: snapshot") < 3:
                conn._fill(deadline)
        finally:
            stop.set()
        data = conn.buf
    snaps = [json.loads(l[6:]) for l in data.decode(errors="replace").splitlines()
             if l.startswith("data: {")]
    assert len(snaps) >= 3, data
    assert all(b["t"] > a["t"] for a, b in zip(snaps, snaps[1:]))
    assert {"rps", "p50_ms", "p99_ms", "stalls", "worker_queue", "ws", "fanout_per_s",
            "jobs_per_s", "queue_depth"} <= set(snaps[-1])
    assert any(s["rps"] > 0 for s in snaps), snaps


def test_job_run_time_histogram_by_type_and_loop_connections(start_server):
    srv = start_server("--threads", "2")
    tid = srv.post_json("/tasks", {"type": "sleep", "payload": {"steps": 1, "seconds": 0.06}})
    tid = tid.json()["task_id"]
    deadline = time.time() + 10
    while srv.get(f"/tasks/{tid}").json()["status"] != "completed" and time.time() < deadline:
        time.sleep(0.05)
    fams = families(srv.metrics())
    h = fams["roost_job_run_seconds"]
    assert h.type == "histogram"
    count = [s.value for s in h.samples
             if s.name == "roost_job_run_seconds_count" and s.labels["type"] == "sleep"]
    assert count == [1], h.samples
    le = {s.labels["le"]: s.value for s in h.samples
          if s.name == "roost_job_run_seconds_bucket" and s.labels["type"] == "sleep"}
    assert le["0.05"] == 0 and le["0.1"] == 1, le  # it slept 60 ms
    loops = {s.labels["loop"]: s.value for s in fams["roost_loop_connections"].samples}
    assert set(loops) == {"0", "1"} and sum(loops.values()) >= 1, loops  # this scrape's own
