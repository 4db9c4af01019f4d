"""Group commit: concurrent small writes share one SQLite transaction.

A live server holds one ``LocalDatabase`` for many channels, and each live replication
records its checkpoint (a ``_local`` doc) after every batch. One change fanned out to a
thousand live syncs thus brings a thousand checkpoint writes at once. One by one, each
is its own ``BEGIN IMMEDIATE … COMMIT`` under the store's lock, most of its cost the
transaction itself, so the last writer waited for all the others' commits (measured in
bench/results.md, "Checkpoint writes at once"; ``bench/bench_checkpoints.py``).

``GroupCommit.write`` queues the item, then takes the store's lock. Whoever gets the
lock writes *everything queued so far* in one transaction and hands each writer its own
result; a writer whose item was written meanwhile returns at once. Nobody waits on
anybody but the lock, nobody writes more than one batch (no starvation), and every
result (or the error that rolled the batch back) is in place before the lock is
released, so nobody sees a result that was not committed.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Callable, Generic, TypeVar

__all__ = ["GroupCommit"]

Item = TypeVar("Item")

_PENDING = object()


class _Slot(Generic[Item]):
    __slots__ = ("item", "outcome")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.outcome: Any = _PENDING  # the result, or the exception that undid the batch


class GroupCommit(Generic[Item]):
    """Writes items through ``write_batch`` (one transaction for a list of items, giving
    one result per item, or raising after rolling back) under ``lock``, the store's own
    lock, batching the writers that queue up behind it. Thread-safe."""

    def __init__(self, lock: threading.RLock,
                 write_batch: Callable[[Sequence[Item]], Sequence[Any]]) -> None:
        self._lock = lock
        self._write_batch = write_batch
        self._queue_lock = threading.Lock()
        self._queue: list[_Slot[Item]] = []

    def queued(self) -> int:
        """How many writes wait for the lock (for stats and tests)."""
        with self._queue_lock:
            return len(self._queue)

    def write(self, item: Item) -> Any:
        """``item``'s result; raises what rolled back the batch that held it."""
        slot = _Slot(item)
        with self._queue_lock:
            self._queue.append(slot)
        with self._lock:
            if slot.outcome is _PENDING:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                try:
                    results = self._write_batch([s.item for s in batch])
                except BaseException as exc:  # noqa: BLE001 - rolled back: each writer re-raises it
                    for s in batch:
                        s.outcome = exc
                else:
                    for s, result in zip(batch, results):
                        s.outcome = result
        if isinstance(slot.outcome, BaseException):
            raise slot.outcome
        return slot.outcome
