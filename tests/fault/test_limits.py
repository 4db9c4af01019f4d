"""The per-socket limits hold exactly: ``max_channels`` (opening channels count) and
``max_calls`` (calls in flight, across channels) answer 429 past the limit, never more
work, and the socket goes on serving."""

from __future__ import annotations

import threading
from typing import Any

from tests.rawpeer import RawPeer

from .helpers import TOKEN


def _collect(peer: RawPeer, predicate: Any, count: int) -> list[dict[str, Any]]:
    """The next ``count`` messages matching ``predicate``, in any order."""
    found: list[dict[str, Any]] = []
    while len(found) < count:
        msg, _ = peer.until(predicate)
        assert isinstance(msg, dict), f"socket ended: {msg}"
        found.append(msg)
    return found


def test_max_channels_counts_opening_channels(hub, servers) -> None:
    release = threading.Event()

    def slow(credentials: Any, name: str) -> Any:
        release.wait(10)
        return hub.on_request(credentials, name)

    server = servers(slow, max_channels=3)
    peer = RawPeer(server.url)
    try:
        for ch in (1, 2, 3, 4, 5):
            peer.send({"type": "open", "ch": ch, "db": "lim", "credentials": TOKEN})
        refused = _collect(peer, lambda m: m.get("ch") in (4, 5), 2)
        for msg in refused:
            assert msg["type"] == "denied" and msg["status"] == 429, msg
            assert msg["error"] == "too_many_channels"
        release.set()
        granted = _collect(peer, lambda m: m.get("ch") in (1, 2, 3), 3)
        assert sorted(m["ch"] for m in granted if m["type"] == "granted") == [1, 2, 3], granted
        # closing one frees a slot
        peer.send({"type": "close", "ch": 1})
        peer.until(lambda m: m.get("type") == "closed" and m.get("ch") == 1)
        peer.send({"type": "open", "ch": 4, "db": "lim", "credentials": TOKEN})
        assert peer.until(lambda m: m.get("ch") == 4)[0]["type"] == "granted"
    finally:
        release.set()
        peer.close()


def test_max_calls_in_flight_across_channels(hub, servers) -> None:
    server = servers(hub.on_request, max_calls=4, workers=8)
    peer = RawPeer(server.url)
    try:
        for ch in (1, 2):
            peer.send({"type": "open", "ch": ch, "db": "lim", "credentials": TOKEN})
            assert peer.until(lambda m, ch=ch: m.get("ch") == ch)[0]["type"] == "granted"
        since = hub.db("lim").info()["update_seq"]  # not "now": that is read when the call runs
        longpoll = {"op": "changes", "args": {"since": since, "feed": "longpoll", "timeout": 30}}
        for i in range(1, 5):  # 4 calls held in flight on two channels
            peer.send({"type": "call", "ch": 1 + i % 2, "id": i, **longpoll})
        peer.send({"type": "call", "ch": 1, "id": 99, "op": "info"})
        reply, seen = peer.until(lambda m: m.get("type") == "reply")
        assert reply["id"] == 99 and reply["error"]["status"] == 429, reply
        assert reply["error"]["error"] == "too_many_requests"
        assert not seen
        # a write wakes the longpolls; once answered, calls are accepted again
        hub.db("lim").put({"_id": "wake"})
        done = _collect(peer, lambda m: m.get("type") == "reply" and m.get("id") in (1, 2, 3, 4), 4)
        assert all("ok" in m for m in done), done
        peer.send({"type": "call", "ch": 2, "id": 100, "op": "info"})
        reply, _ = peer.until(lambda m: m.get("type") == "reply" and m.get("id") == 100)
        assert "ok" in reply, reply
    finally:
        peer.close()
