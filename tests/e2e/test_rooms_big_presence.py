"""Presence notices in a big room (docs/ws-contract.md): from 500 members on a node, the room's
notice window grows with its members (about 1 ms each), so a reconnect storm of thousands does
not send every member ten notices a second. Not the coalescing itself (test_ws_rooms.py)."""

import time

import pytest

from test_ws_rooms import open_many
from wsclient import join, presence_names, unique

BIG = 500  # HUB_NOTICE_BIG
LATE = 150  # joiners after the room is big, paced so several windows pass


def close_all(conns):
    for c in conns:
        c.close()


@pytest.mark.deadline(50)
def test_big_room_notices_come_at_most_once_per_longer_window(server):
    room = unique()
    watcher, _ = join(server.port, room, "watcher")
    conns = []
    try:
        time.sleep(0.25)
        conns = open_many(server.port, room, [f"b{i:03d}" for i in range(BIG)], batch=50, pause=0)
        conns += open_many(server.port, room, [f"l{i:03d}" for i in range(LATE)], batch=15,
                           pause=0.15)
        total = BIG + LATE
        announced, frames = 0, []
        deadline = time.monotonic() + 20
        while announced < total:
            f = watcher.recv_json(timeout=max(0.0, deadline - time.monotonic()))
            assert f["type"] == "join" and f["room"] == room, f
            announced += len(presence_names(f)) + f.get("more", 0)
            frames.append((f["ts"], f["online"]))  # ts: when the server built it
        assert announced == total, "every joiner counted once (listed or in more)"
        assert frames[-1][1] == total + 1, frames[-1]
        # Once the room is big, notices are built at least ~0.5 s apart (100 ms below that).
        big = [t for t, online in frames if online > BIG + 1]
        assert len(big) >= 2, frames
        gaps = [b - a for a, b in zip(big, big[1:])]
        assert min(gaps) >= 0.35, gaps
    finally:
        close_all(conns)
        watcher.close()
