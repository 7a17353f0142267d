"""Error log lines carry the trace id of the request being served (issue 14): an error logged by a
loop handler or a blocking handler while serving a request with a traceparent header shows that
trace id, in the text format (" trace_id=...") and, with --log-format json, as a JSON line."""

import json

import pytest

TRACE = "0af7651916cd43dd8448eb211c80319c"
TP = f"00-{TRACE}-b7ad6b7169203331-01"
ROUTES = ["/debug/log-error", "/debug/log-error-sync"]


def error_line(srv, offset, where):
    line = srv.wait_for_stderr(lambda l: "debug: an error while serving" in l and where in l,
                               timeout=3.0, start=offset)
    assert line, srv.stderr()[offset:][-2000:]
    return line


@pytest.mark.parametrize("route", ROUTES)
def test_text_error_line_ends_with_the_request_trace_id(start_server, route):
    srv = start_server("--threads", "1", "--debug-routes")
    offset = len(srv.stderr())
    assert srv.request("GET", route, {"traceparent": TP}).status == 500
    line = error_line(srv, offset, "handler")
    assert " error " in line and line.rstrip().endswith(f"trace_id={TRACE}"), line


@pytest.mark.parametrize("route", ROUTES)
def test_json_error_line_names_the_request_trace_id(start_server, route):
    srv = start_server("--threads", "1", "--debug-routes", "--log-format", "json")
    offset = len(srv.stderr())
    assert srv.request("GET", route, {"traceparent": TP}).status == 500
    entry = json.loads(error_line(srv, offset, "handler"))
    assert entry["level"] == "error" and entry["trace_id"] == TRACE, entry
    where = "a blocking handler" if route.endswith("sync") else "a loop handler"
    assert entry["msg"] == f'debug: an error while serving "{where}"', entry  # quotes escaped
    assert entry["time"].endswith("Z")


def test_each_request_has_its_own_trace_id_and_none_leaks_after(start_server):
    srv = start_server("--threads", "1", "--debug-routes", "--log-format", "json")
    offset = len(srv.stderr())
    other = "1" * 32
    assert srv.request("GET", "/debug/log-error", {"traceparent": TP}).status == 500
    assert srv.request("GET", "/debug/log-error",
                       {"traceparent": f"00-{other}-b7ad6b7169203331-01"}).status == 500
    srv.wait_for_stderr(lambda l: other in l, timeout=3.0, start=offset)
    ids = [json.loads(l)["trace_id"] for l in srv.stderr_lines(offset)
           if "debug: an error while serving" in l]
    assert ids == [TRACE, other], ids
