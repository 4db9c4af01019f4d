"""Slow and idle peers: sockets that never say hello, never finish (or start) their HTTP
upgrade, or stop reading. Each is closed after the configured time, and no server thread
stays behind for it."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from tests.rawpeer import RawPeer

from .helpers import TOKEN, thread_stacks
from .proxy import wait_until


def _port(url: str) -> int:
    return int(url.rstrip("/").rsplit(":", 1)[1])


def _request_threads() -> list[threading.Thread]:
    """werkzeug's per-connection handler threads."""
    return [t for t in threading.enumerate() if "process_request_thread" in t.name]


def _session_threads() -> list[str]:
    return [t.name for t in threading.enumerate()
            if t.name.startswith(("pouchsync-server-ws", "pouchsync-server-worker"))]


def test_no_hello_is_closed_after_hello_timeout(hub, servers) -> None:
    server = servers(hub.on_request, hello_timeout=0.5)
    peers = [RawPeer(server.url, hello=False) for _ in range(5)]
    started = time.monotonic()
    for peer in peers:
        answer, seen = peer.until(lambda m: False, timeout=5.0)
        assert answer == ("close", 1008), (answer, seen)
        assert seen and seen[0]["status"] == 408 and seen[0]["error"] == "hello_timeout"
        peer.close()
    assert time.monotonic() - started < 3.0
    assert wait_until(lambda: server.stats()["connections"] == 0 and not _session_threads(), timeout=5)


@pytest.mark.parametrize("sent", [b"", b"GET / HTTP/1.1\r\nHost: x\r\n", b"GET / HT"],
                         ids=["nothing", "headers never end", "half a request line"])
def test_socket_that_never_upgrades_is_closed_and_frees_its_thread(hub, servers, sent: bytes) -> None:
    """Before the upgrade the server has not seen a WebSocket yet: an idle TCP
    connection must still not hold a server thread (and its socket) forever."""
    server = servers(hub.on_request, hello_timeout=0.5)
    before = set(_request_threads())
    socks = [socket.create_connection(("127.0.0.1", _port(server.url)), timeout=5) for _ in range(5)]
    try:
        for sock in socks:
            sock.sendall(sent)
        assert wait_until(lambda: len(set(_request_threads()) - before) == 5, timeout=5)
        # within about hello_timeout the server gives up on each of them
        for sock in socks:
            sock.settimeout(5.0)
            try:
                data = sock.recv(4096)
                while data:
                    data = sock.recv(4096)
            except ConnectionResetError:
                pass
        leftover = lambda: [t for t in set(_request_threads()) - before if t.is_alive()]  # noqa: E731
        assert wait_until(lambda: not leftover(), timeout=5), thread_stacks(t.name for t in leftover())
        # and the server still serves
        peer = RawPeer(server.url)
        peer.send({"type": "open", "ch": 1, "db": "alive", "credentials": TOKEN})
        assert peer.until(lambda m: m.get("ch") == 1)[0]["type"] == "granted"
        peer.close()
    finally:
        for sock in socks:
            sock.close()


def test_peer_that_stops_reading_is_closed_without_holding_threads(hub, servers) -> None:
    """A client sends calls with big replies and never reads: the server's send blocks
    once the socket buffers are full; after send_timeout the socket is closed and the
    session's threads end. Other sockets are served meanwhile."""
    server = servers(hub.on_request, send_timeout=1.0, ping_interval=None)
    db = hub.db("big")
    blob = "x" * 100_000
    db.bulk_docs([{"_id": f"d{i:03d}", "blob": blob} for i in range(50)])  # ~5 MB per all_docs
    sock_peer = RawPeer(server.url)
    sock_peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock_peer.send({"type": "open", "ch": 1, "db": "big", "credentials": TOKEN})
    assert sock_peer.until(lambda m: m.get("ch") == 1)[0]["type"] == "granted"
    for i in range(1, 11):  # ~50 MB of replies, never read
        sock_peer.send({"type": "call", "ch": 1, "id": i, "op": "all_docs",
                        "args": {"include_docs": True}})
    try:
        other = RawPeer(server.url)  # served meanwhile
        other.send({"type": "open", "ch": 1, "db": "big", "credentials": TOKEN})
        assert other.until(lambda m: m.get("ch") == 1, timeout=5)[0]["type"] == "granted"
        other.close()
        assert wait_until(lambda: server.stats()["connections"] == 0, timeout=20), server.stats()
        assert wait_until(lambda: not _session_threads(), timeout=10), thread_stacks(_session_threads())
    finally:
        sock_peer.sock.close()


def test_bytes_after_a_websocket_ends_are_not_read_as_http(hub, servers, caplog) -> None:
    """The server closes a socket (1009) while the client is still sending frames: those
    bytes must not be parsed as a new HTTP request (werkzeug's keep-alive loop answered
    them with a 400 and logged an ERROR per connection, which any client could trigger)."""
    import logging

    server = servers(hub.on_request, max_message_size=1024)
    caplog.set_level(logging.INFO, logger="werkzeug")
    for _ in range(5):
        peer = RawPeer(server.url)
        big = peer.frame("x" * 4096)
        more = peer.frame('{"type":"close","ch":1}')
        peer.send_raw(big + more * 20)
        answer, _ = peer.until(lambda m: False)
        assert answer in (("close", 1009), ("gone", None)), answer
        peer.sock.settimeout(2.0)
        trailing = b""
        try:
            while chunk := peer.sock.recv(4096):
                trailing += chunk
        except OSError:
            pass
        peer.sock.close()
        assert b"HTTP/1." not in trailing, trailing[:200]
    assert wait_until(lambda: server.stats()["connections"] == 0, timeout=10)
    assert wait_until(lambda: not _request_threads(), timeout=10)
    noise = [r.getMessage() for r in caplog.records if r.name == "werkzeug" and r.levelno >= logging.ERROR]
    assert not noise, noise[:3]


def test_stop_with_every_kind_of_peer_attached(hub, servers) -> None:
    """``stop()`` with idle TCP sockets, a socket without hello, channels with longpolls
    and subscriptions, and a peer that stopped reading: it returns promptly, every
    library thread ends, and the pre-upgrade handler threads end within hello_timeout."""
    server = servers(hub.on_request, hello_timeout=1.0, send_timeout=1.0, ping_interval=None)
    port = _port(server.url)
    before = set(_request_threads())
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
    no_hello = RawPeer(server.url, hello=False)
    busy = RawPeer(server.url)
    busy.send({"type": "open", "ch": 1, "db": "stop", "credentials": TOKEN})
    assert busy.until(lambda m: m.get("ch") == 1)[0]["type"] == "granted"
    since = hub.db("stop").info()["update_seq"]
    busy.send({"type": "call", "ch": 1, "id": 1, "op": "changes",
               "args": {"since": since, "feed": "longpoll", "timeout": 60}})
    busy.send({"type": "subscribe", "ch": 1, "sub": 1, "since": since})
    deaf = RawPeer(server.url)
    deaf.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    deaf.send({"type": "open", "ch": 1, "db": "stop", "credentials": TOKEN})
    hub.db("stop").bulk_docs([{"_id": f"d{i}", "blob": "x" * 50_000} for i in range(40)])
    for i in range(2, 8):
        deaf.send({"type": "call", "ch": 1, "id": i, "op": "all_docs", "args": {"include_docs": True}})
    started = time.monotonic()
    try:
        server.stop()
        took = time.monotonic() - started
        assert took < 10.0, f"stop() took {took:.1f}s"
        assert wait_until(lambda: not _session_threads(), timeout=10), thread_stacks(_session_threads())
        assert not [t.name for t in threading.enumerate()
                    if t.name.startswith("pouchsync") and t.is_alive()]
        leftover = lambda: [t for t in set(_request_threads()) - before if t.is_alive()]  # noqa: E731
        assert wait_until(lambda: not leftover(), timeout=10), thread_stacks(t.name for t in leftover())
    finally:
        for sock in idle:
            sock.close()
        for peer in (no_hello, busy, deaf):
            peer.sock.close()
