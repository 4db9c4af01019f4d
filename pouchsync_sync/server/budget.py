"""The server-wide budget for memory held in replies not yet sent.

A peer that stops reading blocks its socket's sends; every reply its workers compute
meanwhile waits, whole, in memory. Each socket's ``max_calls`` bounds how many, but not
their sum over all sockets. ``ReplyBudget`` counts the bytes of every encoded reply
from the moment it exists until its send returns; when the total passes the budget,
the socket holding the most is evicted (its owner closes it), which frees its replies.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

__all__ = ["ReplyBudget"]

log = logging.getLogger(__name__)


class Holder(Protocol):
    name: str

    def evict(self, reason: str) -> None: ...


class ReplyBudget:
    """Bytes held per socket, against one limit. Thread-safe; ``evict`` is called
    outside the lock."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._held: dict[Any, int] = {}
        self._total = 0
        self._evicted: set[Any] = set()
        self.evictions = 0

    @property
    def total(self) -> int:
        return self._total

    def hold(self, holder: Holder, size: int) -> None:
        """Count ``size`` more bytes held by ``holder``; evict the biggest holder if
        the total is now over the limit."""
        victim = None
        with self._lock:
            self._held[holder] = self._held.get(holder, 0) + size
            self._total += size
            if self._total > self.limit:  # the common case stops here
                victim = self._victim_locked()
                if victim is not None:
                    held, total = self._held[victim], self._total
                    self._evicted.add(victim)  # its bytes go once its sends return
                    self.evictions += 1
        if victim is not None:
            log.warning("connection %s: holds %d bytes of unsent replies; all sockets hold %d, "
                        "over reply_memory (%d): closing it (the slowest reader)",
                        victim.name, held, total, self.limit)
            victim.evict(f"too many unread replies (reply_memory {self.limit} bytes)")

    def _victim_locked(self) -> Any:
        """The socket holding the most, if the bytes not already on their way out (of
        sockets evicted before) are over the limit; else None."""
        candidates = [h for h in self._held if h not in self._evicted]
        if not candidates or sum(self._held[h] for h in candidates) <= self.limit:
            return None
        return max(candidates, key=self._held.__getitem__)

    def release(self, holder: Holder, size: int) -> None:
        with self._lock:
            left = self._held.get(holder, 0) - size
            self._total -= size
            if left > 0:
                self._held[holder] = left
            else:
                self._held.pop(holder, None)
                self._evicted.discard(holder)

    def held(self, holder: Holder) -> int:
        with self._lock:
            return self._held.get(holder, 0)
