"""The default transport: websocket-client over TCP/TLS. The one module of the client
that imports websocket-client, and the one place its exceptions become ours.

Performance tricks kept here (bench/results.md measures them):

* ``skip_utf8_validation=True``: websocket-client's pure-Python UTF-8 check caps
  receive at ~9 MB/s, and the link decodes strictly anyway (orjson checks the UTF-8).
* ``send_text`` writes a prebuilt frame whose payload is masked by ``frames.mask``
  (much faster than websocket-client's big-integer XOR: bench/results.md, "Bar 1");
  the library still picks the key (``os.urandom``) and writes the header.
* ``ping`` never blocks: while a send holds the socket's send lock (a big batch pushed
  into a stalled link blocks in the kernel) or the socket's buffer is full, no ping goes
  out and the keepalive's silence check decides alone.
* ``abort`` is a ``SHUT_RDWR`` of the TCP socket: it wakes a reader blocked in
  ``recv`` and a sender blocked in the kernel (the descriptor stays open until
  ``shutdown``, so no other thread's call lands on a reused one).
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
from typing import Callable

import websocket

from ..errors import TLSError, TransportError, Unreachable
from .failures import not_a_sync_server
from .frames import mask
from .transport import FrameKind, Opening

log = logging.getLogger(__name__)

__all__ = ["WebSocketTransport", "WsSocket", "connect_error", "text_frame"]

_KINDS: dict[int, FrameKind] = {
    websocket.ABNF.OPCODE_TEXT: "text",
    websocket.ABNF.OPCODE_BINARY: "binary",
    websocket.ABNF.OPCODE_CLOSE: "close",
}
#: socket errors as websocket-client raises them (and AttributeError: its ``sock`` is
#: set to None by a concurrent shutdown)
_SOCKET_ERRORS = (OSError, ValueError, AttributeError, websocket.WebSocketException)


class _TextFrame(websocket.ABNF):
    """A final, masked text frame whose payload is masked by ``frames.mask``."""

    def _get_masked(self, mask_key: str | bytes) -> bytes:
        if isinstance(mask_key, str):
            mask_key = mask_key.encode("latin-1")
        data = self.data.encode("utf-8") if isinstance(self.data, str) else self.data
        return mask_key + mask(mask_key, data)


def text_frame(payload: bytes) -> websocket.ABNF:
    """A text frame of the UTF-8 ``payload`` for ``WebSocket.send_frame``."""
    return _TextFrame(fin=1, opcode=websocket.ABNF.OPCODE_TEXT, mask_value=1, data=payload)


def _shutdown(ws: websocket.WebSocket) -> None:
    sock = getattr(ws, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _detail(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class _WsOpening:
    """A websocket-client socket during its handshake (``abort`` shuts it down)."""

    def __init__(self, ws: websocket.WebSocket) -> None:
        self._ws = ws

    def abort(self) -> None:
        _shutdown(self._ws)


class WsSocket:
    """One open websocket-client socket behind the ``transport.Socket`` interface.

    Sends go through websocket-client's send lock (``enable_multithread=True``), so
    any thread may send; ``recv`` is for one reader thread."""

    def __init__(self, ws: websocket.WebSocket) -> None:
        self._ws = ws

    def send_text(self, payload: bytes) -> None:
        try:
            self._ws.send_frame(text_frame(payload))
        except _SOCKET_ERRORS as exc:
            raise TransportError(_detail(exc)) from exc

    def recv(self) -> tuple[FrameKind, bytes]:
        try:
            opcode, data = self._ws.recv_data(control_frame=True)
        except _SOCKET_ERRORS as exc:
            raise TransportError(_detail(exc)) from exc
        return _KINDS.get(opcode, "control"), data

    def ping(self) -> None:
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
        except _SOCKET_ERRORS as exc:
            raise TransportError(_detail(exc)) from exc
        finally:
            ws.lock.release()

    def settimeout(self, timeout: float | None) -> None:
        self._ws.settimeout(timeout)

    def close(self) -> None:
        try:
            self._ws.send_close()
        except Exception as exc:  # noqa: BLE001 - best effort: the peer may be gone
            raise TransportError(_detail(exc)) from exc

    def abort(self) -> None:
        _shutdown(self._ws)

    def shutdown(self) -> None:
        _shutdown(self._ws)
        try:
            self._ws.shutdown()
        except Exception as exc:  # noqa: BLE001 - best effort: the socket may be gone
            log.debug("socket shutdown: %r", exc)


class WebSocketTransport:
    """The default ``Transport``: websocket-client, text frames, no Origin header."""

    def connect(self, url: str, *, headers: list[str], timeout: float,
                on_opening: Callable[[Opening], None] | None = None) -> WsSocket:
        ws = websocket.WebSocket(skip_utf8_validation=True, enable_multithread=True)
        ws.settimeout(timeout)
        if on_opening is not None:
            on_opening(_WsOpening(ws))
        try:
            ws.connect(url, suppress_origin=True, timeout=timeout, header=headers)
        except (OSError, websocket.WebSocketException) as exc:
            ws.shutdown()
            raise connect_error(exc, url) from exc
        return WsSocket(ws)


def connect_error(exc: BaseException, shown: str) -> TransportError:
    """Our error for ``exc``, raised by opening a websocket to ``shown``."""
    if isinstance(exc, websocket.WebSocketBadStatusException):
        return not_a_sync_server(shown, getattr(exc, "status_code", None) or None)
    if isinstance(exc, websocket.WebSocketProxyException):
        return TLSError(f"the proxy refused the connection to {shown}: {exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = getattr(exc, "verify_message", None) or exc.reason or exc
        return TLSError(f"TLS: the certificate of {shown} does not verify ({detail})")
    if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return Unreachable(f"{shown} closed the connection during the TLS handshake")
    if isinstance(exc, ssl.SSLError):
        hint = ("; is it wss:// to a plain ws:// port?"
                if "WRONG_VERSION_NUMBER" in str(exc) else "")
        return TLSError(f"TLS handshake with {shown} failed ({exc.reason or exc}){hint}")
    if isinstance(exc, websocket.WebSocketAddressException):
        return Unreachable(f"cannot resolve the host of {shown}: {exc}")
    if isinstance(exc, ConnectionRefusedError):
        return Unreachable(f"{shown} refused the connection (is the server running?)")
    if isinstance(exc, (socket.timeout, websocket.WebSocketTimeoutException, TimeoutError)):
        return Unreachable(f"no answer from {shown} in time")
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc) or type(exc).__name__
        return Unreachable(f"cannot connect to {shown}: {reason}")
    return Unreachable(f"cannot connect to {shown}: {type(exc).__name__}: {exc}")

