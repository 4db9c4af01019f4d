"""A socket closed in any state leaves no server thread behind (issue 14, "Bad input
and safety": the thread layout of a server socket, whatever it is, must not leak).

For each state a client socket can be in — TCP connected with nothing sent, HTTP
upgrade half sent, upgraded without a hello, hello sent but the welcome never read, a
call in flight whose reply is never read (a large ``all_docs``, a waiting longpoll), a
live subscription mid-stream, a peer that stopped reading while pushes pile up — the
peer drops the socket (a FIN, or a reset with SO_LINGER 0) and the server's threads go
back to the baseline, with ``stats()["connections"] == 0``. The last test stops the
server with all of them open at once.

Threads are counted over the whole process (not by name), so these tests hold for any
thread layout: werkzeug's handler threads are not ``pouchsync*`` ones and the conftest
leak check would not see them. The baseline is taken after one clean session that did
the same kinds of work (a call, a longpoll, a subscription with pushes), so threads a
layout keeps for the whole server (a shared pool) are in it; the server's ``stop()``
must then bring the count back to what it was before the server started.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import termios
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from pouchsync_sync import LocalDatabase, create_server
from tests.rawpeer import RawPeer

from .helpers import thread_stacks
from .proxy import wait_until

WAIT = 20.0          # generous: the machine is shared; a leak never comes back
DB = "threads"
BIG_TEXT = "x" * 2000
SMALL_RCVBUF = 4096  # the kernel doubles it; far below a reply of megabytes


def _threads() -> list[threading.Thread]:
    return threading.enumerate()


def _count() -> int:
    return len(threading.enumerate())


def _unread(sock: socket.socket) -> int:
    """Bytes waiting in this socket's receive queue (FIONREAD)."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


def _drop(sock: socket.socket, how: str) -> None:
    """Close the peer's socket: ``fin`` (an orderly close) or ``reset`` (SO_LINGER 0:
    the kernel sends RST and discards what is queued)."""
    if how == "reset":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class Rig:
    """A real SyncServer on one LocalDatabase, and the thread baseline to return to."""

    def __init__(self, root: Path) -> None:
        self.before_server = {t.ident for t in _threads()}
        self.before_count = _count()
        self.db = LocalDatabase(root / f"{DB}.sqlite", name=DB)
        # a large hello_timeout: the handshake states must be freed by the drop itself;
        # one worker: a layout whose pool is shared by the server has at most one pool
        # thread, which the warm-up starts, so the baseline does not depend on how many
        # pool threads a test happened to wake
        self.server = create_server(lambda credentials, name: self.db, hello_timeout=60.0,
                                    workers=1)
        self.server.start()
        self.port = int(self.server.url.rstrip("/").rsplit(":", 1)[1])
        try:
            self._warm_up()
        except BaseException:
            self.stop()
            raise
        self.baseline = {t.ident for t in _threads()}
        self.baseline_count = len(self.baseline)

    def _warm_up(self) -> None:
        """One clean session with a call, a longpoll and a pushed change, closed
        properly; then wait for its own threads to end (those that stay are the
        server's, whatever its layout)."""
        server_threads = _count()
        self.db.put({"_id": "warm-0"})
        peer = RawPeer(self.server.url)
        open_channel(peer)
        seq = call(peer, 1, "info")["ok"]["update_seq"]
        peer.send({"type": "call", "ch": 1, "id": 2, "op": "changes",
                   "args": {"since": seq, "feed": "longpoll", "timeout": 30}})
        peer.send({"type": "subscribe", "ch": 1, "sub": 1, "since": seq})
        self.db.put({"_id": "warm-1"})
        pushed: list[Any] = []
        answered: list[Any] = []

        def both(msg: dict[str, Any]) -> bool:
            if msg.get("type") == "changes":
                pushed.append(msg)
            elif msg.get("type") == "reply" and msg.get("id") == 2:
                answered.append(msg)
            return bool(pushed and answered)

        got, _ = peer.until(both)
        assert pushed[0].get("results") and answered[0].get("ok", {}).get("results"), got
        peer.close()
        assert wait_until(lambda: self.server.stats()["connections"] == 0, WAIT)
        # today every thread of a session ends with it; a layout with server-wide
        # threads keeps some: they join the baseline after this bounded wait
        wait_until(lambda: _count() <= server_threads, 3.0)

    def connect(self, rcvbuf: int | None = None) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(10.0)
        sock.connect(("127.0.0.1", self.port))
        return sock

    def peer(self, *, hello: bool = True, rcvbuf: int | None = None) -> RawPeer:
        return RawPeer(self.server.url, hello=hello, rcvbuf=rcvbuf)

    def extra_threads(self) -> list[str]:
        return sorted(t.name for t in _threads() if t.ident not in self.baseline)

    def assert_settled(self, what: str) -> None:
        """The server is back to its baseline: no connection, no thread more."""
        settled = wait_until(lambda: self.server.stats()["connections"] == 0
                             and _count() <= self.baseline_count, WAIT)
        extra = self.extra_threads()
        assert settled, (f"{what}: {_count()} threads, baseline {self.baseline_count}; "
                         f"threads not in the baseline: {extra}; stats {self.server.stats()}\n"
                         f"{thread_stacks(extra)}")

    def stop(self) -> None:
        self.server.stop()
        self.db.close()


def open_channel(peer: RawPeer, ch: int = 1) -> None:
    peer.send({"type": "open", "ch": ch, "db": DB})
    got, _ = peer.until(lambda m: m.get("ch") == ch)
    assert got.get("type") == "granted", got


def call(peer: RawPeer, call_id: int, op: str, **args: Any) -> dict[str, Any]:
    peer.send({"type": "call", "ch": 1, "id": call_id, "op": op, "args": args})
    got, _ = peer.until(lambda m: m.get("type") == "reply" and m.get("id") == call_id)
    assert isinstance(got, dict), got
    return got


def fill(db: LocalDatabase, prefix: str, count: int, chunk: int = 500) -> None:
    for start in range(0, count, chunk):
        db.bulk_docs([{"_id": f"{prefix}-{i:06d}", "text": BIG_TEXT}
                      for i in range(start, min(count, start + chunk))])


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.stop()


DROPS = ["fin", "reset"]


# -- before the welcome -----------------------------------------------------------------
@pytest.mark.parametrize("how", DROPS)
def test_tcp_connected_nothing_sent(rig: Rig, how: str) -> None:
    sock = rig.connect()
    # the server has taken the connection (a thread of some kind serves it)
    assert wait_until(lambda: _count() > rig.baseline_count, WAIT), rig.extra_threads()
    _drop(sock, how)
    rig.assert_settled(f"TCP connection dropped ({how}) before any byte")


@pytest.mark.parametrize("how", DROPS)
def test_http_upgrade_half_sent(rig: Rig, how: str) -> None:
    sock = rig.connect()
    sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Ver")
    assert wait_until(lambda: _count() > rig.baseline_count, WAIT), rig.extra_threads()
    _drop(sock, how)
    rig.assert_settled(f"HTTP upgrade half sent, then dropped ({how})")


@pytest.mark.parametrize("how", DROPS)
def test_upgraded_without_hello(rig: Rig, how: str) -> None:
    peer = rig.peer(hello=False)
    assert wait_until(lambda: rig.server.stats()["connections"] == 1, WAIT)
    _drop(peer.sock, how)
    rig.assert_settled(f"upgraded, no hello, dropped ({how})")


@pytest.mark.parametrize("how", DROPS)
def test_hello_sent_welcome_never_read(rig: Rig, how: str) -> None:
    peer = rig.peer(hello=False)
    assert peer.send({"type": "hello", "versions": [1], "agent": "thread-test"})
    # the welcome is in our receive queue, unread
    assert wait_until(lambda: _unread(peer.sock) > 0, WAIT)
    _drop(peer.sock, how)
    rig.assert_settled(f"hello sent, welcome unread, dropped ({how})")


# -- mid-call ---------------------------------------------------------------------------
@pytest.mark.parametrize("how", DROPS)
def test_large_reply_never_read(rig: Rig, how: str) -> None:
    fill(rig.db, "big", 3000)  # include_docs: a reply of about 6 MB
    peer = rig.peer(rcvbuf=SMALL_RCVBUF)
    open_channel(peer)
    peer.send({"type": "call", "ch": 1, "id": 1, "op": "all_docs",
               "args": {"include_docs": True}})
    sock = peer.sock
    # the reply has started to come: the rest is in the server's send (blocked)
    assert wait_until(lambda: _unread(sock) > 0, WAIT)
    assert rig.server.stats()["connections"] == 1
    _drop(sock, how)
    rig.assert_settled(f"all_docs reply unread, dropped ({how})")


@pytest.mark.parametrize("how", DROPS)
def test_longpoll_waiting(rig: Rig, how: str) -> None:
    peer = rig.peer()
    open_channel(peer)
    seq = call(peer, 1, "info")["ok"]["update_seq"]
    peer.send({"type": "call", "ch": 1, "id": 2, "op": "changes",
               "args": {"since": seq, "feed": "longpoll", "timeout": 120}})
    assert wait_until(lambda: rig.server.stats()["calls_in_flight"] == 1, WAIT)
    _drop(peer.sock, how)
    rig.assert_settled(f"longpoll waiting, dropped ({how})")
    rig.db.put({"_id": "after-drop"})  # wakes whatever still waited: nothing must
    rig.assert_settled("a write after the longpoll's socket was dropped")


# -- mid-live-push ----------------------------------------------------------------------
@pytest.mark.parametrize("how", DROPS)
def test_subscription_dropped_mid_stream(rig: Rig, how: str) -> None:
    peer = rig.peer()
    open_channel(peer)
    seq = call(peer, 1, "info")["ok"]["update_seq"]
    peer.send({"type": "subscribe", "ch": 1, "sub": 1, "since": seq, "include_docs": True})
    fill(rig.db, "stream-a", 500, chunk=50)
    got, _ = peer.until(lambda m: m.get("type") == "changes")
    assert got.get("results"), got
    _drop(peer.sock, how)
    fill(rig.db, "stream-b", 500, chunk=50)  # the stream goes on into the dropped socket
    rig.assert_settled(f"subscription dropped mid-stream ({how})")


@pytest.mark.parametrize("how", DROPS)
def test_subscriber_stops_reading_then_drops(rig: Rig, how: str) -> None:
    peer = rig.peer(rcvbuf=SMALL_RCVBUF)
    open_channel(peer)
    seq = call(peer, 1, "info")["ok"]["update_seq"]
    peer.send({"type": "subscribe", "ch": 1, "sub": 1, "since": seq, "include_docs": True})
    sock = peer.sock
    fill(rig.db, "pile", 3000, chunk=100)  # about 6 MB of pushes, none read
    assert wait_until(lambda: _unread(sock) > 0, WAIT)
    _drop(sock, how)
    rig.assert_settled(f"subscriber stopped reading, then dropped ({how})")


# -- stop() with all of them open -------------------------------------------------------
def _assert_stop_frees_everything(r: Rig) -> None:
    r.server.stop()  # with every socket still open on the client side
    assert r.server.stats()["connections"] == 0
    gone = wait_until(lambda: _count() <= r.before_count, WAIT)
    extra = sorted(t.name for t in _threads() if t.ident not in r.before_server)
    assert gone, (f"after stop(): {_count()} threads, {r.before_count} before the server "
                  f"started; still running: {extra}\n{thread_stacks(extra)}")


def test_stop_with_upgraded_sockets_in_every_state(tmp_path: Path) -> None:
    r = Rig(tmp_path)
    opened: list[socket.socket] = []
    try:
        fill(r.db, "big", 3000)
        no_hello = r.peer(hello=False)
        unread_welcome = r.peer(hello=False)
        unread_welcome.send({"type": "hello", "versions": [1], "agent": "thread-test"})
        unread = r.peer(rcvbuf=SMALL_RCVBUF)
        open_channel(unread)
        unread.send({"type": "call", "ch": 1, "id": 1, "op": "all_docs",
                     "args": {"include_docs": True}})
        longpoll = r.peer()
        open_channel(longpoll)
        seq = call(longpoll, 1, "info")["ok"]["update_seq"]
        longpoll.send({"type": "call", "ch": 1, "id": 2, "op": "changes",
                       "args": {"since": seq, "feed": "longpoll", "timeout": 120}})
        stalled = r.peer(rcvbuf=SMALL_RCVBUF)
        open_channel(stalled)
        stalled.send({"type": "subscribe", "ch": 1, "sub": 1, "since": seq,
                      "include_docs": True})
        opened = [p.sock for p in (no_hello, unread_welcome, unread, longpoll, stalled)]
        fill(r.db, "pile", 3000, chunk=100)
        assert wait_until(lambda: _unread(unread.sock) > 0 and _unread(stalled.sock) > 0
                          and _unread(unread_welcome.sock) > 0
                          and r.server.stats()["connections"] == 5, WAIT), r.server.stats()
        _assert_stop_frees_everything(r)
    finally:
        for sock in opened:
            _drop(sock, "reset")
        r.stop()


def test_stop_with_sockets_before_the_upgrade(tmp_path: Path) -> None:
    """stop() also ends the connections still reading their HTTP request (before it
    did, their handler threads stayed until hello_timeout: 60 s here)."""
    r = Rig(tmp_path)
    opened: list[socket.socket] = []
    try:
        idle = r.connect()
        half = r.connect()
        opened = [idle, half]
        half.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
        assert wait_until(lambda: _count() >= r.baseline_count + 2, WAIT), r.extra_threads()
        _assert_stop_frees_everything(r)
    finally:
        for sock in opened:
            _drop(sock, "reset")
        r.stop()
