"""The connection thread of a ``Client``: connect, keep alive, back off, reconnect.

Theory of operation. ``Reconnector.start(url)`` starts the thread ``pouchsync-client``.
It opens a connection (the client's ``_open_link``: the socket, hello and welcome),
publishes it (``connection``, under the client's condition, which it shares), then
keeps it alive (``Link.keep_alive``: a ping every ``ping_interval``, dropped after
``dead_timeout`` without traffic). After a loss, or a failed attempt, it waits
``backoff.delay(n)`` and tries again; when to give up is ``policy.Reconnects``'s
decision (``max_attempts`` failures in a row, or at once a URL that never led to a sync
server and fails as no retry fixes). A lost connection is reported to the client
(``on_lost``) before the next attempt, so every sync's round stops at once.

``stop`` ends the thread: the stop event, the socket being opened aborted, the
connection closed, the thread joined. ``redirect`` moves the next attempt to another URL.

Thread safety: the attributes are read under the shared condition; the methods may be
called from any thread.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Callable

from .. import signals
from ..errors import PouchSyncError, TransportError
from .link import Link
from .policy import Reconnects
from .transport import Opening, safe_url

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client

log = logging.getLogger(__name__)

__all__ = ["Reconnector"]


class Reconnector:
    """The connection thread and what it publishes; see the module docstring.

    ``open_link(url, on_opening)`` opens one link; ``on_lost(connection)`` is told
    of each loss, on this thread, outside the lock; ``client`` gives the options
    (``backoff``, ``ping_interval``, ``dead_timeout``) and is the signals' sender.
    """

    def __init__(self, client: Client, cond: threading.Condition, *,
                 open_link: Callable[[str, Callable[[Opening | None], None]], Link],
                 on_lost: Callable[[Link], None], clock: Callable[[], float],
                 random: Callable[[], float]) -> None:
        self.client = client
        self.cond = cond
        self.open_link = open_link
        self.on_lost = on_lost
        self.clock = clock
        self.random = random
        self.url: str | None = None  # where the next attempt goes
        self.connection: Link | None = None  # the live one, else None
        self.failure: PouchSyncError | None = None  # why it gave up
        self.last_error: PouchSyncError | None = None  # why the last attempt or link failed
        self.next_attempt_at: float | None = None  # while waiting to retry
        self._connecting: Opening | None = None  # the attempt under way, to abort on stop
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, url: str) -> None:
        """Start the thread towards ``url`` (the caller checked it is not running)."""
        with self.cond:
            self.url = url
            self.failure = None
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="pouchsync-client",
                                            daemon=True)
            self._thread.start()

    def redirect(self, url: str) -> None:
        """Go on at ``url``: drop the connection; the thread reconnects there."""
        with self.cond:
            self.url = url
            connection = self.connection
        if connection is not None:
            connection.close(timeout=0.2)  # the connect loop reconnects, to the new URL

    def stop(self, join_timeout: float) -> None:
        """End the thread: stop, abort the socket being opened, close the connection,
        join the thread (unless called on it) for up to ``join_timeout`` seconds."""
        self._stop.set()
        with self.cond:
            connection, connecting = self.connection, self._connecting
            self.cond.notify_all()
        if connecting is not None:
            connecting.abort()
        if connection is not None:
            connection.close()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(join_timeout)
            if thread.is_alive():
                log.warning("client connection thread did not stop")

    # -- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._connect_loop()
        except Exception as exc:  # noqa: BLE001 - top frame of the thread
            log.exception("client connection thread crashed")
            with self.cond:
                self.failure = TransportError(f"client crashed: {exc!r}")
                self.cond.notify_all()

    def _connect_loop(self) -> None:
        assert self.url is not None
        url = ""
        attempts = Reconnects()
        while not self._stop.is_set():
            with self.cond:
                if self.url != url:  # the first attempt, or redirect() moved us
                    url, attempts.worked = self.url or url, False
            shown = safe_url(url)
            try:
                connection = self.open_link(url, self._opening)
            except PouchSyncError as exc:
                self._opening(None)
                with self.cond:
                    self.last_error = exc
                if self._stop.is_set():
                    return
                give_up = attempts.failed(exc, self.client.backoff)
                log.warning("connecting to %s failed (attempt %d): %s", shown,
                            attempts.failures, exc)
                if give_up is not None:
                    self._give_up(give_up)
                    return
                if not self._retry_after(attempts.retries):
                    return
                continue
            self._opening(None)
            with self.cond:
                if self._stop.is_set():
                    stopped = True
                else:
                    stopped = False
                    self.connection = connection
                    self.last_error = None
                    self.cond.notify_all()
            if stopped:
                connection.close()
                return
            attempts.connected()
            signals.emit(signals.client_connect, self.client, url=shown,
                         version=connection.version)
            connection.keep_alive(self._stop, self.client.ping_interval,
                                  self.client.dead_timeout)
            with self.cond:
                self.connection = None
                self.last_error = connection.lost_error
                self.cond.notify_all()
            self.on_lost(connection)
            closing = self._stop.is_set()
            connection.close(timeout=0.2)
            signals.emit(signals.client_disconnect, self.client,
                         error=None if closing else connection.lost_error)
            if closing:
                return
            attempts.lost()
            if not self._retry_after(attempts.retries):
                return

    def _retry_after(self, attempt: int) -> bool:
        """Wait the backoff delay before ``attempt``; False when stopped meanwhile."""
        delay = self.client.backoff.delay(attempt, self.random)
        with self.cond:
            self.next_attempt_at = self.clock() + delay
        signals.emit(signals.client_reconnect, self.client, attempt=attempt, delay=delay)
        try:
            return not self._stop.wait(delay)
        finally:
            with self.cond:
                self.next_attempt_at = None

    def _opening(self, opening: Opening | None) -> None:
        with self.cond:
            self._connecting = opening
            stop = self._stop.is_set()
        if stop and opening is not None:
            opening.abort()

    def _give_up(self, error: PouchSyncError) -> None:
        log.error("%s", error)
        with self.cond:
            self.failure = error
            self.cond.notify_all()
