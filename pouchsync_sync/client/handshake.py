"""The opening of a link: ``hello``, then the server's ``welcome`` or the error saying
why not (docs/protocol.md §1), through the link's protocol machine.

A server that answers with something else is not a sync server (``NotASyncServer``),
one that speaks none of our versions is ``UnsupportedProtocol``; a socket that fails
meanwhile is a ``TransportError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import gcpause
from ..errors import ProtocolError, TransportError, UnsupportedProtocol, error_from_json
from ..protocol import messages as wire
from ..protocol.connection import Connection
from .failures import not_a_sync_server
from .transport import FrameKind, Socket

__all__ = ["decode", "handshake"]


def _agent() -> str:
    from .._version import __version__

    return f"pouchsync_sync/{__version__}"


def decode(data: bytes | str) -> dict[str, Any]:
    """A server message from a text frame's payload (strict UTF-8, then the schema)."""
    with gcpause.paused_for(data):  # a batch of docs: thousands of objects that stay alive
        return wire.decode_payload(data, sender="server")


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


def _first_frame(sock: Socket) -> tuple[FrameKind, bytes]:
    """The first data frame (or the close) after the hello; pings and pongs skipped."""
    while True:
        kind, data = sock.recv()
        if kind != "control":
            return kind, data


def handshake(sock: Socket, proto: Connection, shown: str) -> None:
    """Say hello on ``sock`` and read the answer: ``proto`` ends open on a welcome in a
    version we speak; anything else raises."""
    hello = wire.hello(_agent())
    try:
        sock.send_text(proto.send(hello, wire.encode_bytes(hello)))
        kind, data = _first_frame(sock)
    except TransportError as exc:
        raise TransportError(f"hello to {shown} failed: {exc}") from exc
    if kind == "close":
        raise TransportError(f"{shown} closed the connection before its welcome")
    try:
        welcome = decode(data)
    except wire.BadMessage as exc:
        raise not_a_sync_server(shown, None, "a WebSocket server that answered hello with a "
                                f"message not in the protocol ({exc})") from exc
    try:
        proto.receive(data, decoded=welcome)  # a welcome opens, an error closes
    except wire.BadMessage as exc:
        _check_welcome(welcome, shown)
        raise not_a_sync_server(shown, None, f"a WebSocket server that broke the "
                                f"protocol ({exc})") from exc
    _check_welcome(welcome, shown)
