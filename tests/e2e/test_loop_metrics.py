"""Per-loop figures on /metrics (label loop="N"): callbacks run, iterations, callbacks per
iteration over the last second, and stalls counted on the loop that stalled (count and seconds)."""

import threading
import time

from conftest import metric_sum, parse_metrics

FLAGS = ("--threads", "2", "--debug-routes", "--stall-ms", "100")


def per_loop(text, name):
    """{loop label: value} of one family."""
    return {labels["loop"]: value for labels, value in parse_metrics(text).get(name, [])}


def test_every_loop_reports_its_events_and_iterations(start_server):
    srv = start_server(*FLAGS)
    before = srv.metrics()
    for name in ("roost_loop_events_total", "roost_loop_iterations_total",
                 "roost_loop_events_per_iteration", "roost_loop_stalls_total",
                 "roost_loop_stall_seconds_total", "roost_loop_connections"):
        assert set(per_loop(before, name)) == {"0", "1"}, name
    with srv.connect() as conn:
        for _ in range(300):
            assert conn.request("GET", "/plaintext").status == 200
    after = srv.metrics()
    # Each request on the kept-alive connection is at least one read callback on its loop.
    grew = metric_sum(after, "roost_loop_events_total") - metric_sum(before, "roost_loop_events_total")
    assert grew >= 300, grew
    iters = (metric_sum(after, "roost_loop_iterations_total")
             - metric_sum(before, "roost_loop_iterations_total"))
    assert iters > 0 and grew / iters < 50, (grew, iters)


def test_events_per_iteration_reflects_the_last_second(start_server):
    srv = start_server(*FLAGS)
    stop = threading.Event()

    def load():
        with srv.connect() as conn:
            while not stop.is_set():
                conn.request("GET", "/plaintext")

    t = threading.Thread(target=load)
    t.start()
    try:
        time.sleep(1.6)  # the gauge is sampled once a second by each loop's tick
        busy = per_loop(srv.metrics(), "roost_loop_events_per_iteration")
    finally:
        stop.set()
        t.join()
    # The loop that serves the load runs at least one callback (a read) in most iterations.
    assert max(busy.values()) >= 0.5, busy
    time.sleep(2.2)  # two quiet seconds: only the 25 ms tick iterates, with no callback
    idle = per_loop(srv.metrics(), "roost_loop_events_per_iteration")
    assert min(idle.values()) < max(busy.values()), (idle, busy)


def test_a_stall_is_counted_on_the_loop_that_stalled(start_server):
    # --stall-ms 250 and an 800 ms block: the shared test machine pauses whole processes for up
    # to ~400 ms at times, which may count a short stall anywhere, never 800 ms on both loops.
    srv = start_server("--threads", "2", "--debug-routes", "--stall-ms", "250")
    assert srv.get("/debug/block?ms=800", timeout=10.0).status == 200
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:  # the seconds are added when the stall has ended
        text = srv.metrics()
        if metric_sum(text, "roost_loop_stall_seconds_total") >= 0.5:
            break
        time.sleep(0.1)
    stalls = per_loop(text, "roost_loop_stalls_total")
    seconds = per_loop(text, "roost_loop_stall_seconds_total")
    blocked = [loop for loop, s in seconds.items() if s >= 0.5]
    assert len(blocked) == 1, seconds  # the blocked loop, and only it, lost the 800 ms
    assert stalls[blocked[0]] >= 1 and seconds[blocked[0]] <= 2.0, (stalls, seconds)
    other = str(1 - int(blocked[0]))
    assert seconds[other] < 0.5, seconds
