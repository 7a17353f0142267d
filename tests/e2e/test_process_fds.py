"""process_open_fds on /metrics counts the server's open descriptors (read from the size of
/proc/self/fd where the kernel gives it, else by listing it): it follows the connections."""

import os

from conftest import RawConnection, metric_sum


def test_open_fds_follow_the_connections(start_server):
    srv = start_server("--threads", "1")
    before = metric_sum(srv.metrics(), "process_open_fds")
    assert abs(before - len(os.listdir(f"/proc/{srv.proc.pid}/fd"))) <= 2, before
    conns = [RawConnection(srv.port) for _ in range(50)]
    try:
        for c in conns:
            assert c.request("GET", "/healthz").status == 200
        during = metric_sum(srv.metrics(), "process_open_fds")
    finally:
        for c in conns:
            c.close()
    assert 50 <= during - before <= 52, (before, during)  # the 50, and the scrape's own
