"""process_open_fds on /metrics counts the server's open descriptors (read from the size of
/proc/self/fd where the kernel gives it, else by listing it): it follows the connections;
process_max_fds is the server's open-file limit, process_virtual_memory_bytes its address space."""

import os
import resource

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


def test_max_fds_is_the_process_limit_and_memory_gauges_are_sane(start_server):
    srv = start_server("--threads", "1")
    resource.prlimit(srv.proc.pid, resource.RLIMIT_NOFILE, (4321, 4321))
    text = srv.metrics()
    assert metric_sum(text, "process_max_fds") == 4321
    rss = metric_sum(text, "process_resident_memory_bytes")
    assert metric_sum(text, "process_virtual_memory_bytes") > rss > 1e6
