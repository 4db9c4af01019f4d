"""The server's process-wide worker pool, and each socket's lane into it.

``WorkerPool``: a bounded pool whose threads are created only when work waits and end
after ``idle_exit`` seconds idle, so a quiet server holds none. One per ``SyncServer``:
``on_request``, calls and live pushes of every socket run here, never on a socket's
own threads, so a socket costs no worker thread while it has nothing to do.

``Lane``: a socket's share of it (``workers`` tasks at most at once, round robin with
the other sockets), so one socket's slow calls cannot take the whole pool.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any, Callable

__all__ = ["WorkerPool", "Lane"]

log = logging.getLogger(__name__)

#: a queued call: the function and its arguments
_Task = tuple[Callable[..., Any], tuple[Any, ...]]

#: a thread idle this long ends (a new one starts when work comes); close() wakes all
IDLE_EXIT = 2.0


class WorkerPool:
    """Up to ``size`` threads named ``<name>-<n>``, started lazily, joined by ``close``."""

    def __init__(self, size: int, name: str, idle_exit: float = IDLE_EXIT) -> None:
        if size < 1:
            raise ValueError("a pool needs at least one worker")
        self.size = size
        self.name = name
        self._cond = threading.Condition()
        self._tasks: collections.deque[_Task] = collections.deque()
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


class Lane:
    """One socket's share of the process-wide ``WorkerPool``: at most ``limit`` of its
    tasks run at once, the others wait in order, and after each task the lane goes to
    the back of the pool's queue (so a socket with much work does not starve the
    others). ``close()`` drops what waits and waits for what runs. Thread-safe."""

    def __init__(self, pool: WorkerPool, limit: int, name: str) -> None:
        if limit < 1:
            raise ValueError("a lane needs a limit of at least one task")
        self.pool = pool
        self.limit = limit
        self.name = name
        self._cond = threading.Condition()
        self._tasks: collections.deque[_Task] = collections.deque()
        self._running = 0
        self._closed = False

    @property
    def running(self) -> int:
        with self._cond:
            return self._running

    def submit(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Queue ``fn(*args)``; ``False`` when the lane is closed (nothing queued)."""
        with self._cond:
            if self._closed:
                return False
            self._tasks.append((fn, args))
            if self._running >= self.limit:
                return True
            self._running += 1
        if not self.pool.submit(self._one):
            self._done()
        return True

    def _one(self) -> None:
        with self._cond:
            if self._closed or not self._tasks:
                task = None
            else:
                task = self._tasks.popleft()
        if task is not None:
            fn, args = task
            try:
                fn(*args)
            except Exception:  # the task's own handler failed: log, keep the lane
                log.exception("task %r failed in %s", getattr(fn, "__name__", fn), self.name)
        with self._cond:
            again = bool(self._tasks) and not self._closed
        if not again or not self.pool.submit(self._one):  # else: to the back of the queue
            self._done()

    def _done(self) -> None:
        with self._cond:
            self._running -= 1
            if self._tasks and not self._closed and self._running < self.limit:
                self._running += 1  # work came in while this slot was ending
                restart = True
            else:
                restart = False
                self._cond.notify_all()
        if restart and not self.pool.submit(self._one):
            self._done()

    def close(self, timeout: float = 10.0) -> bool:
        """Drop queued tasks and wait up to ``timeout`` for running ones; True when none
        runs any more. Idempotent; must not be called from one of the lane's tasks."""
        with self._cond:
            self._closed = True
            self._tasks.clear()
            return self._cond.wait_for(lambda: self._running == 0, timeout)
