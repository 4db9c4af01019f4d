"""The TCP socket handed to simple-websocket, with every write serialized and complete.

simple-websocket writes frames with a single ``socket.send`` from two threads: ours
(data frames, under the session's lock) and its own reader thread (pongs, pings and
close replies). A blocking ``send`` that waits for buffer space can let the other
thread's bytes in between, and a socket with a timeout sends a frame only in part and
drops the rest silently (research/limits.md §7, §8). ``SerializedSocket`` gives
simple-websocket one lock around ``sendall`` instead, so a frame always goes out whole
and alone; everything else is the real socket's.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["SerializedSocket", "serialized_environ"]

_SOCKET_KEYS = ("werkzeug.socket", "gunicorn.socket")


class SerializedSocket:
    """A socket whose ``send`` is ``sendall`` under a lock. Thread-safe for writes."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._write = threading.Lock()

    def send(self, data: bytes) -> int:
        with self._write:
            self._sock.sendall(data)
        return len(data)

    def sendall(self, data: bytes) -> None:
        self.send(data)

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
