"""The transport seam: what the client needs from a websocket, and nothing more.

A ``Client`` takes a ``Transport`` (``Client(transport=...)``; the default is
``client.wsclient.WebSocketTransport``, websocket-client over TCP/TLS) and opens every
``Link`` through its ``connect``. Tests pass an in-memory one (``tests/memtransport.py``)
to play a scripted or misbehaving server without sockets. The contract:

* ``connect(url, headers=..., timeout=..., on_opening=...)`` opens one websocket (the
  HTTP upgrade) and returns a ``Socket``; failures raise a ``TransportError`` subclass
  (``Unreachable``, ``NotASyncServer``, ``TLSError``: see ``client/failures.py``).
  ``on_opening`` gets an ``Opening`` before the handshake starts, so another thread
  can ``abort()`` one that hangs. ``headers`` are ``"Name: value"`` lines.
* A ``Socket`` carries whole text frames: ``send_text(payload)`` (UTF-8 bytes; any
  thread, one frame at a time), ``recv()`` (one thread: the link's reader) returns
  ``(kind, data)`` with kind ``"text"``, ``"binary"``, ``"control"`` (a ping or a pong:
  traffic, nothing to do) or ``"close"``; ``ping()`` sends a keepalive ping if that
  cannot block (else nothing); ``settimeout`` bounds ``recv`` (``None``: no bound);
  ``close()`` sends a close frame; ``abort()`` wakes a blocked ``recv`` or
  ``send_text`` (both then fail); ``shutdown()`` aborts and releases the socket (once
  its reader is done). Every failure of a socket raises ``TransportError`` (``close``
  too: the peer may be gone); ``abort`` and ``shutdown`` never raise.

The URL helpers live here too: ``safe_url`` (the form that may be logged) and
``basic_auth`` (credentials in the URL as a header).
"""

from __future__ import annotations

import base64
from typing import Callable, Literal, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = ["FrameKind", "Opening", "Socket", "Transport", "basic_auth", "safe_url"]

FrameKind = Literal["text", "binary", "control", "close"]


class Opening(Protocol):
    """A connection attempt in progress."""

    def abort(self) -> None:
        """Wake the attempt (it then fails); best effort, any thread, never raises."""


class Socket(Protocol):
    """One open websocket. ``send_text``/``ping``/``close``/``shutdown`` are safe from
    any thread; ``recv`` is called by one thread."""

    def send_text(self, payload: bytes) -> None: ...

    def recv(self) -> tuple[FrameKind, bytes]: ...

    def ping(self) -> None: ...

    def settimeout(self, timeout: float | None) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...

    def shutdown(self) -> None: ...


class Transport(Protocol):
    """Makes sockets: the one factory a ``Client`` opens its links with."""

    def connect(self, url: str, *, headers: list[str], timeout: float,
                on_opening: Callable[[Opening], None] | None = None) -> Socket: ...


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


def basic_auth(url: str) -> list[str]:
    """``user:password@`` in the URL as an HTTP Basic header (for a proxy in front of
    the server; the server's ``on_request`` gets the ``credentials`` of each ``open``)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return []
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    return ["Authorization: Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")]
