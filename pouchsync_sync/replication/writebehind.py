"""Two uploads in flight: the replicator's writes to a target across a round trip.

A write to a remote target (``RemoteDatabase``, ``CouchDatabase``) is a round trip: the
target works while the replicator waits, then the replicator prepares and sends the
next write while the target waits. ``WriteBehind`` keeps up to ``depth`` writes in
flight on its own threads, so the target always has the next one, while the caller
goes on with the items after them.

Order is kept where it matters: results are taken in the order the writes were
submitted (``on_done`` runs on the caller's thread), and a batch end handed to ``end``
waits until every write submitted before it is done (a checkpoint never passes a
write in flight). The first error of a write is raised to the caller (after the writes
in flight have ended); nothing after it is finished.
"""

from __future__ import annotations

import collections
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any, Callable

__all__ = ["WriteBehind"]

#: how long one wait for a write lasts before it looks again (a write has its own timeouts)
_WAIT_SLICE = 1.0


class WriteBehind:
    """Writes run ``depth`` at a time on threads named ``name``; see the module doc."""

    def __init__(self, name: str, on_done: Callable[[Any, Any], None],
                 on_end: Callable[[Any], None], *, depth: int = 2) -> None:
        self._name = name
        self._on_done = on_done
        self._on_end = on_end
        self._depth = depth
        self._pool: ThreadPoolExecutor | None = None
        self._flight: collections.deque[tuple[int, Future[Any], Any]] = collections.deque()
        self._held: collections.deque[tuple[int, Any]] = collections.deque()
        self._submitted = 0  # tickets given
        self._done = 0  # the highest ticket whose result was taken (all before it too)

    def submit(self, fn: Callable[..., Any], arg: Any, tag: Any) -> None:
        """Run ``fn(arg)`` behind; ``on_done(tag, result)`` once it is its turn. Waits
        while ``depth`` writes are in flight."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._depth, thread_name_prefix=self._name)
        self._submitted += 1
        self._flight.append((self._submitted, self._pool.submit(fn, arg), tag))
        while len(self._flight) > self._depth:
            self._take_oldest()

    def end(self, item: Any) -> None:
        """``on_end(item)`` once every write submitted before it is done (now if none)."""
        if self._done >= self._submitted and not self._held:
            self._on_end(item)
        else:
            self._held.append((self._submitted, item))

    def drain(self) -> None:
        """Wait for every write in flight and finish the held ends."""
        while self._flight:
            self._take_oldest()
        self._release()

    @property
    def busy(self) -> bool:
        """Writes are in flight or ends are held."""
        return bool(self._flight or self._held)

    def close(self) -> None:
        """Wait for the writes in flight (their results are dropped) and end the threads."""
        while self._flight:
            _wait(self._flight.popleft()[1])
        self._held.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _take_oldest(self) -> None:
        ticket, future, tag = self._flight[0]
        _wait(future)
        self._flight.popleft()
        try:
            result = future.result(timeout=0)
        except BaseException:
            # the writes after it still run: let them end before the error goes up
            self.close()
            raise
        self._done = ticket
        self._on_done(tag, result)
        self._release()

    def _release(self) -> None:
        while self._held and self._held[0][0] <= self._done:
            self._on_end(self._held.popleft()[1])


def _wait(future: Future[Any]) -> None:
    """Until ``future`` is done, in slices (the write in it has its own timeouts)."""
    while not wait_futures([future], timeout=_WAIT_SLICE).done:
        pass
