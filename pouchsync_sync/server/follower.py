"""One change follower per database per server process, shared by every channel on it.

Theory of operation: a ``Follower`` thread longpolls ``db.changes(feed="longpoll",
since=last)`` (on CouchDB one open request; on the embedded store a wait on its
in-process notifier) and, each time it sees changes, bumps a generation counter under
a ``Condition`` and calls its listeners. Longpoll ``changes`` calls wait on that
generation (``wait``); subscriptions register a listener that schedules their push.
Neither reads the changes from the follower: each runs its own *normal* ``changes``
call afterwards, with its own filters, so the follower only says "something changed".
N live clients on one database therefore cost one longpoll on the database.

Correctness: the follower's starting point is read synchronously (``since="now"``)
before anyone waits on it, so every write after a waiter's own read is seen by the
follower and wakes the waiter.

Shared reads (``shared_read``): after a change, every subscription of the database
reads ``changes`` from where it is, most of them from the same ``since`` with the same
options. The first of them reads; the others with the same key, in the same
generation, take its answer (one read instead of one per subscriber). That is safe
because the answer was read after the generation began: a write it missed bumps the
generation again, and every listener reads afresh.

``FollowerRegistry`` keys followers by ``db.identity()`` with a count of the channels
using each; the last release stops it. ``close()`` stops and joins all of them. Given
the server's pool and timer, it follows embedded databases with a ``LocalFollower``
(localfollower.py), which does the same without a thread.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from typing import TYPE_CHECKING, Any, Callable

from ..store.base import Database
from ..store.notify import notifier_of

if TYPE_CHECKING:  # pragma: no cover
    from .fanout import FanOut
    from .pool import WorkerPool
    from .timer import Timer

__all__ = ["Follower", "FollowerRegistry"]

log = logging.getLogger(__name__)

_MAX_BACKOFF = 30.0
#: follower longpoll timeouts when the server's ``follow_timeout`` is None
EMBEDDED_POLL = 0.5
REMOTE_POLL = 5.0


def default_poll_timeout(db: Database) -> float:
    """Short on the embedded store (cheap, and stop() stays quick), longer elsewhere."""
    from ..store.local import LocalDatabase

    return EMBEDDED_POLL if isinstance(db, LocalDatabase) else REMOTE_POLL


_SHARED_WAIT = 30.0  # longest wait for another reader's shared read (then read alone)


class _SharedRead:
    """One read in flight or done, for every reader with the same key."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class Follower:
    """Follows one database's changes feed. Thread-safe."""

    def __init__(self, db: Database, key: str, *, poll_timeout: float, limit: int = 500) -> None:
        self.db = db
        self.key = key
        self.poll_timeout = poll_timeout
        self.limit = limit
        self.refs = 0  # guarded by the registry's lock
        self._cond = threading.Condition()
        self._generation = 0
        self._listeners: dict[int, Callable[[], None]] = {}
        self._tokens = itertools.count(1)
        self._stop = threading.Event()
        self._start_lock = threading.Lock()
        self._since: Any = None
        self.thread: threading.Thread | None = None
        self._reads: dict[Any, _SharedRead] = {}
        self._reads_generation = -1
        self.shared_reads = 0  # reads answered from another reader's read
        #: the live subscriptions' one listener (fanout.py), made by the first of them
        self.fanout: FanOut | None = None

    # -- lifecycle ----------------------------------------------------------------------
    def ensure_started(self) -> None:
        """Read the starting point and start the thread (once). May raise the db's error."""
        with self._start_lock:
            if self.thread is not None:
                return
            self._since = self.db.changes(since="now")["last_seq"]
            self.thread = threading.Thread(target=self._run, daemon=True,
                                           name=f"pouchsync-follower[{self.db.name}]")
            self.thread.start()
            log.debug("follower for %s started at %r", self.db.name, self._since)

    def stop(self) -> None:
        self._stop.set()
        self.wake()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def join(self, timeout: float) -> bool:
        """True when the thread has ended (or never started)."""
        thread = self.thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def alive(self) -> bool:
        """Started and not yet ended."""
        return self.thread is not None and self.thread.is_alive()

    @property
    def label(self) -> str:
        """How ``close`` names it when it does not stop."""
        return self.thread.name if self.thread is not None else self.key

    def _run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                result = self.db.changes(feed="longpoll", since=self._since,
                                         timeout=self.poll_timeout, limit=self.limit)
            except Exception as exc:  # noqa: BLE001 - the thread's top frame: back off, retry
                if self._stop.is_set():
                    break
                log.warning("change follower for %s failed (%s); retrying in %.1f s",
                            self.db.name, exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, _MAX_BACKOFF)
                continue
            delay = 0.5
            if result.get("last_seq") is not None:
                self._since = result["last_seq"]
            if result.get("results"):
                self._notify()
        log.debug("follower for %s stopped", self.db.name)

    # -- waiting and listening ----------------------------------------------------------
    @property
    def generation(self) -> int:
        with self._cond:
            return self._generation

    def wait(self, generation: int, timeout: float, cancelled: Callable[[], bool]) -> bool:
        """Wait until a change after ``generation``, ``cancelled()`` or ``timeout``.

        True when there was a change.
        """
        with self._cond:
            self._cond.wait_for(lambda: self._generation != generation or cancelled()
                                or self._stop.is_set(), timeout)
            return self._generation != generation

    def shared_read(self, generation: int, key: Any, read: Callable[[], Any]) -> Any:
        """``read()``, or the answer of a read with the same ``key`` begun in the same
        ``generation`` (read ``generation`` before calling). Raises what ``read`` raises."""
        with self._cond:
            if self._reads_generation != generation:
                self._reads = {}
                self._reads_generation = generation
            flight = self._reads.get(key)
            mine = flight is None
            if mine:
                flight = self._reads[key] = _SharedRead()
        assert flight is not None
        if not mine:
            if flight.done.wait(_SHARED_WAIT) and flight.error is None:
                with self._cond:
                    self.shared_reads += 1
                return flight.result
            return read()  # it failed or is stuck: read on our own
        try:
            flight.result = read()
        except BaseException as exc:
            flight.error = exc
            with self._cond:
                if self._reads.get(key) is flight:
                    del self._reads[key]
            raise
        finally:
            flight.done.set()
        return flight.result

    def wake(self) -> None:
        """Make waiters re-check their ``cancelled`` (no change is reported)."""
        with self._cond:
            self._cond.notify_all()

    def add_listener(self, fn: Callable[[], None]) -> int:
        """Call ``fn()`` (on the follower's thread; it must not block) after each change."""
        with self._cond:
            token = next(self._tokens)
            self._listeners[token] = fn
            return token

    def remove_listener(self, token: int) -> None:
        with self._cond:
            self._listeners.pop(token, None)

    def _notify(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()
            listeners = list(self._listeners.values())
        for fn in listeners:  # outside the lock
            try:
                fn()
            except Exception:
                log.exception("change listener failed for %s", self.db.name)


class FollowerRegistry:
    """The server's followers by database identity. Thread-safe."""

    def __init__(self, *, poll_timeout: float | None, limit: int = 500,
                 pool: WorkerPool | None = None, timer: Timer | None = None) -> None:
        self.poll_timeout = poll_timeout
        self.limit = limit
        #: with both, embedded databases get a ``LocalFollower`` (no thread)
        self.pool = pool
        self.timer = timer
        self._lock = threading.Lock()
        self._followers: dict[str, Follower] = {}
        self._started: list[Follower] = []
        self._closed = False
        self.started_total = 0

    def acquire(self, db: Database) -> Follower:
        """The running follower of ``db`` (started if needed), counted as used once more.

        Release it with ``release``. Raises what the database raises when the follower
        cannot read its starting point, or ``RuntimeError`` after ``close``.
        """
        key = db.identity()
        with self._lock:
            if self._closed:
                raise RuntimeError("the server is stopping")
            follower = self._followers.get(key)
            if follower is None:
                follower = self._make(db, key)
                self._followers[key] = follower
            follower.refs += 1
        try:
            follower.ensure_started()
        except BaseException:
            self.release(follower)
            raise
        with self._lock:
            self._started = [f for f in self._started if f is follower or f.alive()]
            if follower not in self._started:
                self._started.append(follower)
                self.started_total += 1
        return follower

    def _make(self, db: Database, key: str) -> Follower:
        timeout = self.poll_timeout or default_poll_timeout(db)
        notifier = notifier_of(db)
        if notifier is not None and self.pool is not None and self.timer is not None:
            from .localfollower import LocalFollower
            path = getattr(db, "path", None)
            if not isinstance(path, str) or path == ":memory:" \
                    or path.startswith("file::memory:"):
                path = None  # in memory: no file to share
            return LocalFollower(db, key, notifier,
                                 path=os.path.realpath(path) if path is not None else None,
                                 poll_timeout=timeout, limit=self.limit, pool=self.pool,
                                 timer=self.timer)
        return Follower(db, key, poll_timeout=timeout, limit=self.limit)

    def release(self, follower: Follower) -> None:
        with self._lock:
            follower.refs -= 1
            if follower.refs > 0:
                return
            if self._followers.get(follower.key) is follower:
                del self._followers[follower.key]
        follower.stop()

    def active(self) -> int:
        """Followers in use (one per database followed)."""
        with self._lock:
            return len(self._followers)

    def close(self, grace: float) -> list[str]:
        """Stop every follower and join its thread (waiting up to its poll timeout plus
        ``grace``); names of threads still alive."""
        with self._lock:
            self._closed = True
            followers = list(self._followers.values()) + self._started
            self._followers.clear()
        for follower in followers:
            follower.stop()
        alive = []
        for follower in followers:
            if not follower.join(follower.poll_timeout + grace):
                alive.append(follower.label)
        with self._lock:
            self._started = [f for f in self._started if f.alive()]
        return sorted(set(alive))
