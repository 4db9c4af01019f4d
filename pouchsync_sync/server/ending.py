"""The line a socket's threads end through, a few at a time.

When thousands of sockets drop at once (a network blip, a client host going down),
each one's two threads wake together and end together. Every ending takes locks the
whole process shares (a follower's fan-out, the server's set of sessions, CPython's own
table of threads in ``threading._delete``). With thousands of threads runnable, a
thread that gets such a lock must then wait for the GIL behind all of them before it
can use and release it, so the lock moves on about once per round of the GIL through
every runnable thread: the endings take time quadratic in their number (4,000 sockets
took 6 minutes, during which the server answered nobody; ``bench/bench_teardown.py``).

``EndingLine`` lets ``limit`` endings run at once and parks the others, each on a lock
of its own, so that they are not runnable and ask nothing of the GIL until their turn:
the shared locks see a handful of threads, and the endings take time linear in their
number. The line itself takes no shared lock: its free passes and its waiters are
deques (whose ``append``, ``popleft`` and ``remove`` are atomic under the GIL), and a
pass goes from the thread leaving straight to the first one waiting. A thread waits at
most ``patience`` seconds, then goes on without a pass: a stuck ending slows the
others, never stops them.

``Session`` takes a pass for the teardown of a socket whose transport is gone (a
graceful close waits for its peer first, outside the line), and the transport's reader
thread, once done reading, waits until that teardown lets it end
(``WebSocketServer.may_end``), so that it ends in the same turn.
"""

from __future__ import annotations

import _thread
import collections
import contextlib
from collections.abc import Iterator

__all__ = ["EndingLine", "ENDING_LIMIT", "ENDING_PATIENCE"]

#: endings at once (the GIL runs one; a few keep it busy while others wait on I/O)
ENDING_LIMIT = 4
#: the longest a thread waits for its turn before ending anyway, seconds
ENDING_PATIENCE = 30.0


class EndingLine:
    """At most ``limit`` holders of a pass at once; see the module. Thread-safe."""

    def __init__(self, limit: int = ENDING_LIMIT, patience: float = ENDING_PATIENCE) -> None:
        if limit < 1:
            raise ValueError("an ending line needs at least one pass")
        self.limit = limit
        self.patience = patience
        self._passes: collections.deque[None] = collections.deque([None] * limit)
        self._waiting: collections.deque[_thread.LockType] = collections.deque()

    @property
    def waiting(self) -> int:
        """Threads waiting for a pass."""
        return len(self._waiting)

    @property
    def free(self) -> int:
        """Passes nobody holds."""
        return len(self._passes)

    def enter(self) -> bool:
        """Wait for a pass: True with one (give it back with ``leave``), False when
        ``patience`` ran out (go on without one, and do not ``leave``)."""
        try:
            self._passes.popleft()
            return True
        except IndexError:
            pass
        waiter = _thread.allocate_lock()
        waiter.acquire()
        self._waiting.append(waiter)
        # a pass given back after the look above and before this thread was in line
        # went to the free ones: look once more, now that a leaving thread would see it
        try:
            self._passes.popleft()
        except IndexError:
            pass
        else:
            return self._out_of_line(waiter, holding=True)
        if waiter.acquire(timeout=self.patience):
            return True  # handed a pass by a thread leaving
        return self._out_of_line(waiter, holding=False)

    @contextlib.contextmanager
    def turn(self, wanted: bool = True) -> Iterator[None]:
        """The ``with`` block in a turn of the line when ``wanted`` (``enter``, and
        ``leave`` if a pass came); otherwise at once."""
        holding = wanted and self.enter()
        try:
            yield
        finally:
            if holding:
                self.leave()

    def leave(self) -> None:
        """Give the pass back: to the first thread waiting, else to the free ones."""
        try:
            waiter = self._waiting.popleft()
        except IndexError:
            self._passes.append(None)
        else:
            waiter.release()

    def _out_of_line(self, waiter: _thread.LockType, *, holding: bool) -> bool:
        """Take ``waiter`` out of the line. A thread leaving may have taken it out first
        to hand it a pass: that pass is then taken, and handed on when this thread
        holds one already. True when this thread ends holding a pass."""
        try:
            self._waiting.remove(waiter)
        except ValueError:  # handed a pass meanwhile (its release is on its way)
            waiter.acquire()
            if holding:
                self.leave()
            return True
        return holding
