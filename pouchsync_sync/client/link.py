"""One open, negotiated websocket to a sync server: the client's side of protocol v1.

Theory of operation (wire protocol v1, docs/protocol.md):

* ``Link.open(url)`` connects through the client's ``Transport`` (``client/transport.py``;
  websocket-client by default), sends ``hello`` and reads ``welcome`` within the connect
  timeout, then starts the reader thread ``pouchsync-client-reader``.
* Like the server's session, the link drives the sans-IO ``protocol.Connection`` in the
  client role: every frame sent goes through its ``send`` and every frame received
  through its ``receive``, under the link's ``lock`` (which also guards the state of
  every ``Channel`` of the link). A message this side may not send is a bug
  (``ProtocolError``); a server that breaks the rules gets its message logged and
  dropped (``BadMessage``).
* The reader thread is always in ``recv`` (so server pings are answered), records the
  time of the last frame received (the owner's keepalive pings on it), decodes each
  message outside the lock and routes it to the ``Channel`` in its channel record's
  ``context`` slot; a connection ``error`` goes to the log.
* Any thread may send: the state moves under the lock, and the frames go out in the
  order of those moves (``_FrameOrder``) without holding the lock while a big frame
  is written, so the reader never waits behind a send.
* When the socket is lost every waiter fails at once with ``TransportError`` (retryable);
  a locally closed channel fails its waiters with ``Cancelled``.

Thread safety: every public method may be called from any thread.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, Callable

from ..errors import PayloadTooLarge, PouchSyncError, Timeout, TransportError, error_from_json
from ..protocol import messages as wire
from ..protocol.connection import ChannelRecord, Connection, Role
from .channel import Channel
from .handshake import decode, handshake
from .transport import Opening, Socket, Transport, basic_auth, safe_url

log = logging.getLogger(__name__)

__all__ = ["Link", "Frame"]


def _short(data: Any, limit: int = 300) -> str:
    text = data if isinstance(data, str) else repr(data)
    return text if len(text) <= limit else text[:limit] + f"...({len(text)} chars)"


class Frame:
    """A frame whose state move is recorded, to be written in its turn (``Link.write``)."""

    __slots__ = ("turn", "payload", "kind")

    def __init__(self, turn: int, payload: bytes, kind: str) -> None:
        self.turn = turn
        self.payload = payload
        self.kind = kind


class _FrameOrder:
    """Frames are written in the order their state moves were recorded (turns handed out
    under the link's lock, written outside it, one at a time)."""

    def __init__(self, lost: threading.Event) -> None:
        self._cond = threading.Condition()
        self._issued = 0
        self._next = 0
        self._lost = lost

    def turn_locked(self) -> int:
        turn, self._issued = self._issued, self._issued + 1
        return turn

    def wait(self, turn: int) -> bool:
        """Block until ``turn`` may write; False once the link is lost."""
        with self._cond:
            while self._next != turn:
                if self._lost.is_set():
                    return False
                self._cond.wait(0.5)
            return True

    def done(self, turn: int) -> None:
        with self._cond:
            self._next = turn + 1
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


class Link:
    """An open, negotiated websocket. Create with ``Link.open``.

    Owns the reader thread; ``close()`` stops and joins it. ``lost`` is set once the
    socket is gone (closed locally or by the peer); ``lost_error`` says why.
    """

    def __init__(self, sock: Socket, url: str, proto: Connection, *,
                 clock: Callable[[], float] = time.monotonic,
                 call_timeout: float = 60.0) -> None:
        self._sock = sock
        self.url = url
        self._shown = safe_url(url)
        self.version = proto.version or 1
        self.limits: dict[str, Any] = dict(proto.limits)
        self.max_message_size: int | None = (
            int(self.limits["max_message_size"])
            if isinstance(self.limits.get("max_message_size"), int) else None)
        self.call_timeout = call_timeout
        self._clock = clock
        self.last_received = clock()
        self.lost = threading.Event()
        self.lost_error: TransportError | None = None
        #: guards the protocol machine and the state of every channel of this link
        self.lock = threading.Lock()
        self._proto = proto
        self._order = _FrameOrder(self.lost)
        self._numbers = itertools.count(1)
        self._closing = False
        self._reader = threading.Thread(target=self._read_loop, name="pouchsync-client-reader",
                                        daemon=True)

    # -- opening --------------------------------------------------------------------
    @classmethod
    def open(cls, url: str, *, timeout: float = 10.0,
             clock: Callable[[], float] = time.monotonic,
             call_timeout: float = 60.0, transport: Transport | None = None,
             on_opening: Callable[[Opening], None] | None = None) -> Link:
        """Connect, say hello, read the welcome; raise a ``TransportError``: which one,
        and whether it is retryable, is decided in ``failures``.

        ``transport``: the socket factory (default: websocket-client). ``on_opening``
        gets the attempt before it connects, so another thread can abort a handshake
        that hangs.
        """
        if transport is None:
            from .wsclient import WebSocketTransport

            transport = WebSocketTransport()
        shown = safe_url(url)
        sock = transport.connect(shown, headers=basic_auth(url), timeout=timeout,
                                 on_opening=on_opening)
        proto = Connection(Role.CLIENT)
        try:
            handshake(sock, proto, shown)
            sock.settimeout(None)  # the keepalive detects a dead server, not socket timeouts
        except PouchSyncError:
            sock.shutdown()
            raise
        link = cls(sock, url, proto, clock=clock, call_timeout=call_timeout)
        link.start()
        log.info("connected to %s (protocol v%s)", shown, link.version)
        return link

    def start(self) -> None:
        """Start the reader thread (``open`` does, once the welcome is read)."""
        self._reader.start()

    # -- channels -------------------------------------------------------------------
    def open_channel(self, db: str, credentials: Any = None) -> Channel:
        """Ask for ``db``; returns the channel at once (``wait_open`` for the grant)."""
        with self.lock:
            ch = next(self._numbers)
            msg = wire.open_channel(ch, db, credentials)
            frame = self.send_locked(msg, wire.encode_bytes(msg))
            channel = Channel(self, ch, db)
            record = self._proto.channel(ch)
            assert record is not None  # "open" made it
            record.context = channel
        self.write(frame)
        return channel

    def record_locked(self, ch: int) -> ChannelRecord | None:
        """The protocol's record of channel ``ch`` (``None`` when there is none)."""
        return self._proto.channel(ch)

    # -- sending ----------------------------------------------------------------------
    def check_size(self, payload: bytes) -> None:
        if self.max_message_size is not None and len(payload) > self.max_message_size:
            raise PayloadTooLarge(f"message of {len(payload)} bytes exceeds the server's "
                                  f"max_message_size {self.max_message_size}")

    def send_locked(self, msg: Mapping[str, Any], payload: bytes) -> Frame:
        """Record that this side sends ``msg`` (under ``lock``); write the frame with
        ``write`` once the lock is released. ``TransportError`` when the link is lost,
        ``ProtocolError`` when the protocol does not allow ``msg`` now (a bug)."""
        if self.lost.is_set():
            raise TransportError(f"connection lost: {self.lost_error}")
        self._proto.send(msg, payload)
        return Frame(self._order.turn_locked(), payload, str(msg["type"]))

    def write(self, frame: Frame) -> None:
        """Write ``frame`` in its turn; ``TransportError`` when the socket is gone."""
        if not self._order.wait(frame.turn):
            raise TransportError(f"connection lost: {self.lost_error}")
        try:
            if log.isEnabledFor(logging.DEBUG) and frame.kind != "open":
                log.debug("send %s", _short(frame.payload.decode("utf-8", "replace")))
            self._sock.send_text(frame.payload)
        except TransportError as exc:
            error = TransportError(f"send to {self._shown} failed: {exc}")
            self._abort(error)
            raise error from exc
        finally:
            self._order.done(frame.turn)

    def write_quietly(self, frame: Frame | None) -> None:
        """``write`` for frames nobody waits on (unsubscribe, close)."""
        if frame is None:
            return
        try:
            self.write(frame)
        except PouchSyncError as exc:
            log.debug("could not send %s: %s", frame.kind, exc)

    def send(self, msg: Mapping[str, Any]) -> None:
        """Send one message; ``TransportError`` when the socket is gone."""
        payload = wire.encode_bytes(msg)
        self.check_size(payload)
        with self.lock:
            frame = self.send_locked(msg, payload)
        self.write(frame)

    # -- keepalive ----------------------------------------------------------------------
    def ping(self) -> None:
        """Send a websocket ping (the keepalive) if the socket takes it now without
        blocking; the pong counts as traffic."""
        try:
            self._sock.ping()
        except TransportError as exc:
            self._abort(TransportError(f"ping to {self._shown} failed: {exc}"))

    def keep_alive(self, stop: threading.Event, ping_interval: float,
                   dead_timeout: float) -> None:
        """Ping every ``ping_interval``; drop the connection after ``dead_timeout`` of
        silence. Returns once the connection is lost or ``stop`` is set (the owner's
        connection thread runs this)."""
        interval = min(ping_interval, dead_timeout)
        while not self.lost.wait(interval):
            if stop.is_set():
                return
            idle = self.idle_for()
            if idle >= dead_timeout:
                self.abort(Timeout(f"no traffic from {self._shown} for "
                                   f"{idle:.1f}s (dead_timeout {dead_timeout}s)"))
                return
            self.ping()

    def idle_for(self) -> float:
        """Seconds since the last frame (of any kind) arrived from the server."""
        return self._clock() - self.last_received

    # -- reading ------------------------------------------------------------------------
    def _read_loop(self) -> None:
        sock = self._sock
        error: TransportError
        try:
            while True:
                kind, data = sock.recv()
                self.last_received = self._clock()
                if kind == "text":
                    self._dispatch(data)
                elif kind == "close":
                    error = TransportError(f"{self._shown} closed the connection")
                    break
                elif kind == "binary":
                    log.warning("ignoring a binary frame (not used by protocol v1)")
        except TransportError as exc:
            error = TransportError(f"connection to {self._shown} lost: {exc}")
        except Exception as exc:  # noqa: BLE001 - top frame of a thread
            log.exception("client reader crashed")
            error = TransportError(f"client reader crashed: {exc!r}")
        self._abort(error)

    def _dispatch(self, data: bytes) -> None:
        try:
            msg = decode(data)
        except wire.BadMessage as exc:
            log.warning("ignoring a bad message from the server (%s): %s", exc, _short(data))
            return
        if log.isEnabledFor(logging.DEBUG):
            log.debug("recv %s", _short(data))
        kind, ch = msg["type"], msg.get("ch")
        after: Callable[[], None] | None = None
        with self.lock:
            record = self._proto.channel(ch) if ch is not None else None
            channel = record.context if record is not None else None
            try:
                self._proto.receive(data, decoded=msg)
            except wire.BadMessage as exc:
                bad: wire.BadMessage | None = exc
            else:
                bad = None
                if isinstance(channel, Channel):
                    after = channel.received_locked(msg)
        if bad is not None:
            log.warning("ignoring a message from the server that breaks the protocol (%s): "
                        "%s", bad, _short(data))
        elif kind == "error" and ch is None:
            log.warning("server error%s: %s", " (fatal)" if msg.get("fatal") else "",
                        error_from_json(msg))
        elif channel is None:
            log.debug("message for unknown channel %r: %s", ch, kind)
        elif after is not None:
            after()

    # -- closing --------------------------------------------------------------------------
    def _abort(self, error: TransportError) -> None:
        """Mark the connection lost (first error wins) and fail every waiter."""
        with self.lock:
            if self.lost.is_set():
                return
            self.lost_error = error
            self.lost.set()
            channels = [r.context for r in self._proto.channels()
                        if isinstance(r.context, Channel)]
            self._proto.mark_closed()
        self._order.wake()
        if not self._closing:
            log.warning("%s", error)
        for channel in channels:
            channel.lost(error)
        self._sock.abort()  # wakes the reader and any blocked send

    def abort(self, error: TransportError) -> None:
        """Drop the connection now (dead server): waiters fail with ``error``."""
        self._abort(error)

    def close(self, timeout: float = 1.0) -> None:
        """Send a close frame, drop the socket, join the reader. Idempotent."""
        self._closing = True
        current = threading.current_thread() is self._reader
        if not self.lost.is_set():
            try:
                self._sock.close()
            except TransportError as exc:  # the peer may be gone already
                log.debug("close frame not sent: %s", exc)
            else:
                if not current:  # a healthy server echoes the close at once
                    self._reader.join(timeout)
        self._abort(TransportError("connection closed by the client"))
        if self._reader.is_alive() and not current:
            self._reader.join(timeout)
        self._sock.shutdown()
