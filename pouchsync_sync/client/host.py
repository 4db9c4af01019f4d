"""The seam between a ``Client`` and its syncs, both ways, as two small interfaces.

``SyncHost`` is what a ``Sync`` needs from the client that made it (``Client``
implements it): a live connection to run a round on, the failure that closed the
client, the backoff policy and the random source of its jitter, the timeouts a round
uses, and being told when the sync has finished. ``HostedSync`` is what the client
needs from a sync (``Sync`` implements it): start it, tell it a connection died,
cancel it and join it when the client closes. Neither side reaches into the other's
private parts; tests may host a ``Sync`` on anything that has these members.

Thread safety: implementations say so; ``Client`` and ``Sync`` are thread-safe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from ..errors import PouchSyncError
    from .backoff import Backoff
    from .link import Link

__all__ = ["HostedSync", "SyncHost"]


class HostedSync(Protocol):
    """What a ``Client`` calls on each of its syncs."""

    @property
    def cancelled(self) -> bool:
        """``cancel()`` was called."""

    def start(self) -> None:
        """Start the sync's thread (once; again: no-op)."""

    def connection_lost(self, connection: Link) -> None:
        """``connection`` died: stop the round running on it at once."""

    def cancel(self) -> None:
        """Stop the sync; idempotent, any thread."""

    def join(self, timeout: float | None = None) -> bool:
        """Join the sync's thread; ``True`` when it ended."""


class SyncHost(Protocol):
    """What a ``Sync`` needs from the ``Client`` that made it."""

    #: when to retry a failed round on a connection that lives on
    backoff: Backoff
    #: seconds a channel's grant may take
    open_timeout: float
    #: seconds an idle live pull waits for the server's push before reading anyway
    longpoll_timeout: float
    #: seconds between an idle live push's re-reads of its local database
    local_poll_interval: float

    @property
    def failure(self) -> PouchSyncError | None:
        """The error that made the client give up reconnecting, else ``None``."""

    def wait_connection(self, sync: HostedSync,
                        avoid: Link | None) -> Link | None:
        """Block until there is a live connection other than ``avoid`` and return it;
        ``None`` once ``sync`` is cancelled, the client is closed or it gave up."""

    def wake(self) -> None:
        """Wake every ``wait_connection`` to look again (a sync was cancelled)."""

    def jitter(self) -> float:
        """A number in [0, 1) for a backoff delay's jitter."""

    def sync_finished(self, sync: HostedSync) -> None:
        """``sync`` reached its final state: forget it."""
