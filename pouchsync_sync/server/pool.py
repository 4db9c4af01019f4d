"""A small bounded thread pool whose threads are created only when work waits.

One per socket: ``on_request``, calls and live pushes of that socket run here, so a
slow one never blocks the socket's reader, and the socket never holds more than
``size`` threads. ``close()`` drops queued work, wakes idle threads and joins them.
Thread-safe.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any, Callable

__all__ = ["WorkerPool"]

log = logging.getLogger(__name__)

#: idle threads re-check the pool this often (close() also wakes them at once)
_IDLE_WAIT = 30.0


class WorkerPool:
    """Up to ``size`` threads named ``<name>-<n>``, started lazily, joined by ``close``."""

    def __init__(self, size: int, name: str) -> None:
        if size < 1:
            raise ValueError("a pool needs at least one worker")
        self.size = size
        self.name = name
        self._cond = threading.Condition()
        self._tasks: collections.deque[tuple[Callable[..., Any], tuple[Any, ...]]] = collections.deque()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._closed = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Queue ``fn(*args)``; ``False`` when the pool is closed (nothing queued)."""
        with self._cond:
            if self._closed:
                return False
            self._tasks.append((fn, args))
            if len(self._tasks) > self._idle and len(self._threads) < self.size:
                thread = threading.Thread(target=self._work, daemon=True,
                                          name=f"{self.name}-{len(self._threads) + 1}")
                self._threads.append(thread)
                thread.start()
            else:
                self._cond.notify()
            return True

    @property
    def threads(self) -> int:
        with self._cond:
            return len(self._threads)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._tasks and not self._closed:
                    self._idle += 1
                    try:
                        self._cond.wait(_IDLE_WAIT)
                    finally:
                        self._idle -= 1
                if not self._tasks:
                    return
                fn, args = self._tasks.popleft()
            try:
                fn(*args)
            except Exception:  # the task's own handler failed: log, keep the worker
                log.exception("task %r failed in %s", getattr(fn, "__name__", fn), self.name)

    def close(self, timeout: float = 10.0) -> list[str]:
        """Drop queued work, let running tasks finish and join every thread.

        Returns the names of threads still running after ``timeout`` (should be none).
        Idempotent; must not be called from one of the pool's own threads.
        """
        with self._cond:
            self._closed = True
            self._tasks.clear()
            self._cond.notify_all()
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)
        return [t.name for t in threads if t.is_alive()]
