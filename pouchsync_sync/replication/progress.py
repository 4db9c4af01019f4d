"""The observable state of one replication, shared between its running thread and
any thread that watches it (``state``, ``pending``, ``wait_caught_up``).

The lifecycle is a transition table; an illegal move raises ``ProtocolError`` naming
both states. "Caught up" is tracked with read tickets: every changes read takes the
next ticket when it starts; when everything that read returned is written and
checkpointed and it found nothing new, its ticket is recorded. A waiter that took the
current ticket count on entry is satisfied by any later recorded ticket. All methods
are thread-safe; none calls out while holding the lock.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from ..errors import PouchSyncError, ProtocolError

__all__ = ["STATES", "Progress"]

STATES = ("idle", "active", "paused", "complete", "cancelled", "error")

#: state -> states it may move to; "complete", "cancelled" and "error" are final
TRANSITIONS: dict[str, frozenset[str]] = {
    "idle": frozenset({"active", "cancelled", "error"}),
    "active": frozenset({"paused", "complete", "cancelled", "error"}),
    "paused": frozenset({"active", "complete", "cancelled", "error"}),
}


class Progress:
    """Lifecycle state, ``pending`` and the caught-up bookkeeping of one replication."""

    def __init__(self, start_seq: Any = 0) -> None:
        self._cond = threading.Condition()
        self._state = "idle"
        self._pending: int | None = None
        self._generation = 0          # bumped on every change a waiter may care about
        self._reads_started = 0       # ticket of the latest changes read begun
        self._caught_up_ticket = 0    # ticket of the latest read that found nothing new
        self._done_seq: Any = start_seq  # everything up to here is written and checkpointed
        self._claimed = False         # the run has started (it runs once)

    @property
    def state(self) -> str:
        with self._cond:
            return self._state

    @property
    def pending(self) -> int | None:
        with self._cond:
            return self._pending

    @property
    def claimed(self) -> bool:
        """The run has started."""
        with self._cond:
            return self._claimed

    def claim(self) -> None:
        """The run starts: ``PouchSyncError`` when it already did (a run happens once)."""
        with self._cond:
            if self._claimed:
                raise PouchSyncError("a Replicator runs once; create a new one")
            self._claimed = True

    def move(self, new: str) -> bool:
        """Change the state; False when it already was ``new``."""
        with self._cond:
            old = self._state
            if new == old:
                return False
            if new not in TRANSITIONS.get(old, frozenset()):
                raise ProtocolError(f"replicator in state {old!r} cannot become {new!r}")
            self._state = new
            self._bump()
        return True

    def begin_read(self) -> int:
        """A changes read starts: its ticket."""
        with self._cond:
            self._reads_started += 1
            return self._reads_started

    def batch_done(self, seq: Any, pending: Any) -> None:
        """Everything up to ``seq`` is written (and checkpointed, or its checkpoint
        deferred by a live run)."""
        with self._cond:
            self._done_seq = seq
            if pending is not None:
                self._pending = pending
            self._bump()

    def set_pending(self, pending: Any) -> None:
        with self._cond:
            self._pending = pending

    def caught_up(self, ticket: int) -> None:
        """The read with ``ticket`` found nothing new and all before it is done."""
        with self._cond:
            if ticket > self._caught_up_ticket:
                self._caught_up_ticket = ticket
            self._bump()

    def wait_caught_up(self, timeout: float, probe: Callable[[Any], bool]) -> bool:
        """True once a read begun after this call found nothing new, or the run is
        complete; while paused, ``probe(done_seq)`` (run on this thread, outside the
        lock) may also say that nothing came after the checkpoint. False on timeout,
        cancel or error.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            ticket = self._reads_started
        probed: int | None = None
        while True:
            with self._cond:
                while True:
                    if self._caught_up_ticket > ticket or self._state == "complete":
                        return True
                    if self._state in ("cancelled", "error"):
                        return False
                    if self._state == "paused" and probed != self._generation:
                        probed = self._generation
                        since = self._done_seq
                        break
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining)
            if probe(since):
                return True

    def _bump(self) -> None:
        self._generation += 1
        self._cond.notify_all()
