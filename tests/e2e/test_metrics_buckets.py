"""The per-route histograms place each request in the bucket its value belongs to: a body of
exactly a bound's size is counted under that bound (le is "less or equal"), one byte more under
the next; a request's duration lands in the first bucket whose bound is at least the duration
the _sum reports. Guards the integer bounds that replaced the floating-point ones (issue 14)."""

import pytest

from conftest import metric_sum

pytestmark = pytest.mark.deadline(30)

SIZE = "roost_http_request_size_bytes_bucket"
DUR = "roost_http_request_duration_seconds"


def item_body(length):
    """A valid /items body of exactly `length` bytes."""
    pad = length - len('{"name":"a","price":1,"description":""}')
    body = ('{"name":"a","price":1,"description":"' + "d" * pad + '"}').encode()
    assert len(body) == length
    return body


def test_body_sizes_counted_at_their_bounds(start_server):
    srv = start_server("--threads", "1")
    for length in (64, 65, 256):
        r = srv.request("POST", "/items", {"Content-Type": "application/json"}, item_body(length))
        assert r.status == 200, r
    m = srv.metrics()
    buckets = {le: metric_sum(m, SIZE, route="/items", method="POST", le=le)
               for le in ("0", "64", "256", "1024", "+Inf")}
    assert buckets == {"0": 0, "64": 1, "256": 3, "1024": 3, "+Inf": 3}, buckets
    assert metric_sum(m, "roost_http_request_size_bytes_sum", route="/items") == 64 + 65 + 256


def test_duration_lands_in_the_bucket_of_its_time(start_server):
    srv = start_server("--threads", "1")
    assert srv.get("/slow-async?seconds=0.03").status == 200
    m = srv.metrics()
    seconds = metric_sum(m, DUR + "_sum", route="/slow-async")
    assert 0.02 <= seconds < 10, seconds  # the loop timer may fire a little early
    les = ["0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5", "0.75", "1", "2.5",
           "5", "7.5", "10"]
    counts = [metric_sum(m, DUR + "_bucket", route="/slow-async", le=le) for le in les]
    first = counts.index(1)  # cumulative: 0 below the request's bucket, 1 from it on
    assert counts[:first] == [0] * first and counts[first:] == [1] * (len(les) - first), counts
    assert float(les[first]) >= seconds and (first == 0 or float(les[first - 1]) < seconds)
    assert les[first] not in ("0.005", "0.01")  # 20 ms and more is past these bounds
