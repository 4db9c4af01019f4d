"""What a ``Sync`` does between rounds, and the sizes and delays it works with: pure.

The client's connection thread counts its attempts with ``Reconnects`` the same way.

A round ends with an error or without one; ``RoundRetry.after`` says what follows
(``Step``), the way ``Backoff`` says how long to wait: it only decides, the sync's
thread does the waiting. The rules:

- no error: a one-shot sync is complete; a live round only ends when its connection
  went, so the sync waits for the client's next connection;
- an error no retry fixes (``retryable`` is false: a denial, a bad request) ends it;
- a retryable error on a lost connection: wait for the client's next connection (the
  client backs off its reconnects itself);
- a retryable error on a connection that lives on (a 5xx, a channel closed by the
  server): a new round on it after ``backoff.delay(n)``, ``n`` the failed rounds in a
  row (counted afresh after a round that got somewhere); ``backoff.exhausted(n)`` ends it.

Thread safety: the values are immutable; a ``RoundRetry`` belongs to one sync's thread.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any, Callable

from ..errors import NotFound, PouchSyncError
from ..replication.replicator import MAX_BATCH_BYTES
from .backoff import Backoff
from .failures import gave_up, worth_retrying

__all__ = ["DEFAULT_CHECKPOINT_INTERVAL", "STOP_GRACE", "Reconnects", "RoundRetry", "Step",
           "batch_bytes_for", "check_checkpoint_interval", "retryable"]

#: seconds between the checkpoints of a one-shot sync and of a caught-up live sync:
#: CouchDB's replicator default (30 s). Each is a write on the server; 1,000 live clients
#: at 5 s wrote hundreds per change, the bulk of the server's work in the fan-out benchmark.
DEFAULT_CHECKPOINT_INTERVAL = 30.0
#: seconds a stopping live round's replicators get to finish their calls and record
#: their checkpoints before the channel is closed under them
STOP_GRACE = 2.0


def check_checkpoint_interval(value: Any) -> float:
    """``value`` as seconds between live checkpoints; ``ValueError`` unless it is a
    finite number >= 0 (``0``: a checkpoint after every batch)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0:
        raise ValueError(f"checkpoint_interval must be a finite number of seconds >= 0 "
                         f"(0: after every batch), got {value!r}")
    return float(value)


def batch_bytes_for(max_message_size: int) -> int:
    """The bytes of docs one write may carry to a server taking messages of at most
    ``max_message_size`` bytes: half of it (JSON escaping can double a text row), less
    room for the message around the docs; never above ``MAX_BATCH_BYTES``."""
    room = max_message_size // 2 - min(65536, max_message_size // 8)
    return max(1, min(MAX_BATCH_BYTES, room))


def retryable(error: BaseException, *, live: bool) -> bool:
    """Whether a round's error takes the sync offline to retry (else it ends it).

    Transport errors, timeouts and 5xx are; a live sync also rides out its remote
    database missing for a while (404: being restored or re-created), as CouchDB's
    continuous replications do. Denials and bad requests end it.
    """
    if getattr(error, "retryable", False):
        return True
    return live and isinstance(error, NotFound)


class Step(enum.Enum):
    """What follows a round."""

    COMPLETE = "complete"    # a one-shot sync did its work
    RECONNECT = "reconnect"  # a new round on the client's next connection, not this one
    RETRY = "retry"          # a new round on the same connection, after a delay
    FAIL = "fail"            # the round's error ends the sync


@dataclasses.dataclass
class RoundRetry:
    """Decides what follows each round of one sync (module docstring); counts the
    failed rounds in a row on a connection that lives on."""

    live: bool
    failures: int = 0

    def offline(self, error: BaseException | None) -> bool:
        """Whether the round's ``error`` takes the sync offline (before ``after``)."""
        return error is not None and retryable(error, live=self.live)

    def after(self, error: BaseException | None, *, lost: bool, progressed: bool,
              backoff: Backoff, random: Callable[[], float]) -> tuple[Step, float]:
        """The step after a round that ended with ``error`` (``None``: without one) and
        the seconds to wait first (``RETRY`` only). ``lost``: its connection is gone;
        ``progressed``: it wrote a batch or caught up. ``random`` is drawn only for a
        ``RETRY``'s jitter."""
        if error is None:
            if not self.live:
                return Step.COMPLETE, 0.0
            self.failures = 0
            return Step.RECONNECT, 0.0
        if not retryable(error, live=self.live):
            return Step.FAIL, 0.0
        if lost:
            self.failures = 0
            return Step.RECONNECT, 0.0
        if progressed:  # that round got somewhere: count afresh
            self.failures = 0
        self.failures += 1
        if backoff.exhausted(self.failures):
            return Step.FAIL, 0.0
        return Step.RETRY, backoff.delay(self.failures, random)


@dataclasses.dataclass
class Reconnects:
    """The client's connection attempts: when to give up, which attempt comes next."""

    failures: int = 0  # failed attempts in a row (``max_attempts`` counts these)
    retries: int = 0  # reconnects scheduled since the last good connection
    worked: bool = False  # the URL led to our server once: a 404 later is a deploy

    def failed(self, error: PouchSyncError, backoff: Backoff) -> PouchSyncError | None:
        """An attempt failed with ``error``: the error to give up with (a wrong URL or
        setup no retry fixes, unless the URL worked before; ``max_attempts`` used up),
        else ``None`` and the retry is counted."""
        self.failures += 1
        if not self.worked and not worth_retrying(error):
            return error
        if backoff.exhausted(self.failures):
            return gave_up(error, self.failures)
        self.retries += 1
        return None

    def connected(self) -> None:
        self.failures = self.retries = 0
        self.worked = True

    def lost(self) -> None:
        """A loss after a good connection: the backoff starts again from attempt 1."""
        self.retries = 1
