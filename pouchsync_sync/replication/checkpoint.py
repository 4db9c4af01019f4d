"""Replication logs: "Compare Replication Logs" and "Record Replication Checkpoint".

https://docs.couchdb.org/en/stable/replication/protocol.html#retrieve-replication-logs-from-source-and-target

Each side keeps ``_local/<replication id>``::

    {"_id": "_local/<id>", "_rev": "0-N", "session_id": <this run>,
     "source_last_seq": <seq>, "replication_id_version": 1, "replicator": "pouchsync_sync",
     "history": [{"session_id", "recorded_seq", "start_last_seq", "start_time",
                  "end_time", "docs_read", "docs_written", "doc_write_failures"}, ...]}

newest history entry first, at most ``HISTORY_SIZE`` entries. A start sequence is only
trusted when both sides agree on it (same last session, or a session common to both
histories), because either database may have been replaced or restored since. A
source that refuses writes (read-only: forbidden/unauthorized) keeps no log; then the
target's log alone is trusted, as PouchDB does.

The functions at the top are pure; ``Checkpointer`` does the I/O through the
``Database`` interface. The target is always written first, then the source: a crash
between the two leaves the logs differing, and the comparison then falls back to the
previous common session rather than to a sequence the target never saw.

``CheckpointSchedule`` is the deferral policy (CouchDB's ``checkpoint_interval``): when
a batch's checkpoint may wait, and the one that waits (see the replicator's theory of
operation for when it is recorded after all).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import Conflict, Denied, Forbidden, NotFound, Unauthorized
from ..store.base import Database
from .ids import REPLICATION_ID_VERSION

__all__ = [
    "HISTORY_SIZE",
    "LOWEST_SEQ",
    "CheckpointSchedule",
    "Checkpointer",
    "compare_replication_logs",
    "compare_rep_history",
    "updated_replication_log",
]

log = logging.getLogger(__name__)

HISTORY_SIZE = 5
LOWEST_SEQ: Any = 0
REPLICATOR_NAME = "pouchsync_sync"

_READ_ONLY_ERRORS = (Forbidden, Unauthorized, Denied)


# -- pure ------------------------------------------------------------------------------
def _history(replication_log: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    if not replication_log:
        return []
    history = replication_log.get("history")
    if not isinstance(history, list):
        return []
    return [entry for entry in history if isinstance(entry, Mapping)]


def _has_session(session_id: Any, history: Sequence[Mapping[str, Any]]) -> bool:
    return session_id is not None and any(h.get("session_id") == session_id for h in history)


def compare_rep_history(source_history: Sequence[Mapping[str, Any]],
                        target_history: Sequence[Mapping[str, Any]]) -> Any:
    """The ``recorded_seq`` of the latest session found in both histories, else ``LOWEST_SEQ``.

    CouchDB's ``compare_rep_history``: walk both (newest first); the source's head
    wins when the target knows it, then the target's head when the rest of the source
    knows it; otherwise drop both heads and go on.
    """
    source_rest = list(source_history)
    target_rest = list(target_history)
    while source_rest and target_rest:
        s, t = source_rest[0], target_rest[0]
        if _has_session(s.get("session_id"), target_rest):
            return s.get("recorded_seq", LOWEST_SEQ)
        if _has_session(t.get("session_id"), source_rest[1:]):
            return t.get("recorded_seq", LOWEST_SEQ)
        source_rest.pop(0)
        target_rest.pop(0)
    return LOWEST_SEQ


def compare_replication_logs(source_log: Mapping[str, Any] | None,
                             target_log: Mapping[str, Any] | None, *,
                             source_read_only: bool = False) -> Any:
    """The start sequence both logs agree on (``LOWEST_SEQ``: full replication).

    Same last ``session_id`` → the source's ``source_last_seq``; else the latest
    common session in the histories. With a read-only source (no source log can
    exist) the target's log is trusted alone.
    """
    if target_log is None:
        return LOWEST_SEQ
    if source_log is None:
        if source_read_only:
            return target_log.get("source_last_seq", LOWEST_SEQ)
        return LOWEST_SEQ
    if (source_log.get("session_id") is not None
            and source_log.get("session_id") == target_log.get("session_id")):
        return source_log.get("source_last_seq", LOWEST_SEQ)
    return compare_rep_history(_history(source_log), _history(target_log))


def updated_replication_log(previous: Mapping[str, Any] | None, *, log_id: str,
                            session_id: str, recorded_seq: Any, start_last_seq: Any,
                            start_time: str, end_time: str, docs_read: int,
                            docs_written: int, doc_write_failures: int) -> dict[str, Any]:
    """A new log doc: this session's entry first (replacing its earlier one), bounded.

    Never mutates ``previous``; keeps its ``_rev`` so the write updates it.
    """
    entry = {
        "session_id": session_id,
        "recorded_seq": recorded_seq,
        "start_last_seq": start_last_seq,
        "start_time": start_time,
        "end_time": end_time,
        "docs_read": docs_read,
        "docs_written": docs_written,
        "doc_write_failures": doc_write_failures,
    }
    older = [dict(h) for h in _history(previous) if h.get("session_id") != session_id]
    doc: dict[str, Any] = {
        "_id": log_id,
        "session_id": session_id,
        "source_last_seq": recorded_seq,
        "replication_id_version": REPLICATION_ID_VERSION,
        "replicator": REPLICATOR_NAME,
        "history": [entry, *older][:HISTORY_SIZE],
    }
    if previous is not None and previous.get("_rev") is not None:
        doc["_rev"] = previous["_rev"]
    return doc


# -- I/O -------------------------------------------------------------------------------
@dataclass
class _Side:
    db: Database
    name: str
    log: dict[str, Any] | None = None
    writable: bool = True


class Checkpointer:
    """Reads and writes the two replication logs of one replication session.

    Not thread-safe: owned by the replicator's running thread.
    """

    def __init__(self, source: Database, target: Database, replication_id: str,
                 session_id: str) -> None:
        self.log_id = f"_local/{replication_id}"
        self.session_id = session_id
        self._source = _Side(source, "source")
        self._target = _Side(target, "target")
        self._warned_read_only = False

    @property
    def source_read_only(self) -> bool:
        return not self._source.writable

    def retrieve_replication_logs(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """Get Replication Log from Source, then from Target (404 → ``None``)."""
        self._source.log = self._get_log(self._source.db)
        self._target.log = self._get_log(self._target.db)
        return self._source.log, self._target.log

    def find_start_seq(self) -> Any:
        """Retrieve both logs and compare them; probe a missing source log for writability.

        When only the target has a log, write an empty log to the source: if the
        source refuses, it is read-only and the target's log is trusted alone.
        """
        source_log, target_log = self.retrieve_replication_logs()
        if source_log is None and target_log is not None:
            probe: dict[str, Any] = {"_id": self.log_id, "session_id": None, "history": [],
                     "replication_id_version": REPLICATION_ID_VERSION,
                     "replicator": REPLICATOR_NAME}
            self._write(self._source, probe)
        return compare_replication_logs(source_log, target_log,
                                        source_read_only=self.source_read_only)

    def record_checkpoint(self, *, recorded_seq: Any, start_last_seq: Any, start_time: str,
                          end_time: str, docs_read: int, docs_written: int,
                          doc_write_failures: int) -> None:
        """Record Replication Checkpoint: the target first, then the source."""
        stats = dict(log_id=self.log_id, session_id=self.session_id,
                     recorded_seq=recorded_seq, start_last_seq=start_last_seq,
                     start_time=start_time, end_time=end_time, docs_read=docs_read,
                     docs_written=docs_written, doc_write_failures=doc_write_failures)
        for side in (self._target, self._source):
            if side.writable:
                self._write(side, updated_replication_log(side.log, **stats))

    # -- edge ----------------------------------------------------------------------------
    def _get_log(self, db: Database) -> dict[str, Any] | None:
        try:
            doc = db.get(self.log_id)
        except NotFound:
            return None
        return doc if isinstance(doc, dict) else None

    def _write(self, side: _Side, doc: dict[str, Any]) -> None:
        """Put the log; on a conflict (another writer) re-read the rev and retry once."""
        for attempt in (1, 2):
            try:
                result = side.db.put(doc)
            except Conflict:
                if attempt == 2:
                    raise
                current = self._get_log(side.db)
                doc = dict(doc)
                doc.pop("_rev", None)
                if current is not None and current.get("_rev") is not None:
                    doc["_rev"] = current["_rev"]
                continue
            except _READ_ONLY_ERRORS as exc:
                if side is self._target:
                    raise
                side.writable = False
                if not self._warned_read_only:
                    self._warned_read_only = True
                    log.warning("source %r refuses checkpoint writes (%s); "
                                "checkpointing on the target only", side.db, exc)
                return
            saved = dict(doc)
            saved["_rev"] = result.get("rev", saved.get("_rev"))
            side.log = saved
            return


# -- when ------------------------------------------------------------------------------
class CheckpointSchedule:
    """When to Record Replication Checkpoint: after every batch, or once the last one is
    ``interval`` seconds old (CouchDB's ``checkpoint_interval``).

    A batch's checkpoint may wait (``may_defer``) in a one-shot run while the last
    checkpoint recorded is younger than the interval, give or take a random quarter;
    in a live run when a live ``longpoll`` read delivered the batch and left the
    replication caught up, until the wait's due time (``due_in``): the interval after
    the last record (a live run counts the log it resumed from as recorded at its
    start), and at least a random part of a quarter interval after the wait began, so
    that many live replications that saw the same change (1,000 clients of one server)
    do not all record on it. The seq that waits is ``held`` (written, not yet
    recorded) until the owner records it: at a batch end past the due time, at the due
    time itself when the owner waits on a timer (``client/liveround.py``), at the end of
    every live backlog (a batch that is not caught up, or came from a normal read), and
    when the run ends (complete, cancel, stop or error; best effort). ``interval`` 0
    records one after every batch. A replication killed in between resumes from an
    older checkpoint and re-reads the docs of at most that interval (they are already
    on the target: harmless); none is skipped.
    ``wait_caught_up`` is about docs written, so a held checkpoint does not delay it.
    Without a ``Checkpointer`` (``start`` not called: no checkpoints) nothing waits.
    Not thread-safe: owned by the replicating thread.
    """

    def __init__(self, interval: float, *, live: bool,
                 clock: Callable[[], float] = time.monotonic,
                 jitter: Callable[[float, float], float] = random.uniform) -> None:
        self.interval = interval
        self.live = live
        #: (seq, pending) of the last batch written but not yet recorded
        self.held: tuple[Any, Any] | None = None
        self._checkpointer: Checkpointer | None = None
        self._clock = clock
        self._jitter = jitter
        self._saved_at = float("-inf")  # clock() of the last checkpoint recorded
        self._next_interval = interval  # this one's, jittered after each record
        self._due_at = float("inf")  # live: when the held checkpoint is recorded anyway

    def start(self, checkpointer: Checkpointer) -> None:
        """Record through ``checkpointer`` from now on. A live run counts the log it
        resumed from as recorded now (its next record is one jittered interval away)."""
        self._checkpointer = checkpointer
        if self.live and self.interval > 0:
            self._saved_at = self._clock()
            self._next_interval = self.interval * self._jitter(0.75, 1.25)

    def may_defer(self, *, live_read: bool, caught_up: bool) -> bool:
        """This batch's checkpoint may wait: a one-shot run's while the last record is
        younger than the interval (its end records it); a live run's that a live read
        left caught up until the wait's due time (``due_in``): one jittered interval
        after the last record, and never sooner than a random part (up to a quarter) of
        the interval after the wait began, so that many live replications that saw the
        same change do not all record at once."""
        if self._checkpointer is None or self.interval <= 0:
            return False
        if not self.live:
            return self._clock() - self._saved_at < self._next_interval
        if not (live_read and caught_up):
            return False  # a live run's backlog: every batch
        if self.held is None:  # this batch begins the wait: until when
            soonest = self._clock() + self.interval * self._jitter(0.0, 0.25)
            self._due_at = max(self._saved_at + self._next_interval, soonest)
        return self._clock() < self._due_at

    def hold(self, seq: Any, pending: Any) -> None:
        """``seq`` is written and its checkpoint waits."""
        self.held = (seq, pending)

    def due_in(self) -> float | None:
        """Live: seconds until the held checkpoint is due (0: now); None when nothing is
        held. The owner records it then (``Replicator.flush_checkpoint``) if no batch
        end did meanwhile."""
        if self.held is None or not self.live:
            return None
        return max(0.0, self._due_at - self._clock())

    def record(self, *, recorded_seq: Any, start_last_seq: Any, start_time: str,
               end_time: str, docs_read: int, docs_written: int,
               doc_write_failures: int) -> None:
        """Record the checkpoint (target, then source) if checkpoints are kept; nothing
        is held after it."""
        if self._checkpointer is not None:
            self._checkpointer.record_checkpoint(
                recorded_seq=recorded_seq, start_last_seq=start_last_seq,
                start_time=start_time, end_time=end_time, docs_read=docs_read,
                docs_written=docs_written, doc_write_failures=doc_write_failures)
            self._saved_at = self._clock()
            self._next_interval = self.interval * self._jitter(0.75, 1.25)
        self.held = None
        self._due_at = float("inf")
