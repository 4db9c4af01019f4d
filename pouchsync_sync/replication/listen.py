"""Wake-ups for a live replication whose owner waits for several things at once.

``Replicator.run`` listens to the changes feed by blocking in a ``longpoll`` read: one
thread per waiting replication. An owner that drives replications step by step (a
client's ``Sync``: both directions on one thread) instead arms a ``SourceListener``
and waits on its own wake-up: the listener calls ``wake()`` when the source may have
changes after the replication's position, and the owner then runs ``catch_up``.

- A source with ``listen_changes`` (the client's ``RemoteDatabase``: a subscription
  on its channel) is armed from a sequence, so nothing between the last read and the
  arming is missed; it is armed again after every pass (a no-op when the position did
  not move).
- An embedded store (``store.notify.notifier_of``) rings a listener after every write in
  this process; the listener is added once, before the first read, so a write during a
  pass rings it too (at worst one extra read). Writes by other processes, and sources
  with neither, are seen by re-reading periodically (``polls``).

Thread safety: arm and disarm from the owner's thread; ``wake`` runs on whatever thread
saw the change (a reader thread, a writer) and must not block.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..store.base import Database
from ..store.notify import notifier_of

__all__ = ["SourceListener"]


class SourceListener:
    """Arms ``wake`` for changes on ``source`` (see the module docstring)."""

    def __init__(self, source: Database) -> None:
        self._remote = getattr(source, "listen_changes", None)
        self._notifier = notifier_of(source)
        self._token: int | None = None
        self._unlisten: Callable[[], None] | None = None

    @property
    def polls(self) -> bool:
        """The source pushes nothing across processes: the owner re-reads it now and then."""
        return self._remote is None

    @property
    def pushed(self) -> bool:
        """The source delivers changes through its subscription (read them with a longpoll)."""
        return self._remote is not None

    def arm(self, wake: Callable[[], Any], *, since: Any, caught_up: bool,
            read_args: Mapping[str, Any]) -> None:
        """From now on call ``wake()`` when changes after ``since`` may have come.
        A subscription is only opened once ``caught_up`` (a backlog is read normally)."""
        if self._remote is not None:
            if caught_up:
                self._unlisten = self._remote(wake, since=since, **read_args)
        elif self._notifier is not None and self._token is None:
            self._token = self._notifier.add_listener(wake)

    def disarm(self) -> None:
        """Stop calling ``wake`` (idempotent)."""
        if self._token is not None and self._notifier is not None:
            self._notifier.remove_listener(self._token)
            self._token = None
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
