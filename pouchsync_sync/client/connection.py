"""One open websocket to a sync server: hello/welcome, channels, pipelined calls.

Theory of operation (wire protocol v1, docs/protocol.md):

* ``Connection.open(url)`` connects with websocket-client (text frames,
  ``skip_utf8_validation=True``: its pure-Python UTF-8 check caps receive at ~9 MB/s and
  ``recv`` decodes strictly anyway), sends ``hello`` and reads ``welcome`` within the
  connect timeout, then starts the reader thread ``pouchsync-client-reader``.
* The reader thread is always in ``recv`` (so server pings are answered), records the
  time of the last frame received (the owner's keepalive pings on it) and routes each
  message: ``reply`` to the waiting call by ``(ch, id)``, ``granted``/``denied`` to the
  channel being opened, ``closed`` to the channel, connection ``error`` to the log.
* Sends go through websocket-client's send lock (``enable_multithread=True``), so any
  thread may call. Replies may come back in any order.
* When the socket is lost every waiter fails at once with ``TransportError`` (retryable);
  a locally closed channel fails its waiters with ``Cancelled``.

Thread safety: every public method may be called from any thread.
"""

from __future__ import annotations

import base64
import itertools
import logging
import select
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any, Callable
from urllib.parse import unquote, urlsplit, urlunsplit

import websocket

from .. import gcpause
from ..errors import (
    PayloadTooLarge,
    PouchSyncError,
    ProtocolError,
    Timeout,
    TransportError,
    UnsupportedProtocol,
    error_from_json,
)
from ..protocol import messages as wire
from .channel import Channel
from .failures import connect_error, not_a_sync_server
from .frames import text_frame

log = logging.getLogger(__name__)

__all__ = ["Connection", "Channel", "abort_opening", "safe_url"]



def _agent() -> str:
    from .._version import __version__

    return f"pouchsync_sync/{__version__}"


def _decode(data: bytes | str) -> dict[str, Any]:
    """A server message from a text frame's payload (strict UTF-8, then the schema)."""
    with gcpause.paused_for(data):  # a batch of docs: thousands of objects that stay alive
        return wire.decode_payload(data, sender="server")


def safe_url(url: str) -> str:
    """``url`` without user and password: the form that may be logged or shown."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _basic_auth(url: str) -> list[str]:
    """``user:password@`` in the URL as an HTTP Basic header (for a proxy in front of
    the server; the server's ``on_request`` gets the ``credentials`` of each ``open``)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return []
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    return ["Authorization: Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")]


def _check_welcome(welcome: Mapping[str, Any], shown: str) -> None:
    """Raise unless ``welcome`` is a welcome in a protocol version we speak."""
    kind = welcome.get("type")
    if kind == "error" and welcome.get("error") == "unsupported_version":
        raise UnsupportedProtocol(f"{shown} speaks none of our protocol versions "
                                  f"{list(wire.PROTOCOL_VERSIONS)}: {welcome.get('reason')}; "
                                  f"upgrade the older side")
    if kind == "error":
        raise ProtocolError(f"{shown} refused the connection: {error_from_json(welcome)}")
    if kind != "welcome":
        raise not_a_sync_server(shown, None, f"a WebSocket server that answered hello "
                                f"with a {str(kind)[:40]!r} message")
    if welcome.get("version") not in wire.PROTOCOL_VERSIONS:
        raise UnsupportedProtocol(f"{shown} chose protocol version "
                                  f"{str(welcome.get('version'))[:20]}, not one of ours "
                                  f"{list(wire.PROTOCOL_VERSIONS)}; upgrade the older side")


def _short(data: Any, limit: int = 300) -> str:
    text = data if isinstance(data, str) else repr(data)
    return text if len(text) <= limit else text[:limit] + f"...({len(text)} chars)"


class Connection:
    """An open, negotiated websocket. Create with ``Connection.open``.

    Owns the reader thread; ``close()`` stops and joins it. ``lost`` is set once the
    socket is gone (closed locally or by the peer); ``lost_error`` says why.
    """

    def __init__(self, ws: websocket.WebSocket, url: str, welcome: Mapping[str, Any], *,
                 clock: Callable[[], float] = time.monotonic,
                 call_timeout: float = 60.0) -> None:
        self._ws = ws
        self.url = url
        self.version = int(welcome.get("version", 1))
        limits = welcome.get("limits") or {}
        self.limits: dict[str, Any] = dict(limits) if isinstance(limits, Mapping) else {}
        self.max_message_size: int | None = (
            int(self.limits["max_message_size"])
            if isinstance(self.limits.get("max_message_size"), int) else None)
        self.call_timeout = call_timeout
        self._clock = clock
        self.last_received = clock()
        self.lost = threading.Event()
        self.lost_error: TransportError | None = None
        self._channels: dict[int, Channel] = {}
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._closing = False
        self._reader = threading.Thread(target=self._read_loop, name="pouchsync-client-reader",
                                        daemon=True)

    # -- opening --------------------------------------------------------------------
    @classmethod
    def open(cls, url: str, *, timeout: float = 10.0,
             clock: Callable[[], float] = time.monotonic,
             call_timeout: float = 60.0,
             on_socket: Callable[[websocket.WebSocket], None] | None = None) -> Connection:
        """Connect, say hello, read the welcome; raise a ``TransportError``: which one,
        and whether it is retryable, is decided in ``failures``.

        ``on_socket`` gets the websocket before it connects, so another thread can abort
        a handshake that hangs (``ws.sock.shutdown``).
        """
        shown = safe_url(url)
        ws = websocket.WebSocket(skip_utf8_validation=True, enable_multithread=True)
        ws.settimeout(timeout)
        if on_socket is not None:
            on_socket(ws)
        try:
            ws.connect(shown, suppress_origin=True, timeout=timeout,
                       header=_basic_auth(url))
        except (OSError, websocket.WebSocketException) as exc:
            ws.shutdown()
            raise connect_error(exc, shown) from exc
        try:
            ws.send(wire.encode(wire.hello(_agent())))
            while True:
                opcode, data = ws.recv_data(control_frame=True)
                if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                    break
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    raise TransportError(f"{shown} closed the connection before its welcome")
            try:
                welcome = _decode(data)
            except wire.BadMessage as exc:
                raise not_a_sync_server(
                    shown, None, "a WebSocket server that answered hello with a message "
                    f"not in the protocol ({exc})") from exc
            _check_welcome(welcome, shown)
            ws.settimeout(None)  # the keepalive detects a dead server, not socket timeouts
        except PouchSyncError:
            ws.shutdown()
            raise
        except (OSError, ValueError, websocket.WebSocketException) as exc:
            ws.shutdown()
            raise TransportError(f"hello to {shown} failed: {exc}") from exc
        conn = cls(ws, url, welcome, clock=clock, call_timeout=call_timeout)
        conn._reader.start()
        log.info("connected to %s (protocol v%s)", shown, conn.version)
        return conn

    # -- channels -------------------------------------------------------------------
    def open_channel(self, db: str, credentials: Any = None) -> Channel:
        """Ask for ``db``; returns the channel at once (``wait_open`` for the grant)."""
        with self._lock:
            if self.lost.is_set():
                raise TransportError(f"connection lost: {self.lost_error}")
            ch = next(self._numbers)
            channel = Channel(self, ch, db)
            self._channels[ch] = channel
        self.send(wire.open_channel(ch, db, credentials))
        return channel

    def _forget(self, channel: Channel) -> None:
        with self._lock:
            if self._channels.get(channel.ch) is channel:
                del self._channels[channel.ch]

    # -- sending ----------------------------------------------------------------------
    def send(self, msg: Mapping[str, Any]) -> None:
        """Send one message; ``TransportError`` when the socket is gone."""
        payload = wire.encode_bytes(msg)
        if self.max_message_size is not None and len(payload) > self.max_message_size:
            raise PayloadTooLarge(f"message of {len(payload)} bytes exceeds the server's "
                                  f"max_message_size {self.max_message_size}")
        if self.lost.is_set():
            raise TransportError(f"connection lost: {self.lost_error}")
        if log.isEnabledFor(logging.DEBUG) and msg.get("type") != "open":
            log.debug("send %s", _short(payload.decode("utf-8", "replace")))
        try:
            self._ws.send_frame(text_frame(payload))
        except (OSError, websocket.WebSocketException, AttributeError) as exc:
            error = TransportError(f"send to {safe_url(self.url)} failed: {exc}")
            self._abort(error)
            raise error from exc

    def _send_quietly(self, msg: Mapping[str, Any]) -> None:
        try:
            self.send(msg)
        except PouchSyncError as exc:
            log.debug("could not send %s: %s", msg.get("type"), exc)

    def ping(self) -> None:
        """Send a websocket ping (the keepalive) if the link takes it now; the pong counts
        as traffic.

        Never blocks the keepalive: while a send is under way (a big batch pushed into a
        stalled link blocks in the kernel holding the socket's send lock) or the
        socket's buffer is full, no ping goes out and the keepalive's silence check
        decides alone.
        """
        ws = self._ws
        if not ws.lock.acquire(blocking=False):
            return  # a send is under way: a ping would only wait behind it
        try:
            sock = ws.sock
            if sock is None:
                return
            _readable, writable, _errors = select.select((), (sock,), (), 0)
            if not writable:
                return
            data = websocket.ABNF.create_frame(b"", websocket.ABNF.OPCODE_PING).format()
            while data:  # a few bytes into a socket with room: one send
                data = data[sock.send(data):]
        except (OSError, ValueError, websocket.WebSocketException) as exc:
            self._abort(TransportError(f"ping to {safe_url(self.url)} failed: {exc}"))
        finally:
            ws.lock.release()

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
                self.abort(Timeout(f"no traffic from {safe_url(self.url)} for "
                                   f"{idle:.1f}s (dead_timeout {dead_timeout}s)"))
                return
            self.ping()

    def idle_for(self) -> float:
        """Seconds since the last frame (of any kind) arrived from the server."""
        return self._clock() - self.last_received

    # -- reading ------------------------------------------------------------------------
    def _read_loop(self) -> None:
        ws = self._ws
        error: TransportError
        try:
            while True:
                opcode, data = ws.recv_data(control_frame=True)
                self.last_received = self._clock()
                if opcode == websocket.ABNF.OPCODE_TEXT:
                    self._dispatch(data)
                elif opcode == websocket.ABNF.OPCODE_CLOSE:
                    error = TransportError(f"{safe_url(self.url)} closed the connection")
                    break
                elif opcode == websocket.ABNF.OPCODE_BINARY:
                    log.warning("ignoring a binary frame (not used by protocol v1)")
        except (OSError, websocket.WebSocketException, AttributeError, ValueError) as exc:
            error = TransportError(f"connection to {safe_url(self.url)} lost: "
                                   f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # noqa: BLE001 - top frame of a thread
            log.exception("client reader crashed")
            error = TransportError(f"client reader crashed: {exc!r}")
        self._abort(error)

    def _dispatch(self, data: bytes | str) -> None:
        try:
            msg = _decode(data)
        except wire.BadMessage as exc:
            log.warning("ignoring a bad message from the server (%s): %s", exc, _short(data))
            return
        kind = msg["type"]
        if log.isEnabledFor(logging.DEBUG):
            log.debug("recv %s", _short(data))
        if kind == "error" and msg.get("ch") is None:
            log.warning("server error%s: %s", " (fatal)" if msg.get("fatal") else "",
                        error_from_json(msg))
            return
        with self._lock:
            channel = self._channels.get(msg.get("ch"))  # type: ignore[arg-type]
        if channel is None:
            log.debug("message for unknown channel %r: %s", msg.get("ch"), kind)
            return
        if kind == "reply":
            channel._reply(msg)
        elif kind == "granted":
            channel._granted(msg)
        elif kind == "denied":
            channel._denied(msg)
        elif kind == "changes":
            channel._changes(msg)
        elif kind == "closed":
            self._forget(channel)
            channel._lost(TransportError("channel closed by the server"))
        elif kind == "error":
            if msg.get("id") is not None:  # about one call: fail that call
                channel._reply({"id": msg["id"], "error": msg})
            else:
                log.warning("server error on channel %s: %s", channel.ch, error_from_json(msg))
        else:
            log.debug("ignoring %r message on channel %s", kind, channel.ch)

    # -- closing --------------------------------------------------------------------------
    def _abort(self, error: TransportError) -> None:
        """Mark the connection lost (first error wins) and fail every waiter."""
        with self._lock:
            if self.lost.is_set():
                return
            self.lost_error = error
            self.lost.set()
            channels = list(self._channels.values())
            self._channels.clear()
        if not self._closing:
            log.warning("%s", error)
        for channel in channels:
            channel._lost(error)
        sock = self._ws.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the reader and any blocked send
            except OSError:
                pass

    def abort(self, error: TransportError) -> None:
        """Drop the connection now (dead server): waiters fail with ``error``."""
        self._abort(error)

    def close(self, timeout: float = 1.0) -> None:
        """Send a close frame, drop the socket, join the reader. Idempotent."""
        self._closing = True
        current = threading.current_thread() is self._reader
        if not self.lost.is_set():
            try:
                self._ws.send_close()
            except Exception as exc:  # noqa: BLE001 - the peer may be gone already
                log.debug("close frame not sent: %r", exc)
            else:
                if not current:  # a healthy server echoes the close at once
                    self._reader.join(timeout)
        self._abort(TransportError("connection closed by the client"))
        if self._reader.is_alive() and not current:
            self._reader.join(timeout)
        try:
            self._ws.shutdown()
        except Exception as exc:  # noqa: BLE001 - best effort: the socket may be gone
            log.debug("socket shutdown: %r", exc)


def abort_opening(ws: Any) -> None:
    """Wake a connection attempt blocked in the handshake (best effort)."""
    sock = getattr(ws, "sock", None) if ws is not None else None
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
