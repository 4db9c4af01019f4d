"""A live round of a ``Sync``: both directions on the sync's one thread.

Theory of operation. Each direction's ``Replicator`` is driven by its steps (``open``,
``catch_up``, ``listen``, ``finish``) instead of ``run()``, so an idle live sync holds
one thread, the sync's own, waiting on one ``Wake``:

1. open every direction, arm its wake-up (``listen``) and catch it up (normal reads,
   with a read-ahead thread only while a backlog moves);
2. wait for the wake-up: a batch on the pull's subscription (rung by the connection's
   reader thread), a write to the local database (rung by the writer, through its
   ``Notifier``), the round's stop (cancel, a lost connection), or a direction's
   re-read falling due: every ``poll_interval`` of its own (the local store's
   ``local_poll_interval``, for other processes' writes; the server's
   ``longpoll_timeout``, the read a longpoll does when its wait ends), or a deferred
   checkpoint falling due (``Replicator.checkpoint_due_in``: then it is recorded, so
   many live syncs that saw one change record theirs spread over time, not on it);
3. catch up the directions that were rung, re-arm, wait again.

It ends when the round's cancel event is set (returning normally) or a step fails
(the direction's error); every direction is then finished (its deferred checkpoint
recorded, best effort, on the still open channel) and its result returned.

Thread safety: ``run`` on the sync's thread; ``Wake.ring`` from any thread.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..replication import ReplicationResult, Replicator

__all__ = ["LiveRound", "Wake"]

log = logging.getLogger(__name__)

#: the longest wait without a look at the round (every wait has a timeout)
IDLE_SLICE = 30.0


class Wake:
    """What woke the round: the names rung since the last ``take``. Thread-safe."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._rung: set[str] = set()

    def ring(self, name: str) -> None:
        with self._cond:
            self._rung.add(name)
            self._cond.notify_all()

    def take(self, timeout: float) -> set[str]:
        """The names rung (waiting up to ``timeout`` seconds for one), cleared."""
        with self._cond:
            if not self._rung:
                self._cond.wait(timeout)
            rung, self._rung = self._rung, set()
            return rung


class LiveRound:
    """Runs the directions ``[(name, replicator, poll_interval), ...]`` live until
    ``cancel`` is set or one fails; see the module docstring."""

    def __init__(self, directions: Sequence[tuple[str, Replicator, float]], *,
                 cancel: threading.Event, wake: Wake, on_stop: Callable[[], Any]) -> None:
        if any(not interval > 0 for _, _, interval in directions):
            raise ValueError("every poll interval must be > 0 seconds")
        self.directions = list(directions)
        self.on_stop = on_stop
        self.cancel = cancel
        self.wake = wake

    def run(self) -> dict[str, ReplicationResult]:
        """Replicate until stopped; every direction's result, by name."""
        failed: tuple[str, BaseException] | None = None
        opened: list[tuple[str, Replicator]] = []
        try:
            for name, replicator, _ in self.directions:
                opened.append((name, replicator))
                replicator.open()
                replicator.listen(functools.partial(self.wake.ring, name))
            failed = self._loop()
        except Exception as exc:  # noqa: BLE001 - opening failed: the round ends with it
            failed = (opened[-1][0], exc)
        if failed is not None:
            self.cancel.set()  # a live round is all or nothing: the others stop too
        self.on_stop()  # the finishing calls below get STOP_GRACE seconds
        results = {}
        for name, replicator, _ in self.directions:
            error = failed[1] if failed is not None and failed[0] == name else None
            results[name] = replicator.finish(error)
        return results

    def _loop(self) -> tuple[str, BaseException] | None:
        """Catch up, wait, catch up...; the direction that failed and its error, or None."""
        rung = {name for name, _, _ in self.directions}
        woken = False
        now = time.monotonic()
        due = {name: now + interval for name, _, interval in self.directions}
        while not self.cancel.is_set():
            for name, replicator, interval in self.directions:
                if name not in rung:
                    continue
                try:
                    if not replicator.catch_up(woken=woken):
                        return None  # cancelled
                    replicator.listen(functools.partial(self.wake.ring, name))
                except Exception as exc:  # noqa: BLE001 - reported through its result
                    return name, exc
                due[name] = time.monotonic() + interval
                if self.cancel.is_set():
                    return None
            woken = True
            waits = [max(0.0, min(due.values()) - time.monotonic()), IDLE_SLICE]
            waits += [at for _, replicator, _ in self.directions
                      if (at := replicator.checkpoint_due_in()) is not None]
            rung = self.wake.take(min(waits))
            now = time.monotonic()
            rung |= {name for name, at in due.items() if at <= now}
            for name, replicator, _ in self.directions:
                if replicator.checkpoint_due_in() == 0.0 and not self.cancel.is_set():
                    try:  # the deferred checkpoint's time came with no batch to record it
                        replicator.flush_checkpoint()
                    except Exception as exc:  # noqa: BLE001 - reported through its result
                        return name, exc
        return None
