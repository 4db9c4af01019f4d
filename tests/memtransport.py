"""An in-memory ``Transport`` for the client (``Client(transport=...)``): no sockets.

``MemoryTransport`` is a tiny network: ``serve(url, accept)`` puts a server at a URL,
and each ``connect(url, ...)`` makes a pair of ``MemorySocket`` ends and hands the
server's end to ``accept(end, headers)``. A server either answers frames as they are
sent (``end.on_frame = handler``: the handler runs on the sending thread, no thread of
its own) or reads them from its end (``end.recv()``) on a thread of its own. A URL
nobody serves is ``Unreachable``, as a closed port is.

The ends keep the transport's contract (client/transport.py): whole text frames, a
``close`` frame echoed by a handler-driven end, ``ping`` answered by a pong unless the
peer is ``silent`` (a hung server), ``abort`` waking a blocked ``recv``, and every
failure a ``TransportError``. Errors raised by a handler are kept in ``errors`` (the
test asserts there are none) and end that connection.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable

from pouchsync_sync import jsoncodec
from pouchsync_sync.errors import TransportError, Unreachable

__all__ = ["MemorySocket", "MemoryTransport", "pair"]

_EOF = ("eof", b"")


class _Opening:
    def __init__(self) -> None:
        self.aborted = threading.Event()

    def abort(self) -> None:
        self.aborted.set()


class MemorySocket:
    """One end of an in-memory websocket. ``send_text`` from any thread, ``recv`` from one."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.peer: MemorySocket | None = None
        self.on_frame: Callable[[bytes], None] | None = None
        self.silent = False  # no pongs: a hung peer
        self.errors: list[BaseException] = []
        self.sent: list[bytes] = []
        self._inbox: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._timeout: float | None = None
        self._shut = threading.Event()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<MemorySocket {self.name}{' shut' if self._shut.is_set() else ''}>"

    # -- the transport.Socket interface ---------------------------------------------------
    def send_text(self, payload: bytes) -> None:
        self._deliver(("text", bytes(payload)))

    def recv(self) -> tuple[Any, bytes]:
        waited = 0.0
        while True:
            if self._shut.is_set() and self._inbox.empty():
                raise TransportError(f"{self.name}: socket shut down")
            try:
                kind, data = self._inbox.get(timeout=0.2)
            except queue.Empty:
                waited += 0.2
                if self._timeout is not None and waited >= self._timeout:
                    raise TransportError(f"{self.name}: timed out") from None
                continue
            if kind == "eof":
                raise TransportError(f"{self.name}: connection reset by peer")
            return kind, data

    def ping(self) -> None:
        peer = self.peer
        if self._shut.is_set():
            raise TransportError(f"{self.name}: socket shut down")
        if peer is not None and not peer.silent and not peer._shut.is_set():
            self._inbox.put(("control", b""))  # the pong

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout

    def close(self) -> None:
        self._deliver(("close", b""))

    def abort(self) -> None:
        if not self._shut.is_set():
            self._shut.set()
            self._inbox.put(_EOF)
            peer = self.peer
            if peer is not None:
                peer._inbox.put(_EOF)

    def shutdown(self) -> None:
        self.abort()

    # -- for scripted servers -------------------------------------------------------------
    def send(self, msg: dict[str, Any]) -> None:
        self.send_text(jsoncodec.dumps_bytes(msg))

    def recv_msg(self) -> dict[str, Any]:
        """The next text message (control frames skipped); ``TransportError`` on a close."""
        while True:
            kind, data = self.recv()
            if kind == "text":
                msg: dict[str, Any] = jsoncodec.loads(data)
                return msg
            if kind == "close":
                raise TransportError(f"{self.name}: close frame")

    def _deliver(self, frame: tuple[str, bytes]) -> None:
        peer = self.peer
        if self._shut.is_set():
            raise TransportError(f"{self.name}: socket shut down")
        if peer is None or peer._shut.is_set():
            raise TransportError(f"{self.name}: connection reset by peer")
        if frame[0] == "text":
            self.sent.append(frame[1])
        handler = peer.on_frame
        if handler is None:
            peer._inbox.put(frame)
        elif frame[0] == "close":
            self._inbox.put(("close", b""))  # a handler-driven end echoes the close
        else:
            with peer._lock:  # one frame at a time, as a reader thread would
                try:
                    handler(frame[1])
                except BaseException as exc:  # noqa: BLE001 - reported by the test
                    peer.errors.append(exc)
                    peer.abort()


def pair(name: str = "memory") -> tuple[MemorySocket, MemorySocket]:
    """A connected (client end, server end)."""
    client, server = MemorySocket(f"{name}/client"), MemorySocket(f"{name}/server")
    client.peer, server.peer = server, client
    return client, server


class MemoryTransport:
    """Servers by URL; ``connect`` pairs a new client end with the server's ``accept``."""

    def __init__(self) -> None:
        self._servers: dict[str, Callable[[MemorySocket, list[str]], None]] = {}
        self.ends: list[MemorySocket] = []
        self.openings: list[_Opening] = []
        self._lock = threading.Lock()

    def serve(self, url: str, accept: Callable[[MemorySocket, list[str]], None]) -> None:
        with self._lock:
            self._servers[url] = accept

    def connect(self, url: str, *, headers: list[str], timeout: float,
                on_opening: Callable[[Any], None] | None = None) -> MemorySocket:
        opening = _Opening()
        if on_opening is not None:
            on_opening(opening)
        with self._lock:
            accept = self._servers.get(url)
            self.openings.append(opening)
        if accept is None or opening.aborted.is_set():
            raise Unreachable(f"{url} refused the connection (is the server running?)")
        client, server = pair(url)
        with self._lock:
            self.ends += [client, server]
        accept(server, headers)
        return client

    def errors(self) -> list[BaseException]:
        with self._lock:
            return [exc for end in self.ends for exc in end.errors]

    def close(self) -> None:
        """Shut every end (the links' readers then end)."""
        with self._lock:
            ends = list(self.ends)
        for end in ends:
            end.abort()
