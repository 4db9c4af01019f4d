"""What the read side of a replication hands the write side, in order, pure data.

A batch of changes becomes ``BatchStart``, one ``Fetched`` per byte-bounded chunk of
docs to upload, and ``BatchEnd`` (checkpoint its ``last_seq`` once everything before
it is written); a one-shot run ends with ``Done``. ``BatchStats`` is what one batch
wrote (for ``on_batch``) or fetched (for the read policy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["BatchEnd", "BatchStart", "BatchStats", "Done", "Fetched"]


@dataclass
class BatchStats:
    """What one batch wrote (for ``on_batch``) or fetched (for the read policy)."""

    written: list[dict[str, Any]] = field(default_factory=list)
    failures: int = 0
    bytes: int = 0
    count: int = 0
    first_generation: int = 0


class BatchStart:
    """A changes read found rows: the replicator is active."""


@dataclass
class Fetched:
    """Docs ready to upload (one ``bulk_get`` chunk, or the changes' own whole docs)."""

    docs: list[dict[str, Any]]
    sizes: list[int]
    errors: list[dict[str, Any]]
    whole: bool = False  # from the changes read, not diffed: the target writes what it lacks
    texts: bool = False  # whole, as text rows (id, rev, text) from changes_texts


@dataclass
class BatchEnd:
    """Everything of one changes read has been handed over: checkpoint ``last_seq``."""

    ticket: int
    last_seq: Any
    pending: Any
    caught_up: bool
    had_rows: bool
    live_read: bool = False  # the read was a live longpoll (not a backlog read)


class Done:
    """One-shot: a read found nothing new; the replication is complete."""
