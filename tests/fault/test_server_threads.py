"""The server's thread layout: a socket costs two threads whatever it waits for, work
runs on the shared pool, and a peer that reads slowly holds back only its own pushes."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import pouchsync_sync as ps
from pouchsync_sync.server.session import HIGH_WATER
from tests.rawpeer import RawPeer

from .proxy import wait_until

WAIT = 20.0


def _server_threads() -> dict[str, int]:
    counts: dict[str, int] = {}
    for thread in threading.enumerate():
        kind = thread.name.split("[")[0].rsplit("-", 1)[0] if thread.name.startswith(
            "pouchsync-server-worker") else thread.name.split("[")[0]
        counts[kind] = counts.get(kind, 0) + 1
    return counts


@pytest.fixture
def server(tmp_path: Any):
    data = ps.DataDir(tmp_path / "data")
    srv = ps.create_server(lambda credentials, name: data.database(name), longpoll_timeout=120.0)
    srv.start()
    try:
        yield srv, data
    finally:
        srv.stop()
        data.close()


def test_waiting_sockets_cost_two_threads_each_and_no_worker(server) -> None:
    srv, data = server
    n = 12
    peers = []
    try:
        for i in range(n):
            peer = RawPeer(srv.url)
            peers.append(peer)
            peer.send({"type": "open", "ch": 1, "db": "shared"})
            granted, _ = peer.until(lambda m: m.get("type") in ("granted", "denied"))
            assert granted["type"] == "granted", granted
            # one live subscription and one waiting longpoll call per socket
            peer.send({"type": "subscribe", "ch": 1, "sub": 1, "since": "now"})
            peer.send({"type": "call", "ch": 1, "id": 1, "op": "changes",
                       "args": {"feed": "longpoll", "since": "now", "timeout": 120}})
        assert wait_until(lambda: srv.stats()["subscriptions"] == n, WAIT)
        # the pool's threads end once idle; then only the sockets' own two remain
        assert wait_until(lambda: srv.stats()["workers"] == 0, WAIT), srv.stats()
        counts = _server_threads()
        assert counts.get("pouchsync-server-conn") == n, counts
        assert counts.get("pouchsync-server-ws") == n, counts
        assert counts.get("pouchsync-server-worker", 0) == 0, counts
        assert "pouchsync-follower" not in counts, counts  # embedded: followed without a thread
        assert srv.stats()["calls_in_flight"] == n
        # one write answers every longpoll and reaches every subscription
        data.database("shared").put({"_id": "news"})
        for peer in peers:
            got: set[str] = set()
            while got != {"reply", "changes"}:
                msg = peer.recv()
                assert isinstance(msg, dict), msg
                if msg["type"] == "reply":
                    assert msg["ok"]["results"][0]["id"] == "news"
                    got.add("reply")
                elif msg["type"] == "changes":
                    assert msg["results"][0]["id"] == "news"
                    got.add("changes")
        assert wait_until(lambda: srv.stats()["calls_in_flight"] == 0, WAIT)
    finally:
        for peer in peers:
            peer.close()
    assert wait_until(lambda: srv.stats()["connections"] == 0, WAIT)
    assert wait_until(lambda: not {"pouchsync-server-conn", "pouchsync-server-ws",
                                   "pouchsync-server-worker"} & set(_server_threads()), WAIT), \
        _server_threads()


def test_a_longpoll_answers_at_its_deadline_without_a_thread(server) -> None:
    srv, _ = server
    peer = RawPeer(srv.url)
    try:
        peer.send({"type": "open", "ch": 1, "db": "quiet"})
        peer.until(lambda m: m.get("type") == "granted")
        peer.send({"type": "call", "ch": 1, "id": 7, "op": "changes",
                   "args": {"feed": "longpoll", "since": "now", "timeout": 0.5}})
        reply, _ = peer.until(lambda m: m.get("type") == "reply")
        assert reply["id"] == 7 and reply["ok"]["results"] == []
        # and a closed channel drops its waiting longpoll: no answer, the call is over
        peer.send({"type": "call", "ch": 1, "id": 8, "op": "changes",
                   "args": {"feed": "longpoll", "since": "now", "timeout": 60}})
        assert wait_until(lambda: srv.stats()["calls_in_flight"] == 1, WAIT)
        peer.send({"type": "close", "ch": 1})
        closed, seen = peer.until(lambda m: m.get("type") == "closed")
        assert closed["ch"] == 1 and not [m for m in seen if m.get("type") == "reply"]
        assert wait_until(lambda: srv.stats()["calls_in_flight"] == 0, WAIT)
    finally:
        peer.close()


def test_pushes_to_a_peer_that_stops_reading_pause_and_resume_with_nothing_lost(server) -> None:
    srv, data = server
    db = data.database("big")
    peer = RawPeer(srv.url, timeout=WAIT)
    # a small receive buffer, so the server's sends block soon
    import socket
    peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    try:
        peer.send({"type": "open", "ch": 1, "db": "big"})
        peer.until(lambda m: m.get("type") == "granted")
        peer.send({"type": "subscribe", "ch": 1, "sub": 1, "since": 0, "include_docs": True})
        body = "x" * 4000
        count = 3000  # about 12 MB of pushes while the peer does not read
        for first in range(0, count, 500):
            db.bulk_docs([{"_id": f"d{i:05d}", "body": body} for i in range(first, first + 500)])
        # the server stops queueing well before everything: the pushes paused
        assert wait_until(lambda: srv.stats()["queued_bytes"] > 0, WAIT)
        most = 0
        for _ in range(20):
            most = max(most, srv.stats()["queued_bytes"])
            threading.Event().wait(0.05)
        assert most <= HIGH_WATER + 4 * 1024 * 1024, most  # at most one batch past the mark
        # the peer reads again: every doc arrives, once, in order
        ids: list[str] = []
        while len(ids) < count:
            msg = peer.recv()
            assert isinstance(msg, dict), msg
            if msg.get("type") == "changes":
                ids.extend(row["id"] for row in msg["results"])
        assert ids == [f"d{i:05d}" for i in range(count)]
    finally:
        peer.close()


def _ids_by_sub(peer: RawPeer, want: int, subs: tuple[int, ...]) -> dict[int, list[str]]:
    """Read ``changes`` until every sub in ``subs`` has ``want`` rows; the ids by sub."""
    got: dict[int, list[str]] = {s: [] for s in subs}
    while min(len(ids) for ids in got.values()) < want:
        msg = peer.recv()
        assert isinstance(msg, dict), msg
        if msg.get("type") == "changes":
            assert "results" in msg, msg
            got[msg["sub"]].extend(row["id"] for row in msg["results"])
    return got


def test_a_change_reaches_every_subscription_in_one_task_and_a_stalled_peer_waits_alone(
        server) -> None:
    import socket

    srv, data = server
    db = data.database("fan")
    readers = [RawPeer(srv.url, timeout=WAIT) for _ in range(10)]
    stalled = RawPeer(srv.url, timeout=WAIT)
    stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    peers = [*readers, stalled]
    try:
        for peer in peers:
            peer.send({"type": "open", "ch": 1, "db": "fan"})
            peer.until(lambda m: m.get("type") == "granted")
        for peer in readers:  # two subscriptions a socket, read apart (different options)
            peer.send({"type": "subscribe", "ch": 1, "sub": 1, "since": 0})
            peer.send({"type": "subscribe", "ch": 1, "sub": 2, "since": 0, "style": "all_docs"})
        stalled.send({"type": "subscribe", "ch": 1, "sub": 1, "since": 0, "include_docs": True})
        assert wait_until(lambda: srv.stats()["subscriptions"] == 21, WAIT)
        # big docs: the stalled peer's pushes pass the high-water mark and pause
        body = "x" * 4000
        for first in range(0, 1500, 500):
            db.bulk_docs([{"_id": f"a{i:05d}", "body": body} for i in range(first, first + 500)])
        big = [f"a{i:05d}" for i in range(1500)]
        for peer in readers:  # the others get everything meanwhile, in order, once
            assert _ids_by_sub(peer, len(big), (1, 2)) == {1: big, 2: big}
        assert srv.stats()["queued_bytes"] <= HIGH_WATER + 4 * 1024 * 1024
        # one change at a time: pushed by the fan-out task, not one lane task each
        lane_before = srv.stats()["live_pushes_lane"]
        small = [f"b{i:03d}" for i in range(20)]
        for doc_id in small:
            db.put({"_id": doc_id})
            for peer in readers:
                assert _ids_by_sub(peer, 1, (1, 2)) == {1: [doc_id], 2: [doc_id]}
        stats = srv.stats()
        assert stats["live_pushes_fanout"] >= 20 * 20 // 2  # a push task ending may take a few
        assert stats["live_pushes_lane"] - lane_before < 20 * 20 // 4, stats
        # the stalled peer reads at last: all of it, in order, once
        assert _ids_by_sub(stalled, len(big) + len(small), (1,)) == {1: big + small}
        for peer in peers:
            assert peer.probe()[0]["type"] == "closed"
    finally:
        for peer in peers:
            peer.close()
