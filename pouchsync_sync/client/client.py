"""``Client``: one websocket to a sync server, kept open, shared by every ``Sync``.

Theory of operation. ``connect(url)`` returns at once; the connection thread
``pouchsync-client`` connects, says hello and reads the welcome (``Link.open``),
then keeps the connection alive: every ``ping_interval`` it pings the server, and if
nothing at all arrived for ``dead_timeout`` seconds it drops the connection (a hung
server or a silent network loss is never seen otherwise). After any loss, or a failed
attempt, it waits ``backoff.delay(n)`` (exponential, jittered, reset after a good
connection) and tries again; ``max_attempts`` failures in a row fail every sync, and so
does at once a URL that never led to a sync server and fails as no retry fixes (a
wrong path, TLS, protocol version: ``failures.worth_retrying``).

Syncs wait on the client's condition for a live connection (``_wait_connection``), so a
sync made before ``connect`` or while offline starts as soon as there is one. The
connection thread tells every sync when a connection dies, so its round stops at once.

``close()`` (aliases ``end``/``destroy``) cancels every sync, joins their threads, closes
the socket and joins the connection thread. Idempotent and safe from any thread.
"""

from __future__ import annotations

import logging
import math
import random as _random
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Callable
from urllib.parse import urlsplit

from .. import signals
from ..errors import PouchSyncError, Timeout, TransportError
from ..store.base import Database
from .backoff import Backoff
from .failures import gave_up, worth_retrying
from .link import Link
from .remote import RemoteDatabase
from .sync import DEFAULT_CHECKPOINT_INTERVAL, Sync, check_checkpoint_interval
from .transport import Opening, Transport, safe_url

log = logging.getLogger(__name__)

__all__ = ["Client", "create_client"]


def _seconds(name: str, value: Any) -> float:
    """``value`` as a finite number of seconds > 0, else ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    return float(value)


class Client:
    """A connection to one sync server, shared by any number of syncs: ``connect(url)``,
    then ``sync(db)`` for each database (the original's ``createClient``). Thread-safe;
    the module docstring tells how it reconnects.

    Example::

        import pouchsync_sync as ps

        shared = ps.LocalDatabase(":memory:", name="todos")
        server = ps.create_server(lambda credentials, name: shared).start(port=0)
        db = ps.LocalDatabase(":memory:", name="todos")
        db.put({"_id": "milk", "title": "Buy milk"})
        with ps.create_client() as client:                  # ps.Client(max_attempts=5, ...)
            client.connect(server.url)                      # returns at once; reconnects
            print(client.sync(db).wait(timeout=30).docs_pushed)   # 1
        server.stop()

    Options (seconds): ``backoff`` (a ``Backoff``) or its fields ``initial_delay``,
    ``factor``, ``max_delay``, ``max_attempts``, ``jitter``; ``ping_interval`` and
    ``dead_timeout`` (no traffic for that long = dead server); ``connect_timeout``
    (TCP + websocket handshake + hello/welcome); ``open_timeout`` (a database request
    unanswered); ``call_timeout`` (a reply to a call); ``longpoll_timeout`` (an idle
    live sync waits for the server's subscription to push changes; after this long
    without one it reads the server's changes anyway, as a longpoll does when it expires);
    ``local_poll_interval`` (how often an idle live sync re-reads its local database
    for writes by other processes; this process's writes wake it at once; > 0);
    ``checkpoint_interval`` (the default of every ``sync``: a caught-up live sync
    records its checkpoint at most that often, ±25 %; 0: after every batch); ``clock``
    and ``random`` for tests; ``transport`` makes the sockets (``client/transport.py``;
    default: websocket-client).
    """

    def __init__(self, *, backoff: Backoff | None = None,
                 initial_delay: float | None = None, factor: float | None = None,
                 max_delay: float | None = None, max_attempts: int | None = None,
                 jitter: float | None = None,
                 ping_interval: float = 10.0, dead_timeout: float | None = None,
                 connect_timeout: float = 10.0, open_timeout: float = 30.0,
                 call_timeout: float = 60.0, longpoll_timeout: float = 25.0,
                 local_poll_interval: float = 0.25,
                 checkpoint_interval: float = DEFAULT_CHECKPOINT_INTERVAL,
                 clock: Callable[[], float] = time.monotonic,
                 random: Callable[[], float] = _random.random,
                 transport: Transport | None = None) -> None:
        policy = backoff or Backoff()
        changes = {key: value for key, value in (
            ("initial_delay", initial_delay), ("factor", factor), ("max_delay", max_delay),
            ("max_attempts", max_attempts), ("jitter", jitter)) if value is not None}
        self.backoff = policy.replace(**changes) if changes else policy
        if ping_interval <= 0:
            raise ValueError("ping_interval must be > 0")
        self.ping_interval = float(ping_interval)
        self.dead_timeout = float(dead_timeout if dead_timeout is not None
                                  else 2 * ping_interval)
        if self.dead_timeout <= 0:
            raise ValueError("dead_timeout must be > 0")
        self.connect_timeout = float(connect_timeout)
        self.open_timeout = float(open_timeout)
        self.call_timeout = float(call_timeout)
        self.longpoll_timeout = _seconds("longpoll_timeout", longpoll_timeout)
        self.local_poll_interval = _seconds("local_poll_interval", local_poll_interval)
        self.checkpoint_interval = check_checkpoint_interval(checkpoint_interval)
        self._clock = clock
        self._random = random
        self._transport = transport

        self._cond = threading.Condition()
        self._url: str | None = None
        self._connection: Link | None = None
        self._connecting: Opening | None = None  # the attempt under way, to abort on close
        self._failure: PouchSyncError | None = None
        self._last_error: PouchSyncError | None = None
        self._next_attempt_at: float | None = None
        self._closed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._syncs: list[Sync] = []

    def __repr__(self) -> str:
        url = safe_url(self._url) if self._url else None
        return f"<Client {url} {'connected' if self.connected else 'not connected'}>"

    # -- public API ---------------------------------------------------------------------
    @property
    def url(self) -> str | None:
        """The server URL, without credentials."""
        return safe_url(self._url) if self._url else None

    @property
    def retry_in(self) -> float | None:
        """Seconds until the next connection attempt while offline, else ``None``."""
        with self._cond:
            at = self._next_attempt_at
        return None if at is None else max(0.0, at - self._clock())

    @property
    def last_error(self) -> PouchSyncError | None:
        """Why the last attempt failed or connection was lost; ``None`` once connected."""
        with self._cond:
            return self._last_error

    @property
    def connected(self) -> bool:
        with self._cond:
            connection = self._connection
        return connection is not None and not connection.lost.is_set()

    def connect(self, url: str) -> Client:
        """Start connecting to ``url`` (``ws://host:port/path``) in the background."""
        if urlsplit(url).scheme not in ("ws", "wss"):
            raise ValueError("a sync server URL starts with ws:// or wss://, "
                             f"got {safe_url(url)!r}")
        with self._cond:
            if self._closed:
                raise PouchSyncError("the client is closed")
            if self._thread is not None and self._thread.is_alive():
                raise PouchSyncError(f"already connecting to {self.url}")
            self._url = url
            self._failure = None
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="pouchsync-client",
                                            daemon=True)
            self._thread.start()
        return self

    def redirect(self, url: str) -> None:
        """Go on at ``url`` (another address of the same server, say a proxy): the
        connection is dropped and the client reconnects there; syncs resume from their
        checkpoints. ``network_fault(client)`` uses it."""
        if urlsplit(url).scheme not in ("ws", "wss"):
            raise ValueError("a sync server URL starts with ws:// or wss://, "
                             f"got {safe_url(url)!r}")
        with self._cond:
            if self._closed or self._url is None:
                raise PouchSyncError("redirect needs a connected client (use connect(url))")
            self._url = url
            connection = self._connection
        if connection is not None:
            connection.close(timeout=0.2)  # the connect loop reconnects, to the new URL

    def wait_connected(self, timeout: float | None = None) -> None:
        """Block until connected; raise ``Timeout`` or the error that made it give up."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: self._connection is not None or self._failure is not None
                or self._closed, timeout)
            if self._failure is not None:
                raise self._failure
            if not ok or self._connection is None:
                raise Timeout(f"not connected to {self.url} within {timeout}s")

    def sync(self, db: Database, *, remote_name: str | None = None, credentials: Any = None,
             live: bool = False, direction: str = "both",
             doc_ids: Sequence[str] | None = None, selector: Mapping[str, Any] | None = None,
             batch_size: int = 500, checkpoint_interval: float | None = None) -> Sync:
        """Start syncing ``db`` with ``remote_name`` (default ``db.name``) on the server.

        ``batch_size`` docs travel per message (500: measured ~1.3–2× the docs/s of 100 in
        bench/results.md; each batch stays bounded in bytes by the replicator).
        ``checkpoint_interval`` (seconds, default the client's): a one-shot sync, and a
        live sync once caught up, records its checkpoint at most that often (±25 %
        jitter, so many clients do not all write on the same change; 0: after every
        batch), and when it ends, is cancelled or closed. A sync killed in between
        re-reads at most that interval's changes (already on the other side: harmless).
        Bad values raise ``ValueError``.
        """
        if checkpoint_interval is None:
            checkpoint_interval = self.checkpoint_interval
        sync = Sync(self, db, remote_name=remote_name, credentials=credentials, live=live,
                    direction=direction, doc_ids=doc_ids, selector=selector,
                    batch_size=batch_size, checkpoint_interval=checkpoint_interval)
        with self._cond:
            if self._closed:
                raise PouchSyncError("the client is closed")
            self._syncs.append(sync)
        sync._start()
        return sync

    def database(self, name: str, *, credentials: Any = None,
                 timeout: float | None = 30.0) -> RemoteDatabase:
        """A ``RemoteDatabase`` for ``name`` on the server, on the current connection.

        Blocks until connected and granted; raises ``Denied``, ``Timeout`` or the error
        that made the client give up. It lives as long as that connection: after a loss
        its calls raise ``TransportError`` (a ``Sync`` reopens its channel by itself).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            ok = self._cond.wait_for(
                lambda: self._closed or self._failure is not None or (
                    self._connection is not None and not self._connection.lost.is_set()),
                timeout)
            if self._closed:
                raise PouchSyncError("the client is closed")
            if self._failure is not None:
                raise self._failure
            if not ok or self._connection is None:
                raise Timeout(f"not connected to {self.url} within {timeout}s")
            connection = self._connection
        channel = connection.open_channel(name, credentials)
        channel.wait_open(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return RemoteDatabase(channel)

    @property
    def syncs(self) -> list[Sync]:
        """The syncs still running."""
        with self._cond:
            return list(self._syncs)

    def close(self, timeout: float = 10.0) -> None:
        """Cancel every sync, close the socket, join every thread. Idempotent."""
        with self._cond:
            already = self._closed
            self._closed = True
            syncs = list(self._syncs)
            self._cond.notify_all()
        for sync in syncs:
            sync.cancel()
        deadline = time.monotonic() + timeout
        for sync in syncs:
            if not sync.join(max(0.0, deadline - time.monotonic())):
                log.warning("%r did not stop within %ss", sync, timeout)
        self._stop.set()
        with self._cond:
            connection, connecting = self._connection, self._connecting
            self._cond.notify_all()
        if connecting is not None:
            connecting.abort()
        if connection is not None:
            connection.close()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()) + self.connect_timeout)
            if thread.is_alive():
                log.warning("client connection thread did not stop")
        if not already:
            log.info("client closed")

    end = close
    destroy = close

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- used by syncs --------------------------------------------------------------------
    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _wait_connection(self, sync: Sync, avoid: Link | None) -> Link | None:
        """A live connection other than ``avoid``, or ``None`` once ``sync`` is cancelled,
        the client is closed or it gave up reconnecting."""
        with self._cond:
            while True:
                if sync.cancelled or self._closed or self._failure is not None:
                    return None
                connection = self._connection
                if (connection is not None and connection is not avoid
                        and not connection.lost.is_set()):
                    return connection
                self._cond.wait(self.ping_interval)  # woken on every change

    def _sync_finished(self, sync: Sync) -> None:
        with self._cond:
            if sync in self._syncs:
                self._syncs.remove(sync)

    # -- the connection thread -----------------------------------------------------------
    def _run(self) -> None:
        try:
            self._connect_loop()
        except Exception as exc:  # noqa: BLE001 - top frame of the thread
            log.exception("client connection thread crashed")
            with self._cond:
                self._failure = TransportError(f"client crashed: {exc!r}")
                self._cond.notify_all()

    def _connect_loop(self) -> None:
        assert self._url is not None
        url = ""
        failures = 0  # failed attempts in a row (max_attempts counts these)
        retries = 0   # reconnects scheduled since the last good connection
        worked = False  # this URL led to our server once: a 404 later is a deploy, not a typo
        while not self._stop.is_set():
            with self._cond:
                if self._url != url:  # the first attempt, or redirect() moved us
                    url, worked = self._url or url, False
            shown = safe_url(url)
            try:
                connection = Link.open(
                    url, timeout=self.connect_timeout, clock=self._clock,
                    call_timeout=self.call_timeout, transport=self._transport,
                    on_opening=self._opening)
            except PouchSyncError as exc:
                self._opening(None)
                with self._cond:
                    self._last_error = exc
                if self._stop.is_set():
                    return
                failures += 1
                log.warning("connecting to %s failed (attempt %d): %s", shown, failures, exc)
                if not worked and not worth_retrying(exc):
                    self._give_up(exc)  # a wrong URL or setup: no retry fixes it
                    return
                if self.backoff.exhausted(failures):
                    self._give_up(gave_up(exc, failures))
                    return
                retries += 1
                if not self._retry_after(retries):
                    return
                continue
            self._opening(None)
            with self._cond:
                if self._stop.is_set():
                    stopped = True
                else:
                    stopped = False
                    self._connection = connection
                    self._last_error = None
                    self._cond.notify_all()
            if stopped:
                connection.close()
                return
            failures = retries = 0
            worked = True
            signals.emit(signals.client_connect, self, url=shown, version=connection.version)
            connection.keep_alive(self._stop, self.ping_interval, self.dead_timeout)
            with self._cond:
                self._connection = None
                self._last_error = connection.lost_error
                syncs = list(self._syncs)
                self._cond.notify_all()
            for sync in syncs:
                sync._connection_lost(connection)
            closing = self._stop.is_set()
            connection.close(timeout=0.2)
            signals.emit(signals.client_disconnect, self,
                         error=None if closing else connection.lost_error)
            if closing:
                return
            # a loss after a good connection: the backoff starts again from attempt 1
            retries = 1
            if not self._retry_after(retries):
                return

    def _retry_after(self, attempt: int) -> bool:
        """Wait the backoff delay before ``attempt``; False when stopped meanwhile."""
        delay = self.backoff.delay(attempt, self._random)
        with self._cond:
            self._next_attempt_at = self._clock() + delay
        signals.emit(signals.client_reconnect, self, attempt=attempt, delay=delay)
        try:
            return not self._stop.wait(delay)
        finally:
            with self._cond:
                self._next_attempt_at = None

    def _opening(self, opening: Opening | None) -> None:
        with self._cond:
            self._connecting = opening
            stop = self._stop.is_set()
        if stop and opening is not None:
            opening.abort()

    def _give_up(self, error: PouchSyncError) -> None:
        log.error("%s", error)
        with self._cond:
            self._failure = error
            self._cond.notify_all()


def create_client(**options: Any) -> Client:
    """A new ``Client``; see ``Client`` for the options."""
    return Client(**options)
