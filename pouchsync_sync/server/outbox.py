"""A socket's frames waiting to be sent, in protocol order, and their one writer.

Frames are put under the session's lock (``put_locked``), right where the sans-IO
protocol accepted them, so the order on the wire is the protocol's order. Only the
socket's handler thread sends them (``flush``): nobody holds the lock while sending,
and a peer that does not read blocks only that thread. A frame counts as waiting
(``size``) until its send returned; ``backlogged`` past ``HIGH_WATER`` bytes is the
signal for live pushes to pause, and ``on_drain`` resumes them at ``LOW_WATER``.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable

from simple_websocket import ConnectionClosed
from wsproto.utilities import LocalProtocolError  # simple-websocket's, once closing

from .budget import ReplyBudget

__all__ = ["Outbox", "HIGH_WATER", "LOW_WATER"]

log = logging.getLogger(__name__)

#: live pushes pause while more than this many bytes wait to be sent on a socket ...
HIGH_WATER = 1024 * 1024
#: ... and resume once it is down to this
LOW_WATER = 256 * 1024
_DEBUG_CHARS = 300


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

    def put_locked(self, text: str, held: int = 0, reply: bool = False) -> bool:
        """Queue a frame (under the lock, in protocol order); False once closing."""
        if self.closing.is_set():
            return False
        self._frames.append((text, held, reply))
        self.size += len(text)
        self.ws.event.set()  # wake the handler thread
        return True

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
            with self.lock:
                if not self._frames:
                    return
                text, held, reply = self._frames.popleft()
            try:
                self._send(text)
            finally:
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

    def _send(self, text: str) -> None:
        if self.closing.is_set():
            return
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s -> %s", self.name, short(text))
        self.send_started = time.monotonic()
        try:
            self.ws.send(text)
        except (ConnectionClosed, LocalProtocolError, OSError) as exc:
            log.debug("connection %s: send failed: %s", self.name, exc)
            self.closing.set()
        finally:
            self.send_started = None

    def send_close(self, code: int, reason: str) -> None:
        """The close frame, last of all (handler thread; the watchdog ends a stuck one)."""
        self.send_started = time.monotonic()
        try:
            self.ws.close(code, reason)
        except (ConnectionClosed, LocalProtocolError, OSError):
            pass
        finally:
            self.send_started = None

    def drop(self) -> None:
        """Forget every frame not sent (the socket is closing)."""
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
