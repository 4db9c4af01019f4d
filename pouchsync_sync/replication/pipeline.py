"""Read ahead on a thread: run a producer's iterator on ``pouchsync-replicate-reader``
and hand its items to the consuming thread over a bounded queue.

The replicator's read side (changes, ``revs_diff``, ``bulk_get``) runs here while the
running thread uploads and checkpoints, so network waits on one side overlap with work
on the other. The queue holds at most ``depth`` items (each one byte-bounded chunk of
docs or a marker), which bounds memory. Exceptions in the producer are re-raised on the
consumer's thread. Thread-safety: one producer thread, one consumer thread.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from typing import Any, Callable

__all__ = ["Prefetcher"]

log = logging.getLogger(__name__)

_POLL = 0.25  # seconds between checks of the stop flag while blocked on the queue


class _End:
    """The producer's iterator finished."""


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class Prefetcher:
    """Owns the reader thread: ``start()``, iterate, ``close()`` (idempotent, joins)."""

    def __init__(self, produce: Callable[[threading.Event], Iterator[Any]], *, depth: int,
                 name: str, join_timeout: float) -> None:
        self._produce = produce
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._join_timeout = join_timeout
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Prefetcher:
        self._thread.start()
        return self

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._produce(self._stop):
                if not self._put(item):
                    return
            self._put(_End())
        except BaseException as exc:  # noqa: BLE001 - top frame of the thread: hand it on
            self._put(_Failed(exc))

    def items(self, should_stop: Callable[[], bool]) -> Iterator[Any]:
        """Yield the producer's items in order; end early once ``should_stop()``."""
        while True:
            try:
                item = self._queue.get(timeout=_POLL)
            except queue.Empty:
                if should_stop() or not self._thread.is_alive() and self._queue.empty():
                    return
                continue
            if isinstance(item, _End):
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item

    def close(self) -> None:
        """Stop the producer, drop what it queued, join it."""
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread.ident is not None:
            self._thread.join(self._join_timeout)
            if self._thread.is_alive():
                log.warning("%s did not stop within %.1f s", self._thread.name,
                            self._join_timeout)
