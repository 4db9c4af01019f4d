"""The TCP socket handed to simple-websocket, with every write serialized and complete.

simple-websocket writes frames with a single ``socket.send`` from two threads: ours
(data frames, under the session's lock) and its own reader thread (pongs, pings and
close replies). A blocking ``send`` that waits for buffer space can let the other
thread's bytes in between, and a socket with a timeout sends a frame only in part and
drops the rest silently (simple-websocket 1.1 ``Base.send``; docs/protocol.md §8).
``SerializedSocket`` gives
simple-websocket one lock around ``sendall`` instead, so a frame always goes out whole
and alone; everything else is the real socket's.

``WebSocketServer`` is simple-websocket's server with permessage-deflate bounded: a
compressed frame never inflates beyond the socket's ``max_message_size``.

``ping_interval_for`` spreads the sockets' pings: simple-websocket's reader thread pings
every ``ping_interval`` from when its socket connected, and a stall (the GIL busy with a
big fan-out) makes the pings delayed by it go out together and stay together, a herd
that comes back every interval. Each socket pings at its own interval, between
``PING_SPREAD`` and 1 times the configured one (never less often than promised), so a
herd drifts apart within a few intervals.
"""

from __future__ import annotations

import random
import socket
import threading
import zlib
from typing import Any, cast

import simple_websocket
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason

__all__ = ["SerializedSocket", "serialized_environ", "WebSocketServer", "ping_interval_for",
           "MAX_RECEIVE", "PING_SPREAD"]

_SOCKET_KEYS = ("werkzeug.socket", "gunicorn.socket")
#: a socket's ping interval is between this fraction of the configured one and all of it
PING_SPREAD = 0.75
#: the most one read of a socket asks for, while data keeps filling its reads
MAX_RECEIVE = 1024 * 1024
#: how much more the next read asks for after one that was filled
BURST_GROWTH = 4
#: the longest a reader thread done reading waits for its session to let it end, seconds
READER_PATIENCE = 60.0


def ping_interval_for(interval: float | None, rnd: random.Random) -> float | None:
    """One socket's ping interval: ``interval`` spread (see the module), None stays None."""
    if interval is None:
        return None
    return interval * rnd.uniform(PING_SPREAD, 1.0)


class SerializedSocket:
    """A socket whose ``send`` is ``sendall`` under a lock. Thread-safe for writes."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._write = threading.Lock()
        self._want = 0  # bytes the next read asks for while a burst lasts (0: none)

    def recv(self, size: int) -> bytes:
        """Up to ``size`` bytes, or more while big reads last: a read that filled what
        it asked for asks for ``BURST_GROWTH`` times more the next time (up to
        ``MAX_RECEIVE``), one that got more than ``size`` asks for as much again, one
        that got ``size`` or less goes back to ``size``. Big messages (batches of docs)
        then take fewer reads and fewer rounds of the frame parser, while a socket
        that only gets small ones reads as before. The reader thread's only."""
        want = size if self._want < size else self._want
        data = self._sock.recv(want)
        got = len(data)
        if got == want:
            self._want = min(want * BURST_GROWTH, MAX_RECEIVE)
        elif got <= size:
            self._want = 0
        return data

    def send(self, data: bytes) -> int:
        with self._write:
            self._sock.sendall(data)
        return len(data)

    def sendall(self, data: bytes) -> None:
        self.send(data)

    def send_now(self, data: bytes) -> int:
        """Write what the socket takes without waiting (``MSG_DONTWAIT``): the bytes
        written, possibly fewer than ``data`` (0 when its buffer is full). The lock is
        only tried, so a thread never waits here for another one's write."""
        if not self._write.acquire(blocking=False):
            return 0
        try:
            return self._sock.send(data, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return 0
        finally:
            self._write.release()

    def __getattr__(self, name: str) -> Any:  # recv, close, shutdown, fileno, ...
        return getattr(self._sock, name)

    def __repr__(self) -> str:
        return f"<SerializedSocket {self._sock!r}>"


def serialized_environ(environ: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``environ`` whose server socket (werkzeug's or gunicorn's) is wrapped."""
    out = dict(environ)
    for key in _SOCKET_KEYS:
        sock = out.get(key)
        if sock is not None:
            out[key] = SerializedSocket(sock)
    return out


class _BoundedDeflate(PerMessageDeflate):
    """permessage-deflate whose inflated message may not exceed the socket's current
    ``max_message_size``: wsproto inflates each chunk with no bound, so 60 KB on the wire
    could become 60 MB in memory before simple-websocket's size check saw it. Inflation
    here stops one byte past the limit and the socket closes with 1009."""

    owner: Any = None
    inflated = 0

    def frame_inbound_payload_data(self, proto: Any, data: bytes) -> bytes | CloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        assert self._decompressor is not None
        limit = getattr(self.owner, "max_message_size", None) or 0
        room = max(limit - self.inflated, 0) + 1 if limit else 0
        try:
            out = self._decompressor.decompress(bytes(data), room)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self.inflated += len(out)
        if limit and self.inflated > limit:
            return CloseReason.MESSAGE_TOO_BIG
        return out

    def frame_inbound_complete(self, proto: Any, fin: bool) -> bytes | CloseReason | None:
        if fin and self._inbound_is_compressible:  # a message ends (not a ping inside it)
            self.inflated = 0
        return super().frame_inbound_complete(proto, fin)


class WebSocketServer(simple_websocket.Server):
    """simple-websocket's server side with inflation bounded by ``max_message_size``
    (which the session lowers until the hello is answered), whose ``event`` is set once
    more when its reader thread is done reading (``reading_done``). The reader thread
    then ends once ``may_end`` is set (by the session's teardown, in its turn of the
    server's ``ending.EndingLine``), or after ``READER_PATIENCE`` seconds. Same threads
    and API."""

    #: set when the reader thread is done reading (the socket is closed)
    reading_done: threading.Event
    #: set when the reader thread may end
    may_end: threading.Event

    def _thread(self) -> None:
        try:
            super()._thread()
        finally:
            # simple-websocket sets the event for some endings *before* it marks the
            # socket closed (a message over max_message_size): the session, waiting on
            # the event, must see ``connected`` false after the last wake-up
            self.reading_done.set()
            self.event.set()
            self.may_end.wait(READER_PATIENCE)

    def handshake(self) -> None:
        self.reading_done = threading.Event()
        self.may_end = threading.Event()
        super().handshake()  # before the reader thread starts: no frame read yet
        connection = getattr(self.ws, "connection", None)
        proto = getattr(connection, "_proto", None)
        for extension in getattr(proto, "extensions", ()):
            if isinstance(extension, PerMessageDeflate):
                extension.__class__ = _BoundedDeflate
                cast(_BoundedDeflate, extension).owner = self
