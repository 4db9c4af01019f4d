"""``Client``: one websocket to a sync server, kept open, shared by every ``Sync``.

Theory of operation. ``connect(url)`` returns at once; the connection thread
``pouchsync-client`` (``reconnect.py``) connects, says hello and reads the welcome
(``_open_link``), then keeps the connection alive: every ``ping_interval`` it pings the
server, and if nothing at all arrived for ``dead_timeout`` seconds it drops the
connection (a hung server or a silent network loss is never seen otherwise). After any
loss, or a failed attempt, it waits ``backoff.delay(n)`` (exponential, jittered, reset
after a good connection) and tries again; ``max_attempts`` failures in a row fail every
sync, and so does at once a URL that never led to a sync server and fails as no retry
fixes (a wrong path, TLS, protocol version: ``failures.worth_retrying``).

Syncs wait on the client's condition for a live connection (``wait_connection``: the
client is their ``host.SyncHost``), so a sync made before ``connect`` or while offline
starts as soon as there is one. The connection thread tells every sync when a
connection dies (``Sync.connection_lost``), so its round stops at once.

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
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import urlsplit

from ..errors import PouchSyncError, Timeout
from ..store.base import Database
from .backoff import Backoff
from .link import Link
from .reconnect import Reconnector
from .remote import RemoteDatabase
from .sync import DEFAULT_CHECKPOINT_INTERVAL, Sync, check_checkpoint_interval
from .transport import Opening, Transport, safe_url

if TYPE_CHECKING:  # pragma: no cover
    from .host import HostedSync

log = logging.getLogger(__name__)

__all__ = ["Client", "create_client"]


def _seconds(name: str, value: Any) -> float:
    """``value`` as a finite number of seconds > 0, else ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    return float(value)


def _check_url(url: str) -> None:
    if urlsplit(url).scheme not in ("ws", "wss"):
        raise ValueError(f"a sync server URL starts with ws:// or wss://, got {safe_url(url)!r}")


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
        self._closed = False
        self._syncs: list[Sync] = []
        # the connection thread: its connection, url, failure... under self._cond
        self._connector = Reconnector(self, self._cond, open_link=self._open_link,
                                 on_lost=self._connection_lost, clock=clock, random=random)

    def __repr__(self) -> str:
        url = self.url
        return f"<Client {url} {'connected' if self.connected else 'not connected'}>"

    # -- public API ---------------------------------------------------------------------
    @property
    def url(self) -> str | None:
        """The server URL, without credentials."""
        url = self._connector.url
        return safe_url(url) if url else None

    @property
    def retry_in(self) -> float | None:
        """Seconds until the next connection attempt while offline, else ``None``."""
        with self._cond:
            at = self._connector.next_attempt_at
        return None if at is None else max(0.0, at - self._clock())

    @property
    def last_error(self) -> PouchSyncError | None:
        """Why the last attempt failed or connection was lost; ``None`` once connected."""
        with self._cond:
            return self._connector.last_error

    @property
    def connected(self) -> bool:
        with self._cond:
            return self._live() is not None

    def connect(self, url: str) -> Client:
        """Start connecting to ``url`` (``ws://host:port/path``) in the background."""
        _check_url(url)
        with self._cond:
            if self._closed:
                raise PouchSyncError("the client is closed")
            if self._connector.running:
                raise PouchSyncError(f"already connecting to {self.url}")
            self._connector.start(url)
        return self

    def redirect(self, url: str) -> None:
        """Go on at ``url`` (another address of the same server, say a proxy): the
        connection is dropped and the client reconnects there; syncs resume from their
        checkpoints. ``network_fault(client)`` uses it."""
        _check_url(url)
        with self._cond:
            if self._closed or self._connector.url is None:
                raise PouchSyncError("redirect needs a connected client (use connect(url))")
        self._connector.redirect(url)

    def wait_connected(self, timeout: float | None = None) -> None:
        """Block until connected; raise ``Timeout`` or the error that made it give up."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: self._connector.connection is not None
                or self._connector.failure is not None or self._closed, timeout)
            if self._connector.failure is not None:
                raise self._connector.failure
            if not ok or self._connector.connection is None:
                raise Timeout(f"not connected to {self.url} within {timeout}s")

    def sync(self, db: Database, *, remote_name: str | None = None, credentials: Any = None,
             live: bool = False, direction: str = "both",
             doc_ids: Sequence[str] | None = None, selector: Mapping[str, Any] | None = None,
             batch_size: int = 500, checkpoint_interval: float | None = None) -> Sync:
        """Start syncing ``db`` with ``remote_name`` (default ``db.name``) on the server.

        ``batch_size`` docs travel per message (500 moves more docs per second than 100:
        bench/results.md; each batch stays bounded in bytes by the replicator).
        ``checkpoint_interval`` (seconds, default the client's): a one-shot sync, and a
        live sync once caught up, records its checkpoint at most that often (±25 %
        jitter, so many clients do not all write on the same change; 0: after every
        batch), when it falls due (a live sync's timer), and when it ends, is cancelled
        or closed. A sync killed in between
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
        sync.start()
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
                lambda: self._closed or self._connector.failure is not None or bool(self._live()),
                timeout)
            if self._closed:
                raise PouchSyncError("the client is closed")
            if self._connector.failure is not None:
                raise self._connector.failure
            connection = self._connector.connection
            if not ok or connection is None:
                raise Timeout(f"not connected to {self.url} within {timeout}s")
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
        self._connector.stop(max(0.0, deadline - time.monotonic()) + self.connect_timeout)
        if not already:
            log.info("client closed")

    end = close
    destroy = close

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- host.SyncHost: what its syncs use -----------------------------------------------
    @property
    def failure(self) -> PouchSyncError | None:
        """The error that made the client give up reconnecting, else ``None``."""
        with self._cond:
            return self._connector.failure

    def wait_connection(self, sync: HostedSync,
                        avoid: Link | None) -> Link | None:
        """A live connection other than ``avoid``, or ``None`` once ``sync`` is cancelled,
        the client is closed or it gave up reconnecting."""
        with self._cond:
            while not (sync.cancelled or self._closed or self._connector.failure is not None):
                connection = self._live(avoid)
                if connection is not None:
                    return connection
                self._cond.wait(self.ping_interval)  # woken on every change
            return None

    def _live(self, avoid: Link | None = None) -> Link | None:
        """Under the lock: the connection, unless it is lost or ``avoid``."""
        connection = self._connector.connection
        if connection is None or connection is avoid or connection.lost.is_set():
            return None
        return connection

    def wake(self) -> None:
        """Wake every ``wait_connection`` to look again (a sync was cancelled)."""
        with self._cond:
            self._cond.notify_all()

    def jitter(self) -> float:
        """The ``random`` given (a number in [0, 1)), for a backoff delay's jitter."""
        return self._random()

    def sync_finished(self, sync: HostedSync) -> None:
        """``sync`` ended: no longer one of ``syncs``."""
        with self._cond:
            self._syncs = [s for s in self._syncs if s is not sync]

    # -- the connection thread's (reconnect.py) ----------------------------------------
    def _open_link(self, url: str, on_opening: Callable[[Opening | None], None]) -> Link:
        """Connect to ``url``: the socket, the hello and the welcome (or raise ours)."""
        return Link.open(
            url, timeout=self.connect_timeout, clock=self._clock,
            call_timeout=self.call_timeout, transport=self._transport,
            on_opening=on_opening)

    def _connection_lost(self, connection: Link) -> None:
        """Tell every sync that ``connection`` died, so its round stops at once."""
        with self._cond:
            syncs = list(self._syncs)
        for sync in syncs:
            sync.connection_lost(connection)


def create_client(**options: Any) -> Client:
    """A new ``Client``; see ``Client`` for the options."""
    return Client(**options)
