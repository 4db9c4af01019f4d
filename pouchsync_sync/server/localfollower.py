"""A change follower for the embedded store that holds no thread.

Theory of operation. The thread of a ``Follower`` spends its life in a longpoll, which
on the embedded store is a wait on the file's in-process ``Notifier`` plus a re-read
every 0.25 s for writers in other processes. ``LocalFollower`` does the same work
without the thread, so a server with one database per user costs no thread per
database: a listener on the notifier (a write through any ``LocalDatabase`` of the
file in this process) and a look at the file's size and mtime (and its ``-wal``'s)
every ``poll_timeout`` seconds on the server's ``Timer`` (a write from another process)
each schedule one read of ``changes`` since the last one on the server's pool
(coalesced: at most one queued or running, re-run when rung meanwhile). Rows found →
the generation moves and listeners are called, exactly as the threaded follower does.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any

from ..store.base import Database
from ..store.notify import Notifier
from .follower import Follower

if TYPE_CHECKING:  # pragma: no cover
    from .pool import WorkerPool
    from .timer import Timer, TimerEntry

__all__ = ["LocalFollower"]

log = logging.getLogger(__name__)


def file_stamp(path: str | None) -> tuple[Any, ...]:
    """What changes when any process commits to the SQLite file at ``path``."""
    if path is None:
        return ()
    stamp: list[Any] = []
    for name in (path, path + "-wal"):
        try:
            st = os.stat(name)
        except OSError:
            stamp.append(None)
        else:
            stamp.append((st.st_mtime_ns, st.st_size))
    return tuple(stamp)


class LocalFollower(Follower):
    """Follows one embedded database on the server's pool and timer. Thread-safe."""

    def __init__(self, db: Database, key: str, notifier: Notifier, *, path: str | None,
                 poll_timeout: float, limit: int, pool: WorkerPool, timer: Timer) -> None:
        super().__init__(db, key, poll_timeout=poll_timeout, limit=limit)
        self._notifier = notifier
        self._path = path
        self._pool = pool
        self._timer = timer
        self._state = threading.Condition()
        self._started = False
        self._scheduled = False
        self._rung = False
        self._token: int | None = None
        self._poll: TimerEntry | None = None
        self._stamp: tuple[Any, ...] = ()

    def ensure_started(self) -> None:
        with self._start_lock:
            if self._started:
                return
            self._stamp = file_stamp(self._path)
            self._since = self.db.changes(since="now")["last_seq"]
            self._token = self._notifier.add_listener(self._schedule)
            if self._path is not None:
                self._poll = self._timer.call_every(self.poll_timeout, self._look)
            self._started = True
            log.debug("follower for %s started at %r (no thread)", self.db.name, self._since)
        self._schedule()  # a write between the stamp and the listener is read now

    def _look(self) -> None:
        """On the timer: has any process written to the file since the last look?"""
        stamp = file_stamp(self._path)
        if stamp != self._stamp:
            self._stamp = stamp
            self._schedule()

    def _schedule(self) -> None:
        with self._state:
            if self.stopping:
                return
            if self._scheduled:
                self._rung = True
                return
            self._scheduled = True
        if not self._pool.submit(self._read):
            self._finished()

    def _read(self) -> None:
        while not self.stopping:
            with self._state:
                self._rung = False
            try:
                result = self.db.changes(since=self._since, limit=self.limit)
            except Exception as exc:  # noqa: BLE001 - a pool task's top frame: the next write or look tries again
                log.warning("change follower for %s failed (%s)", self.db.name, exc)
                break
            rows = result.get("results") or []
            if result.get("last_seq") is not None:
                self._since = result["last_seq"]
            if rows:
                self._notify()
            with self._state:  # rung meanwhile, or more to read: again; else done, at once
                if not self._rung and len(rows) < self.limit:
                    self._scheduled = False
                    self._state.notify_all()
                    return
        self._finished()

    def _finished(self) -> None:
        with self._state:
            self._scheduled = False
            self._state.notify_all()

    def stop(self) -> None:
        super().stop()
        token, self._token = self._token, None
        if token is not None:
            self._notifier.remove_listener(token)
        poll, self._poll = self._poll, None
        if poll is not None:
            poll.cancel()

    def alive(self) -> bool:
        with self._state:
            return self._started and (not self.stopping or self._scheduled)

    def join(self, timeout: float) -> bool:
        """True once stopped and no read of it runs any more."""
        with self._state:
            return self._state.wait_for(lambda: not self._scheduled, timeout)

    @property
    def label(self) -> str:
        return f"follower[{self.db.name}]"
