"""One raw protocol-v1 WebSocket peer for every test that drives the server frame by
frame (no library client): ``RawPeer``.

It stands on wsproto (sans-IO, the package simple-websocket stands on) over a plain
socket, so one code path serves every need: JSON messages, raw text or binary frames
(invalid UTF-8 too), frames built now and written later, pings, a tiny receive buffer,
the socket itself to drop or reset, and permessage-deflate (``deflate=True``), which
websocket-client cannot speak.

What ``recv`` returns is the one rule every test reads a result by:

- a message, as a dict (text frames only: binary frames, pongs are skipped; a ping is
  answered with a pong, as websocket-client did);
- ``("close", code)`` when the server sent a close frame (``code`` None when the frame
  had no code); the close is answered, and ``close_code``/``close_reason`` keep it;
- ``("gone", None)`` when the socket died without a close frame (or the server sent
  bytes that are not WebSocket).

The close outcome is sticky: every later ``recv`` returns it again. A read that times
out raises ``TimeoutError``. Two ways to wait on top of it: ``until(predicate)`` reads
up to the first match and hands back what came before it (consumed), while
``expect(**fields)`` keeps what it skips in ``pending``, so replies and pushes can be
awaited in any order; both read ``pending`` first. Sends and the pongs are under one
lock, so one other thread may ``send``/``ping`` while one thread reads.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from typing import Any, Callable
from urllib.parse import urlsplit

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Message,
    Ping,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import XorMaskerSimple
from wsproto.utilities import LocalProtocolError

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA
WAIT = 10.0
#: a channel number no test opens: ``probe`` closes it, the server always answers
PROBE_CHANNEL = 9_000_000_000
NO_STATUS = 1005  # a close frame without a code (RFC 6455 7.4.1)

Closed = tuple  # ("close", code | None) or ("gone", None)


def raw_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """One masked client frame, as is: any opcode, any payload (invalid UTF-8 in a text
    frame included), no compression."""
    size = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 1 << 16:
        head += bytes([0x80 | 126]) + size.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + size.to_bytes(8, "big")
    key = os.urandom(4)
    return head + key + bytes(XorMaskerSimple(key).process(bytearray(payload)))


class RawPeer:
    """A protocol v1 client peer on a real socket, one frame at a time.

    ``hello=False`` stops after the WebSocket upgrade; ``credentials`` is what ``open``
    sends unless told otherwise; ``rcvbuf`` sets SO_RCVBUF before connecting (a peer
    whose unread replies soon block the server); ``deflate=True`` negotiates
    permessage-deflate (asserted) and compresses every message ``send`` frames.
    """

    def __init__(self, url: str, *, hello: bool = True, timeout: float = WAIT,
                 credentials: Any = None, rcvbuf: int | None = None,
                 deflate: bool = False, agent: str = "raw-peer") -> None:
        parts = urlsplit(url)
        self.timeout = timeout
        self.credentials = credentials
        self.pending: list[dict[str, Any]] = []
        self.closed: Closed | None = None
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.welcome: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._text: list[str] = []
        self._events: list[Any] = []
        self._buf = bytearray()  # a frame read in part (a read timed out)
        self._next_id = 10_000  # above the ids tests write by hand
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if rcvbuf is not None:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(timeout)
            self.sock.connect((parts.hostname or "127.0.0.1", parts.port or 80))
            self._ws = WSConnection(ConnectionType.CLIENT)
            extensions = [PerMessageDeflate()] if deflate else []
            self.sock.sendall(self._ws.send(Request(host=parts.netloc, target=parts.path or "/",
                                                    extensions=extensions)))
            self.accepted = self._handshake()
            if deflate:
                assert any(isinstance(e, PerMessageDeflate) for e in self.accepted.extensions), \
                    "the server did not accept permessage-deflate"
            if hello:
                self.send({"type": "hello", "versions": [1], "agent": agent})
                msg = self.recv()
                assert isinstance(msg, dict) and msg["type"] == "welcome", msg
                self.welcome = msg
        except BaseException:
            self.sock.close()
            raise

    def _handshake(self) -> AcceptConnection:
        """Read the upgrade answer up to its blank line and not a byte further."""
        head = b""
        while True:
            peek = self.sock.recv(65536, socket.MSG_PEEK)
            if not peek:
                raise AssertionError("the server closed the socket during the upgrade")
            end = (head + peek).find(b"\r\n\r\n")
            head += self._exactly(len(peek) if end < 0 else end + 4 - len(head))
            if end >= 0:
                break
        self._ws.receive_data(head)
        for event in self._ws.events():
            if isinstance(event, AcceptConnection):
                return event
        raise AssertionError(f"upgrade refused: {head[:200]!r}")

    def _exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise AssertionError("the server closed the socket during the upgrade")
            data += chunk
        return data

    # -- sending ----------------------------------------------------------------------

    def frame(self, msg: Any, *, opcode: int | None = None) -> bytes:
        """The bytes ``send`` would write for ``msg``, to write later (``send_raw``):
        a dict or list as JSON text, a str as text, bytes as binary; with ``opcode``
        the payload goes as is in one raw frame of that opcode (never compressed).
        With deflate, write frames in the order they were made (shared context)."""
        if opcode is not None:
            payload = msg.encode("utf-8", "surrogatepass") if isinstance(msg, str) else msg
            return raw_frame(opcode, bytes(payload))
        if isinstance(msg, (dict, list)):
            msg = json.dumps(msg)
        elif not isinstance(msg, str):
            msg = bytes(msg)
        with self._lock:
            return self._ws.send(Message(data=msg))

    def send(self, msg: Any, *, opcode: int | None = None) -> bool:
        """Send one message (see ``frame``); False when the socket is gone or closing."""
        try:
            return self.send_raw(self.frame(msg, opcode=opcode))
        except LocalProtocolError:
            return False

    def send_raw(self, data: bytes) -> bool:
        """Write bytes as they are (frames from ``frame``/``raw_frame``, or garbage)."""
        try:
            with self._lock:
                self.sock.sendall(data)
            return True
        except OSError:
            return False

    def ping(self, payload: bytes = b"") -> bool:
        try:
            return self.send_raw(self._ws_send(Ping(payload=payload)))
        except LocalProtocolError:
            return False

    def _ws_send(self, event: Any) -> bytes:
        with self._lock:
            return self._ws.send(event)

    # -- receiving --------------------------------------------------------------------

    def recv(self, timeout: float | None = None) -> dict[str, Any] | Closed:
        """The next message from the socket (not ``pending``), or the close outcome."""
        if self.closed is not None:
            return self.closed
        while True:
            while self._events:
                got = self._handle(self._events.pop(0))
                if got is not None:
                    return got
            self.sock.settimeout(self.timeout if timeout is None else timeout)
            try:
                frame = self._read_frame()
            except socket.timeout:  # TimeoutError since 3.10; what came stays in _buf
                raise
            except OSError:
                frame = None
            if frame is None:
                return self._ended(("gone", None))
            with self._lock:
                self._ws.receive_data(frame)
                self._events.extend(self._ws.events())

    def _read_frame(self) -> bytes | None:
        """The bytes of the next whole frame (None when the socket ends first). Never
        reads past it, as websocket-client did not: what follows a close frame stays in
        the socket for a test to look at."""
        if not self._fill(2):
            return None
        extra = {126: 2, 127: 8}.get(self._buf[1] & 0x7F, 0)
        if not self._fill(2 + extra):
            return None
        size = int.from_bytes(self._buf[2:2 + extra], "big") if extra else self._buf[1] & 0x7F
        total = 2 + extra + (4 if self._buf[1] & 0x80 else 0) + size
        if not self._fill(total):
            return None
        frame, self._buf = bytes(self._buf[:total]), self._buf[total:]
        return frame

    def _fill(self, size: int) -> bool:
        while len(self._buf) < size:
            data = self.sock.recv(min(size - len(self._buf), 1 << 20))
            if not data:
                return False
            self._buf += data
        return True

    def _handle(self, event: Any) -> Any:
        if isinstance(event, TextMessage):
            self._text.append(event.data)
            if event.message_finished:
                text, self._text = "".join(self._text), []
                return json.loads(text)
        elif isinstance(event, Ping):
            self.send_raw(self._ws_send(event.response()))
        elif isinstance(event, CloseConnection):
            state = self._ws.state
            if state not in (ConnectionState.REMOTE_CLOSING, ConnectionState.CLOSED):
                # wsproto's own verdict on bytes that are not WebSocket, not a close frame
                self.close_reason = event.reason
                return self._ended(("gone", None))
            code = None if event.code == NO_STATUS else int(event.code)
            self.close_code, self.close_reason = code, event.reason or ""
            if state is ConnectionState.REMOTE_CLOSING:  # the server's close: answer it
                self.send_raw(self._ws_send(event.response()))
            return self._ended(("close", code))
        return None  # binary messages and pongs are skipped

    def _ended(self, outcome: Closed) -> Closed:
        self.closed = outcome
        return outcome

    def _next(self, timeout: float | None) -> dict[str, Any] | Closed:
        return self.pending.pop(0) if self.pending else self.recv(timeout)

    def until(self, predicate: Callable[[dict[str, Any]], Any],
              timeout: float | None = None) -> tuple[Any, list[dict[str, Any]]]:
        """Read until ``predicate(msg)`` or the close outcome; (that message or the
        outcome, the messages read before it, which are consumed)."""
        seen: list[dict[str, Any]] = []
        while True:
            msg = self._next(timeout)
            if isinstance(msg, tuple) or predicate(msg):
                return msg, seen
            seen.append(msg)

    def expect(self, timeout: float | None = None, **fields: Any) -> dict[str, Any]:
        """The first message whose ``fields`` match (``pending`` first); the ones it
        skips stay in ``pending``. Fails when the socket closes first."""
        return self.expect_match(lambda msg: all(msg.get(k) == v for k, v in fields.items()),
                                 timeout, what=fields)

    def expect_match(self, predicate: Callable[[dict[str, Any]], Any],
                     timeout: float | None = None, *, what: Any = None) -> dict[str, Any]:
        for i, msg in enumerate(self.pending):
            if predicate(msg):
                return self.pending.pop(i)
        while True:
            got = self.recv(timeout)
            assert not isinstance(got, tuple), \
                f"socket {got} ({self.close_reason}) while waiting for {what or predicate}"
            if predicate(got):
                return got
            self.pending.append(got)

    def expect_close(self, timeout: float | None = None) -> list[dict[str, Any]]:
        """Read until the socket ends (close frame or gone); the messages on the way."""
        return self.until(lambda msg: False, timeout)[1]

    def probe(self, ch: int = PROBE_CHANNEL) -> tuple[Any, list[dict[str, Any]]]:
        """Send a ``close`` for a channel never opened (always answered ``closed``) and
        read up to its answer: proves the server still serves this socket."""
        self.send({"type": "close", "ch": ch})
        return self.until(lambda m: m.get("type") == "closed" and m.get("ch") == ch)

    # -- protocol steps ---------------------------------------------------------------

    def open(self, ch: int, db: str, credentials: Any = ...) -> dict[str, Any]:
        """Open channel ``ch`` on ``db``; the ``granted`` or ``denied`` answer."""
        creds = self.credentials if credentials is ... else credentials
        self.send({"type": "open", "ch": ch, "db": db, "credentials": creds})
        return self.expect_match(lambda m: m.get("type") in ("granted", "denied")
                                 and m.get("ch") == ch, what=f"the answer to open {ch}")

    def start_call(self, ch: int, op: str, args: dict[str, Any] | None = None) -> int:
        """Send a call with a fresh id; the id."""
        self._next_id += 1
        self.send({"type": "call", "ch": ch, "id": self._next_id, "op": op, "args": args or {}})
        return self._next_id

    def call(self, ch: int, op: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a call and wait for its reply (the whole reply message)."""
        call_id = self.start_call(ch, op, args)
        return self.expect(type="reply", ch=ch, id=call_id)

    def ok(self, ch: int, op: str, args: dict[str, Any] | None = None) -> Any:
        reply = self.call(ch, op, args)
        assert "ok" in reply, reply
        return reply["ok"]

    def error(self, ch: int, op: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        reply = self.call(ch, op, args)
        assert "error" in reply, reply
        return reply["error"]

    # -- the end ----------------------------------------------------------------------

    def close(self, timeout: float = 1.0) -> None:
        """Send a close frame and wait up to ``timeout`` for the server's, then close
        the socket. Idempotent; never raises."""
        if self.closed is None:
            try:
                sent = self.send_raw(self._ws_send(CloseConnection(code=1000)))
            except LocalProtocolError:
                sent = False
            deadline = time.monotonic() + timeout
            while sent and self.closed is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    msg = self.recv(left)
                except (socket.timeout, LocalProtocolError):
                    break
                if isinstance(msg, dict):
                    continue  # what was still on its way
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
