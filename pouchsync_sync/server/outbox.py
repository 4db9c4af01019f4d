"""A socket's frames waiting to be sent, in protocol order, and their one writer.

Frames are put under the session's lock (``put_locked``), right where the sans-IO
protocol accepted them, so the order on the wire is the protocol's order. The socket's
handler thread sends them (``flush``): nobody holds the lock while sending, and a peer
that does not read blocks only that thread. A task that just queued a small frame
first tries to write it itself (``send_now``), without ever waiting: only when the
socket would not take it whole at once is the handler woken. A change pushed to
10,000 sockets then costs no wake-up of 10,000 handler threads (whose rush for the
GIL cost more than the sends). On a socket without extensions (no permessage-deflate)
``send_now`` makes the frame's header itself (``text_frame``: the bytes wsproto would
make, without its three copies of the payload). A frame counts as waiting
(``size``) until its send returned; ``backlogged`` past ``HIGH_WATER`` bytes is the
signal for live pushes to pause, and ``on_drain`` resumes them at ``LOW_WATER``.
"""

from __future__ import annotations

import collections
import logging
import struct
import threading
import time
from typing import Any, Callable

from simple_websocket import ConnectionClosed
from wsproto.connection import ConnectionState
from wsproto.events import TextMessage
from wsproto.utilities import LocalProtocolError  # simple-websocket's, once closing

from .budget import ReplyBudget

__all__ = ["Outbox", "HIGH_WATER", "LOW_WATER", "text_frame"]

log = logging.getLogger(__name__)

#: live pushes pause while more than this many bytes wait to be sent on a socket ...
HIGH_WATER = 1024 * 1024
#: ... and resume once it is down to this
LOW_WATER = 256 * 1024
#: frames up to this size a task may write itself (``send_now``)
DIRECT_MAX = 64 * 1024
_DEBUG_CHARS = 300


def text_frame(payload: bytes) -> bytes:
    """A server's whole text frame (FIN, opcode 1, unmasked) of the UTF-8 ``payload``,
    for a socket that negotiated no extension (RFC 6455 §5.2)."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 65536:
        return struct.pack("!BBH", 0x81, 126, size) + payload
    return struct.pack("!BBQ", 0x81, 127, size) + payload


def _plain_connection(ws: Any) -> Any:
    """wsproto's connection of ``ws`` when its frames can be made by ``text_frame`` (it
    negotiated no extension), else None (wsproto makes them)."""
    connection = getattr(getattr(ws, "ws", None), "connection", None)
    proto = getattr(connection, "_proto", None)
    if proto is None or getattr(proto, "extensions", None) != []:
        return None
    return connection


def short(data: Any) -> str:
    """``data`` for a DEBUG line: at most ``_DEBUG_CHARS`` characters."""
    text = data if isinstance(data, str) else repr(data)
    return text if len(text) <= _DEBUG_CHARS else f"{text[:_DEBUG_CHARS]}… ({len(text)} chars)"


class Outbox:
    """Frames of one socket: ``put_locked`` (under ``lock``, any thread), ``flush`` and
    ``drop`` (the handler thread only). ``budget`` counts each frame's ``held`` bytes
    until it is sent or dropped; ``reply_done()`` is called, under ``lock``, once a
    frame answering a call is sent or dropped."""

    def __init__(self, ws: Any, lock: threading.Lock, closing: threading.Event,
                 budget: ReplyBudget, holder: Any, reply_done: Callable[[], None],
                 name: str) -> None:
        self.ws = ws
        self.lock = lock
        self.closing = closing
        self.budget = budget
        self.holder = holder
        self.reply_done = reply_done
        self.name = name
        self._frames: collections.deque[tuple[str, int, bool]] = collections.deque()
        self.size = 0  # bytes waiting or being sent
        self._drain_waiters: list[Callable[[], None]] = []
        #: when the send in progress began (None: none), for the server's watchdog
        self.send_started: float | None = None
        #: held by whoever writes frames now (the handler, or a task in send_now)
        self._writer = threading.Lock()
        #: the unwritten end of a frame ``send_now`` began: written first by ``flush``
        self._rest: tuple[bytes, str, int, bool] | None = None
        self._broken = False
        #: wsproto's connection, when ``send_now`` may frame without it
        self._plain = _plain_connection(ws)

    def put_locked(self, text: str, held: int = 0, reply: bool = False, *,
                   wake: bool = True) -> bool:
        """Queue a frame (under the lock, in protocol order); False once closing.
        ``wake=False``: the caller tries ``send_now`` next (which wakes the handler
        if it cannot send everything)."""
        if self.closing.is_set():
            return False
        self._frames.append((text, held, reply))
        self.size += len(text)
        if wake:
            self.ws.event.set()  # wake the handler thread
        return True

    def send_now(self) -> None:
        """Write the queued frames from this thread if the socket takes them at once;
        else (or if another thread writes now) leave them to the handler, woken here."""
        sock = getattr(self.ws, "sock", None)
        if sock is None or not hasattr(sock, "send_now") \
                or not self._writer.acquire(blocking=False):
            self.ws.event.set()
            return
        try:
            while self._rest is None and not self.closing.is_set() and self.ws.connected:
                with self.lock:
                    if not self._frames or len(self._frames[0][0]) > DIRECT_MAX:
                        break
                    text, held, reply = self._frames.popleft()
                data = self._frame(text)
                written = sock.send_now(data)
                if written < len(data):
                    self._rest = (data[written:], text, held, reply)
                    break
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("%s -> %s", self.name, short(text))
                self._sent(text, held, reply)
        except (LocalProtocolError, OSError) as exc:
            log.debug("connection %s: send failed: %s", self.name, exc)
            self.closing.set()
        finally:
            self._writer.release()
        with self.lock:
            more = bool(self._frames) or self._rest is not None
        if more or self.closing.is_set():
            self.ws.event.set()

    def _frame(self, text: str) -> bytes:
        """The bytes of ``text`` as one frame; ``LocalProtocolError`` once the socket is
        closing (as wsproto raises)."""
        plain = self._plain
        if plain is None:
            return self.ws.ws.send(TextMessage(data=text))
        if plain.state is not ConnectionState.OPEN:
            raise LocalProtocolError(f"a text frame cannot be sent in state {plain.state}")
        return text_frame(text.encode())

    def backlogged(self) -> bool:
        """More than ``HIGH_WATER`` bytes wait or are being sent (the peer reads slowly)."""
        return self.size > HIGH_WATER

    def on_drain(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` once the frames are down to ``LOW_WATER`` bytes (now if they are)."""
        with self.lock:
            if self.size > LOW_WATER and not self.closing.is_set():
                self._drain_waiters.append(fn)
                return
        fn()

    def flush(self) -> None:
        """Send every frame queued (handler thread only)."""
        while True:
            with self._writer:
                rest, self._rest = self._rest, None
                if rest is not None:  # the end of a frame a task began: first
                    data, text, held, reply = rest
                    try:
                        self._write(self.ws.sock.sendall, data)
                    finally:
                        self._sent(text, held, reply)
                    continue
                with self.lock:
                    if not self._frames:
                        return
                    text, held, reply = self._frames.popleft()
                try:
                    if log.isEnabledFor(logging.DEBUG):
                        log.debug("%s -> %s", self.name, short(text))
                    self._write(self.ws.send, text)
                finally:
                    self._sent(text, held, reply)

    def _sent(self, text: str, held: int, reply: bool) -> None:
        """A frame is out (or given up): its bytes, its call, the paused pushes."""
        if held:
            self.budget.release(self.holder, held)
        with self.lock:
            self.size -= len(text)
            if reply:
                self.reply_done()
            waiters: list[Callable[[], None]] = []
            if self._drain_waiters and self.size <= LOW_WATER:
                waiters, self._drain_waiters = self._drain_waiters, []
        for fn in waiters:
            fn()

    def _write(self, write: Callable[[Any], Any], data: Any) -> None:
        """A blocking write (handler thread), watched by the server's watchdog."""
        if self.closing.is_set():
            return
        self.send_started = time.monotonic()
        try:
            write(data)
        except (ConnectionClosed, LocalProtocolError, OSError) as exc:
            log.debug("connection %s: send failed: %s", self.name, exc)
            self.closing.set()
        finally:
            self.send_started = None

    def send_close(self, code: int, reason: str) -> None:
        """The close frame, last of all (handler thread; the watchdog ends a stuck one).
        Not after a frame left half written (``drop``): the peer could not read it."""
        with self._writer:
            if self._broken:
                return
            self.send_started = time.monotonic()
            try:
                self.ws.close(code, reason)
            except (ConnectionClosed, LocalProtocolError, OSError):
                pass
            finally:
                self.send_started = None

    def drop(self) -> None:
        """Forget every frame not sent (the socket is closing)."""
        with self._writer:
            rest, self._rest = self._rest, None
        if rest is not None:
            self._broken = True  # a frame is half on the wire: no close frame after it
            self._sent(*rest[1:])
        with self.lock:
            dropped, self._frames = list(self._frames), collections.deque()
            self.size -= sum(len(text) for text, _, _ in dropped)
            self._drain_waiters = []
            for _, _, reply in dropped:
                if reply:
                    self.reply_done()
        for _, held, _ in dropped:
            if held:
                self.budget.release(self.holder, held)
