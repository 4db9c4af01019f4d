"""One pool task per change for every subscription of a database (the live fan-out).

Theory of operation. Every live subscription on a database used to register its own
listener on the database's ``Follower``, so one change meant one task per subscriber
through its socket's ``Lane`` and the process-wide pool: a submit, a worker thread
woken, a hand-off of the GIL each, which cost more than the push itself once there
were thousands of them. ``FanOut`` is the follower's one listener for all of them: a
change schedules one task on the pool (coalesced: at most one queued or running,
re-run when rung meanwhile), which gives each subscription its next batch in turn
(``Live.push_from_fanout``): the read shared with every subscription at the same
place, the frame queued in its socket's ``Outbox`` under the session's lock and
written at once when the socket takes it (``send_now``), else left to the socket's
handler thread. A subscription whose socket is backlogged, or that has more to read
than one batch, or whose own task is already running, goes on as before on its lane:
the fan-out only saves the hand-offs of the common case (one small batch to a socket
that reads), never a check, a limit or the order of a socket's frames.
"""

from __future__ import annotations

import itertools
import logging
import threading
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from .follower import Follower
    from .live import Subscription
    from .pool import WorkerPool

__all__ = ["FanOut", "Pusher"]

log = logging.getLogger(__name__)

_CREATE = threading.Lock()  # makes one FanOut per follower (rare: a follower's first sub)


class Pusher(Protocol):
    """What the fan-out calls for each subscription (``Live`` of its socket)."""

    def push_from_fanout(self, sub: Subscription) -> None: ...


class FanOut:
    """The subscriptions of one follower, pushed by one pool task per change.
    Thread-safe."""

    def __init__(self, follower: Follower, pool: WorkerPool) -> None:
        self.follower = follower
        self.pool = pool
        self._lock = threading.Lock()
        self._subs: dict[int, tuple[Pusher, Subscription]] = {}
        self._tokens = itertools.count(1)
        self._scheduled = False
        self._rung = False
        self.runs = 0  # tasks run (one per change, or fewer when changes come together)
        follower.add_listener(self.ring)

    @classmethod
    def of(cls, follower: Follower, pool: WorkerPool) -> FanOut:
        """The fan-out of ``follower`` (made on first use)."""
        with _CREATE:
            fan = follower.fanout
            if fan is None:
                fan = follower.fanout = cls(follower, pool)
            return fan

    def add(self, pusher: Pusher, sub: Subscription) -> int:
        """Push ``sub`` after each change, through ``pusher``; a token for ``remove``."""
        with self._lock:
            token = next(self._tokens)
            self._subs[token] = (pusher, sub)
            return token

    def remove(self, token: int) -> None:
        with self._lock:
            self._subs.pop(token, None)

    @property
    def busy(self) -> bool:
        """A task of it is queued or running."""
        with self._lock:
            return self._scheduled

    def __len__(self) -> int:
        with self._lock:
            return len(self._subs)

    def ring(self) -> None:
        """A change (the follower's listener; never blocks): one task, coalesced."""
        with self._lock:
            if self._scheduled:
                self._rung = True
                return
            self._scheduled = True
            self._rung = False
        if not self.pool.submit(self._run):
            with self._lock:
                self._scheduled = False

    def _run(self) -> None:
        while True:
            with self._lock:
                self._rung = False
                subs = list(self._subs.values())
            self.runs += 1
            for pusher, sub in subs:
                try:
                    pusher.push_from_fanout(sub)
                except Exception:  # one socket's failure must not stop the others' pushes
                    log.exception("a live push failed; the other subscriptions go on")
            with self._lock:
                if not self._rung or self.follower.stopping:
                    self._scheduled = False
                    return
