"""The server's one timer thread: callbacks at a time, without a thread per wait.

The thread starts with the first entry and ends after ``IDLE_EXIT`` seconds without any.

Longpoll ``changes`` calls wait for a change *or* their deadline; the deadline is a
``Timer.call_at`` entry, so a waiting longpoll holds no thread. The watchdog that
closes sockets whose sends are stuck (a peer that does not read) is a repeating entry.
Callbacks run on the timer thread and must be quick: they hand work to a pool.
Thread-safe; ``close()`` is idempotent and joins the thread.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from typing import Any, Callable

__all__ = ["Timer", "TimerEntry"]

log = logging.getLogger(__name__)

#: the thread ends after this many seconds without entries (the next entry starts one)
IDLE_EXIT = 2.0


class TimerEntry:
    """One scheduled callback; ``cancel()`` it (any thread, idempotent)."""

    __slots__ = ("when", "fn", "interval", "cancelled", "_timer")

    def __init__(self, when: float, fn: Callable[[], Any], interval: float | None,
                 timer: Timer | None = None) -> None:
        self.when = when
        self.fn = fn
        self.interval = interval
        self.cancelled = False
        self._timer = timer

    def cancel(self) -> None:
        self.cancelled = True
        timer = self._timer
        if timer is not None:
            timer._dropped(self)


class Timer:
    """A heap of ``TimerEntry`` served by one thread, started with the first entry."""

    def __init__(self, name: str = "pouchsync-server-timer") -> None:
        self.name = name
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, TimerEntry]] = []
        self._order = itertools.count()
        self._live = 0  # entries in the heap not cancelled
        self._closed = False
        self._thread: threading.Thread | None = None

    def call_at(self, when: float, fn: Callable[[], Any]) -> TimerEntry:
        """Call ``fn()`` at ``when`` (``time.monotonic()`` clock) unless cancelled."""
        return self._add(TimerEntry(when, fn, None, self))

    def call_later(self, delay: float, fn: Callable[[], Any]) -> TimerEntry:
        return self.call_at(time.monotonic() + delay, fn)

    def call_every(self, interval: float, fn: Callable[[], Any]) -> TimerEntry:
        """Call ``fn()`` every ``interval`` seconds until cancelled."""
        if interval <= 0:
            raise ValueError("interval must be > 0 seconds")
        return self._add(TimerEntry(time.monotonic() + interval, fn, interval, self))

    def _add(self, entry: TimerEntry) -> TimerEntry:
        with self._cond:
            if self._closed:
                entry.cancelled = True
                entry._timer = None
                return entry
            heapq.heappush(self._heap, (entry.when, next(self._order), entry))
            self._live += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            elif self._heap[0][2] is entry:  # earlier than what the thread waits for
                self._cond.notify()
        return entry

    def _dropped(self, entry: TimerEntry) -> None:
        """An entry was cancelled: once none is left, the heap empties (and the thread
        may end) instead of waiting for the cancelled entries' times."""
        with self._cond:
            if entry._timer is None:  # already ran, or counted out before
                return
            entry._timer = None
            self._live -= 1
            if self._live <= 0:
                self._live = 0
                self._heap.clear()
                self._cond.notify()

    @property
    def pending(self) -> int:
        """Entries scheduled and not cancelled."""
        with self._cond:
            return self._live

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    if self._heap and self._heap[0][0] <= time.monotonic():
                        break
                    if self._heap:
                        self._cond.wait(self._heap[0][0] - time.monotonic())
                    elif not self._cond.wait(IDLE_EXIT) and not self._heap:
                        self._thread = None  # idle: end; the next entry starts a thread
                        return
                if self._closed:
                    return
                _, _, entry = heapq.heappop(self._heap)
                if entry.cancelled:
                    continue
                if entry.interval is None:
                    entry._timer = None  # ran: a later cancel() changes nothing
                    self._live -= 1
                else:
                    entry.when += entry.interval
                    heapq.heappush(self._heap, (entry.when, next(self._order), entry))
            try:  # outside the lock: a callback may schedule or cancel entries
                entry.fn()
            except Exception:  # a callback's own failure: log it, keep the timer
                log.exception("timer callback %r failed", entry.fn)

    def close(self, timeout: float = 5.0) -> bool:
        """Drop every entry and join the thread; True when it has ended."""
        with self._cond:
            self._closed = True
            for _, _, entry in self._heap:
                entry._timer = None
            self._heap.clear()
            self._live = 0
            self._cond.notify_all()
            thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()
