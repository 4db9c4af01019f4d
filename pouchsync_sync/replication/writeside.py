"""The write side of a replication: upload what the read side fetched, in order.

``WriteSide`` is the part of a replication that runs on the replicating thread: it
consumes the read side's items (``items``), uploads each chunk of docs (*Upload Batch
of Changed Documents*: ``bulk_docs(new_edits=False)`` for fetched revisions,
``write_missing_texts`` / ``write_missing`` for whole docs from the changes read, which
the target writes only if it lacks them), counts into the run's ``ReplicationResult``
and keeps refusals, and hands each batch end to ``finish_batch`` (the replicator's
checkpoint step). To a target across a round trip, whole-doc chunks go up two at a
time (``WriteBehind``); a batch end then waits for every write before it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Callable

from ..errors import PayloadTooLarge
from ..store.base import Database, accepted_docs
from .batch import failed_writes, slices_by_bytes, split_by_bytes
from .items import BatchEnd, BatchStart, BatchStats, Done, Fetched
from .result import ReplicationResult, keep_errors
from .writebehind import WriteBehind

__all__ = ["WRITE_BEHIND_MIN", "WriteSide"]

log = logging.getLogger("pouchsync_sync.replication.replicator")

#: whole-doc chunks at least this big go up behind (``WriteBehind``) to a remote target;
#: smaller ones (a live change or two) are written at once
WRITE_BEHIND_MIN = 50


class WriteSide:
    """The write side of one replication into ``target``, counting into ``result``.

    The replicator owns it and passes in what it needs: ``cancelled``, ``batch_started``
    (a batch of changes begins: the state goes ``active``) and ``finish_batch`` (a batch
    is written: Record Replication Checkpoint). ``replication_id`` names the replication
    in log lines once it is known. Not thread-safe: the replicating thread's, except
    ``lacked``, which the read side reads.
    """

    def __init__(self, target: Database, result: ReplicationResult, *,
                 max_batch_bytes: int, thread_name: str, cancelled: Callable[[], bool],
                 batch_started: Callable[[], None],
                 finish_batch: Callable[[BatchEnd, BatchStats], None]) -> None:
        self.target = target
        self.result = result
        self.max_batch_bytes = max_batch_bytes
        self.thread_name = thread_name
        self.replication_id: str | None = None
        self._cancelled = cancelled
        self._batch_started = batch_started
        self._finish_batch = finish_batch
        self._behind: WriteBehind | None = None  # uploads in flight to a remote target
        self._whole_lacked = 1.0  # share of the last whole docs the target lacked

    def lacked(self) -> float:
        """The share of the last whole docs written that the target lacked (1.0 before
        any): tells the read policy whether asking changes for docs still pays."""
        return self._whole_lacked

    def consume(self, items: Iterator[Any]) -> bool:
        """Upload each chunk of ``items``, hand each batch end to ``finish_batch``; True
        when they end with ``Done``, False when cancelled or stopped before it.

        Whole docs for a target across a round trip go up two writes at a time
        (``WriteBehind``); a batch end then waits for the writes before it.
        """
        batch = BatchStats()
        try:
            for item in items:
                if self._cancelled():
                    return False
                if isinstance(item, Fetched):
                    if item.whole and self._write_behind(item):
                        self._upload_behind(item, batch)
                    else:
                        if self._behind is not None:
                            self._behind.drain()
                        self.replicate_changes(item, batch)
                elif isinstance(item, BatchStart):
                    self._batch_started()
                    batch = BatchStats()
                elif isinstance(item, BatchEnd):
                    if self._behind is None or not self._behind.busy:
                        self._finish_batch(item, batch)
                    elif not item.caught_up:
                        self._behind.end((item, batch))  # once the writes before it are done
                    else:  # no read follows at once: nothing to overlap; the threads end
                        self._behind.drain()          # until the next backlog
                        self._behind.close()
                        self._behind = None
                        self._finish_batch(item, batch)
                    batch = BatchStats()
                elif isinstance(item, Done):
                    if self._behind is not None:
                        self._behind.drain()
                    return True
            return False
        finally:
            if self._behind is not None:
                self._behind.close()  # after an error or a cancel: what is held is dropped
                self._behind = None

    def _write_behind(self, item: Fetched) -> bool:
        """Upload ``item`` behind: a big whole-doc chunk for a target across a round trip."""
        return bool(getattr(self.target, "write_round_trip", False)) \
            and len(item.docs) >= WRITE_BEHIND_MIN

    def _upload_behind(self, item: Fetched, batch: BatchStats) -> None:
        if self._behind is None:
            self._behind = WriteBehind(
                self.thread_name, on_done=self._whole_written,
                on_end=lambda held: self._finish_batch(*held))
        write = functools.partial(self._write_whole, texts=item.texts)
        for part in self._whole_parts(item):
            self._behind.submit(write, part, (item, batch, part))

    def _whole_parts(self, item: Fetched) -> Iterator[Sequence[Any]]:
        """``item``'s whole docs in byte-bounded parts (text rows stay checked)."""
        split = slices_by_bytes if item.texts else split_by_bytes
        return split(item.docs, item.sizes, self.max_batch_bytes)

    def _write_whole(self, part: Sequence[Any], texts: bool
                     ) -> tuple[list[Any], list[dict[str, Any]]]:
        """The target's write of whole docs (text rows or docs), fitted to its message size."""
        return _fitted(self.target.write_missing_texts if texts else self.target.write_missing,
                       part, texts)

    def _whole_written(self, tag: tuple[Fetched, BatchStats, Sequence[Any]],
                       answer: tuple[list[Any], list[dict[str, Any]]]) -> None:
        """Count one whole-doc write's answer (on the replicating thread, in order)."""
        item, batch, part = tag
        written, failures = answer
        if item.texts:
            rows = list(part)
            written = rows if len(written) == len(rows) else [rows[i] for i in written]
        result = self.result
        result.docs_read += len(written) + len(failures)
        result.docs_written += len(written)
        batch.written.extend(written)
        batch.failures += self._refused(failures)
        self._whole_lacked = (len(written) + len(failures)) / max(len(part), 1)

    def replicate_changes(self, item: Fetched, batch: BatchStats) -> None:
        """Upload Batch of Changed Documents: one fetched chunk, split by bytes."""
        if item.whole:
            self.replicate_whole_docs(item, batch)
            return
        result = self.result
        result.docs_read += len(item.docs)
        if item.errors:
            log.info("replication %s: %d revisions could not be read from the source",
                     self.replication_id, len(item.errors))
            result.doc_write_failures += len(item.errors)
            keep_errors(result, item.errors)
            batch.failures += len(item.errors)
        for part in split_by_bytes(item.docs, item.sizes, self.max_batch_bytes):
            ok_docs, failed = self.upload_batch_of_changed_documents(part)
            batch.written.extend(ok_docs)
            batch.failures += failed

    def replicate_whole_docs(self, item: Fetched, batch: BatchStats) -> None:
        """Upload whole docs from the changes read: the target writes those it lacks
        (``write_missing``); those count as read, and tell the read policy whether
        asking for docs still pays."""
        for part in self._whole_parts(item):
            self._whole_written((item, batch, part), self._write_whole(part, item.texts))

    def upload_batch_of_changed_documents(self, docs: list[dict[str, Any]]
                                          ) -> tuple[list[dict[str, Any]], int]:
        """Upload Batch of Changed Documents with ``new_edits=False``; refusals are counted."""
        if not docs:
            return [], 0
        failures = _fitted(
            lambda part: ([], failed_writes(self.target.bulk_docs(part, new_edits=False))),
            docs, False)[1]
        self.result.docs_written += len(docs) - len(failures)
        if not self._refused(failures):
            return docs, 0
        return accepted_docs(docs, failures), len(failures)

    def _refused(self, failures: Sequence[Mapping[str, Any]]) -> int:
        """Count, log and keep the target's refusals; their number."""
        if failures:
            self.result.doc_write_failures += len(failures)
            for failure in failures:
                log.info("replication %s: target refused %s %s: %s %s", self.replication_id,
                         failure.get("id"), failure.get("rev"), failure.get("error"),
                         failure.get("reason"))
            keep_errors(self.result, failures)
        return len(failures)


def _fitted(write: Callable[[Sequence[Any]], tuple[list[Any], list[dict[str, Any]]]],
            part: Sequence[Any], texts: bool) -> tuple[list[Any], list[dict[str, Any]]]:
    """``write(part)``; when the message is too big for the target (``PayloadTooLarge``:
    a server's ``max_message_size``), each half on its own, and a single doc too big is
    a refusal (``too_large``) rather than the end of the replication. Positions in the
    answer (text rows) stay relative to ``part``."""
    try:
        return write(part)
    except PayloadTooLarge as exc:
        if len(part) <= 1:
            row = part[0]
            doc_id, rev = (row[0], row[1]) if texts else (row.get("_id"), row.get("_rev"))
            return [], [{"id": doc_id, "rev": rev, "error": "too_large", "reason": exc.reason}]
    half = len(part) // 2
    first_written, first_failures = _fitted(write, part[:half], texts)
    written, failures = _fitted(write, part[half:], texts)
    if texts:
        written = [half + i for i in written]
    return first_written + written, first_failures + failures
