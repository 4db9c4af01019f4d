"""werkzeug's request handler, hardened for a server any client can reach.

- One overall deadline for the HTTP request (line and headers): ``hello_timeout``
  bounds each read *and* their sum, so a client trickling one header byte every few
  seconds cannot hold a thread (slowloris). The deadline ends where the request has
  been read; a WebSocket then lives as long as it is served.
- A client's misbehaviour is not a server fault: werkzeug and ``http.server`` log
  timeouts, bad request lines and oversized headers (408/400/414/431) at ERROR; here
  they go to ``pouchsync_sync.server.http`` at INFO, at most ``_BURST`` lines per
  ``_WINDOW`` seconds (then one line counting what was left out). The server shares
  the same ``RateLimit`` with its sessions' lines about clients' mistakes.
- Once a WebSocket ended, the connection is closed rather than its leftover frames
  read as a next HTTP request.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from typing import Any, Callable

__all__ = ["request_handler", "RateLimit", "OpenConnections"]

log = logging.getLogger("pouchsync_sync.server.http")

_BURST = 20      # lines logged per window ...
_WINDOW = 60.0   # ... seconds, per server


class RateLimit:
    """At most ``burst`` events per ``window`` seconds. Thread-safe; ``clock`` injected.

    ``allow()`` says whether to log this event, and how many were suppressed since the
    last one allowed (so the next line can say so)."""

    def __init__(self, burst: int = _BURST, window: float = _WINDOW,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.burst = burst
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._start = clock()
        self._count = 0
        self._suppressed = 0

    def allow(self) -> tuple[bool, int]:
        with self._lock:
            now = self._clock()
            if now - self._start >= self.window:
                self._start, self._count = now, 0
            if self._count < self.burst:
                self._count += 1
                suppressed, self._suppressed = self._suppressed, 0
                return True, suppressed
            self._suppressed += 1
            return False, 0


class _DeadlineReader(io.RawIOBase):
    """The request's socket for reading the request: each read waits at most until the
    handler's deadline (and at most ``timeout``), then raises ``TimeoutError``."""

    def __init__(self, sock: Any, handler: Any, timeout: float) -> None:
        self._sock = sock
        self._handler = handler
        self._timeout = timeout

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        deadline = self._handler.request_deadline
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"request not complete within {self._timeout} s")
            self._sock.settimeout(min(left, self._timeout))
        return self._sock.recv_into(buffer)


class OpenConnections:
    """The connections the server's handler threads serve, so that ``stop()`` can end
    those still reading their HTTP request (a WebSocket's own session closes it) and
    join their threads. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[Any, threading.Thread] = {}

    def add(self, sock: Any) -> None:
        with self._lock:
            self._open[sock] = threading.current_thread()

    def discard(self, sock: Any) -> None:
        with self._lock:
            self._open.pop(sock, None)

    def close_all(self, timeout: float) -> list[str]:
        """Shut every connection down and join its thread; names of threads still alive."""
        import socket

        with self._lock:
            items = list(self._open.items())
        for sock, _ in items:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for _, thread in items:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        return [thread.name for _, thread in items if thread.is_alive()]


def request_handler(timeout: float, limit: RateLimit | None = None,
                    connections: OpenConnections | None = None) -> Any:
    """A ``WSGIRequestHandler`` subclass: per-read and overall request ``timeout``,
    client errors logged at INFO (rate-limited), no HTTP after a WebSocket; each
    connection listed in ``connections`` while it is served."""
    from werkzeug.serving import WSGIRequestHandler

    rate = limit or RateLimit()
    timeout_s = timeout

    class SyncRequestHandler(WSGIRequestHandler):
        request_deadline: float | None = None
        timeout = timeout_s  # socketserver's per-read timeout, until the upgrade

        def setup(self) -> None:
            super().setup()  # the socket's per-read timeout, rfile, wfile
            self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self, timeout))
            if connections is not None:
                connections.add(self.connection)

        def finish(self) -> None:
            try:
                super().finish()
            finally:
                if connections is not None:
                    connections.discard(self.connection)

        def handle_one_request(self) -> None:
            self.request_deadline = time.monotonic() + timeout
            super().handle_one_request()

        def parse_request(self) -> bool:
            parsed = super().parse_request()
            self.request_deadline = None  # the request is read: the app has it now
            return parsed

        def connection_dropped(self, error: BaseException, environ: Any = None) -> None:
            self.close_connection = True

        def log_error(self, format: str, *args: Any) -> None:
            allowed, suppressed = rate.allow()
            if not allowed:
                return
            more = f" ({suppressed} similar lines left out)" if suppressed else ""
            log.info("client %s: " + format + "%s", self.address_string(), *args, more)

    return SyncRequestHandler
