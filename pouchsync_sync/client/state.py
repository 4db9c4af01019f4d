"""The states of a ``Sync`` (a transition table) and what it reports: pure values."""

from __future__ import annotations

import dataclasses
import enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..replication import ReplicationResult

__all__ = ["DIRECTIONS", "SyncState", "SyncResult", "SyncStatus", "TRANSITIONS"]

DIRECTIONS = ("both", "push", "pull")


class SyncState(str, enum.Enum):
    """Lifecycle of a ``Sync``; the last four are final.

    Example::

        import pouchsync_sync as ps

        state = ps.SyncState("paused")                      # sync.state is one of these
        print(state, state.final, ps.SyncState.COMPLETE.final)   # paused False True
    """

    CONNECTING = "connecting"
    ACTIVE = "active"
    PAUSED = "paused"
    OFFLINE = "offline"
    COMPLETE = "complete"
    CANCELLED = "cancelled"
    DENIED = "denied"
    ERROR = "error"

    @property
    def final(self) -> bool:
        return self in _FINAL

    def __str__(self) -> str:
        return self.value


_FINAL = frozenset({SyncState.COMPLETE, SyncState.CANCELLED, SyncState.DENIED,
                    SyncState.ERROR})

#: state -> states it may move to (final states move nowhere)
TRANSITIONS: dict[SyncState, frozenset[SyncState]] = {
    SyncState.CONNECTING: frozenset({SyncState.ACTIVE, SyncState.OFFLINE} | _FINAL),
    SyncState.ACTIVE: frozenset({SyncState.PAUSED, SyncState.OFFLINE} | _FINAL),
    SyncState.PAUSED: frozenset({SyncState.ACTIVE, SyncState.OFFLINE} | _FINAL),
    SyncState.OFFLINE: frozenset({SyncState.ACTIVE, SyncState.PAUSED} | _FINAL),
}


@dataclasses.dataclass(frozen=True)
class SyncResult:
    """What a finished sync did. ``push``/``pull`` are the last round's results (``None``
    for a direction not synced); the counts add up every round."""

    state: SyncState
    docs_pushed: int
    docs_pulled: int
    doc_write_failures: int
    push: ReplicationResult | None = None
    pull: ReplicationResult | None = None

    @property
    def ok(self) -> bool:
        return self.state in (SyncState.COMPLETE, SyncState.CANCELLED)

    @property
    def cancelled(self) -> bool:
        return self.state is SyncState.CANCELLED


@dataclasses.dataclass(frozen=True)
class SyncStatus:
    """A snapshot of a sync: state, counts, last sequence each way, last error."""

    state: SyncState
    docs_pushed: int
    docs_pulled: int
    doc_write_failures: int
    push_last_seq: Any
    pull_last_seq: Any
    last_error: BaseException | None
    rounds: int
    #: changes left to replicate (both directions), when the sources say; else None
    pending: int | None = None
