"""The states of a ``Sync`` (a transition table) and what it reports: values, and the
``Tally`` that adds up what its rounds did (guarded by the sync's lock)."""

from __future__ import annotations

import dataclasses
import enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..replication import ReplicationResult

__all__ = ["DIRECTIONS", "SyncState", "SyncResult", "SyncStatus", "TRANSITIONS", "Tally"]

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


@dataclasses.dataclass
class Tally:
    """What every round of one sync did, added up; its owner's lock guards it."""

    pushed: int = 0
    pulled: int = 0
    failures: int = 0
    #: the last sequence each way, and each direction's result in the last round
    last_seq: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"push": None, "pull": None})
    last: dict[str, ReplicationResult | None] = dataclasses.field(
        default_factory=lambda: {"push": None, "pull": None})

    def batch(self, direction: str, written: int, failures: int,
              last_seq: Any) -> dict[str, int]:
        """Count a batch of ``direction``; the counts so far, as ``sync_change`` sends."""
        if direction == "push":
            self.pushed += written
        else:
            self.pulled += written
        self.failures += failures
        self.last_seq[direction] = last_seq
        return {"docs_pushed": self.pushed, "docs_pulled": self.pulled,
                "doc_write_failures": self.failures}

    def status(self, state: SyncState, last_error: BaseException | None,
               rounds: int) -> SyncStatus:
        return SyncStatus(state=state, docs_pushed=self.pushed, docs_pulled=self.pulled,
                          doc_write_failures=self.failures,
                          push_last_seq=self.last_seq["push"],
                          pull_last_seq=self.last_seq["pull"], last_error=last_error,
                          rounds=rounds)

    def result(self, state: SyncState) -> SyncResult:
        return SyncResult(state=state, docs_pushed=self.pushed, docs_pulled=self.pulled,
                          doc_write_failures=self.failures, push=self.last["push"],
                          pull=self.last["pull"])
