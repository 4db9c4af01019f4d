"""A small bounded thread pool whose threads are created only when work waits.

One per socket: ``on_request``, calls and live pushes of that socket run here, so a
slow one never blocks the socket's reader, and the socket never holds more than
``size`` threads; a thread idle for ``idle_exit`` seconds ends, so a quiet live socket
holds none. ``close()`` drops queued work, wakes idle threads and joins them.
Thread-safe.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any, Callable

__all__ = ["WorkerPool"]

log = logging.getLogger(__name__)

#: a thread idle this long ends (a new one starts when work comes); close() wakes all
IDLE_EXIT = 30.0


class WorkerPool:
    """Up to ``size`` threads named ``<name>-<n>``, started lazily, joined by ``close``."""

    def __init__(self, size: int, name: str, idle_exit: float = IDLE_EXIT) -> None:
        if size < 1:
            raise ValueError("a pool needs at least one worker")
        self.size = size
        self.name = name
        self._cond = threading.Condition()
        self._tasks: collections.deque[tuple[Callable[..., Any], tuple[Any, ...]]] = collections.deque()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._closed = False
        self._idle_exit = idle_exit
        self._started = 0

    def submit(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Queue ``fn(*args)``; ``False`` when the pool is closed (nothing queued)."""
        with self._cond:
            if self._closed:
                return False
            self._tasks.append((fn, args))
            if len(self._tasks) > self._idle and len(self._threads) < self.size:
                self._started += 1
                thread = threading.Thread(target=self._work, daemon=True,
                                          name=f"{self.name}-{self._started}")
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
                        woken = self._cond.wait(self._idle_exit)
                    finally:
                        self._idle -= 1
                    if not woken and not self._tasks and not self._closed:
                        self._threads.remove(threading.current_thread())  # idle: end
                        return
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
