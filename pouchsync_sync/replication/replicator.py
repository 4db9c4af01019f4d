"""The replicator: the CouchDB replication protocol between any two ``Database`` objects.

https://docs.couchdb.org/en/stable/replication/protocol.html

Theory of operation. ``Replicator.run`` walks the protocol's steps, one method each:

1. **Verify Peers / Get Peers Information** – ``info()`` on both sides (a missing
   database fails here, before anything is written).
2. **Find Common Ancestry** – *Generate Replication ID* (``ids.py``), *Retrieve
   Replication Logs* from source and target and *Compare Replication Logs*
   (``checkpoint.py``) give the start sequence; none in common → from the start.
3. **Locate Changed Documents** – *Read Batch of Changes* (``style=all_docs``: every
   leaf, so conflicts travel), the Python ``filter`` on the docs, then *Calculate
   Revision Difference* with the target's ``revs_diff``.
4. **Replicate Changes** – *Fetch Changed Documents* with ``bulk_get(revs=True,
   latest=True, attachments=True)`` and ``atts_since`` (attachments the target already
   has come back as stubs and are kept by digest), *Upload Batch of Changed Documents*
   with ``bulk_docs(new_edits=False)`` in chunks bounded by bytes (``writeside.py``),
   then *Record Replication Checkpoint* (target first, then source). Shortcut: a
   first-generation doc comes whole from the changes read and goes to the target's
   ``write_missing_texts`` / ``write_missing`` (no ``revs_diff``, no ``bulk_get``; see
   ``readside.py``).
5. One-shot: stop when a read finds nothing new. Live: ``paused``, wait on a
   ``longpoll`` read (at most ``longpoll_timeout`` seconds, so ``cancel`` takes effect
   within one wait), ``active`` again when changes come.

``run()`` does all of it on the caller's thread. An owner of several live replications
on one thread (a client's ``Sync``: pull and push) drives the steps itself: ``open()``
(1, 2), ``catch_up()`` (3, 4 until a read finds nothing new), ``listen(wake)`` (the
source's subscription or the store's notifier calls ``wake``; ``listen.py``),
``catch_up(woken=True)`` when woken, and ``finish()`` (deferred checkpoint, final state).

Steps 3 and the fetch of 4 (the read side, ``readside.py``) produce a stream of items:
batch start, byte-bounded chunks of docs, batch end, which the running thread consumes
(the write side, ``writeside.py``: upload; then this module: checkpoint, state,
callbacks). With ``batches_limit > 1`` the read side runs ahead on a reader thread
(``pipeline.Prefetcher``); to a target across a round trip the write side keeps two
whole-doc writes in flight (``writebehind.py``). Either way checkpoints are recorded in
order, only after everything before them is written; they may wait up to CouchDB's
``checkpoint_interval`` (``CheckpointSchedule`` in ``checkpoint.py`` says when).

Sequences are opaque: stored and sent back as received, compared only for equality.
A document the target refuses counts in ``doc_write_failures``; a revision the source
can no longer serve likewise; neither stops the replication. Any other error (transport,
server, a refused read) ends the run with status ``"error"`` and the partial result; the
caller decides whether to retry (the client adds backoff). Everything checkpointed stays
done: the next run of the same replication resumes from there.
"""

from __future__ import annotations

import functools
import logging
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Callable

from ..errors import PouchSyncError
from ..store.base import Database
from .batch import collect_bulk_get, revs_diff_request
from .checkpoint import LOWEST_SEQ, Checkpointer, CheckpointSchedule
from .ids import generate_replication_id
from .items import BatchEnd, BatchStats
from .listen import SourceListener
from .pipeline import Prefetcher
from .progress import STATES, Progress
from .readside import ReadSide
from .result import ReplicationResult, batch_report, call_back, ending, now_utc, rfc5322, settle
from .writeside import WriteSide

__all__ = ["ReplicationResult", "Replicator", "replicate", "STATES"]

log = logging.getLogger(__name__)

#: the default bound on the bytes of docs one write carries (``max_batch_bytes``)
MAX_BATCH_BYTES = 8 * 1024 * 1024


class Replicator:
    """One replication from ``source`` to ``target``; ``run()`` blocks on the caller's thread.

    Example::

        import pouchsync_sync as ps

        a, b = ps.LocalDatabase(":memory:", name="a"), ps.LocalDatabase(":memory:", name="b")
        a.put({"_id": "x"})
        print(ps.Replicator(a, b).run().docs_written)      # 1 (ps.replicate(a, b) does the same)

    Runs once. ``state``, ``pending`` and ``wait_caught_up`` are safe from any thread;
    callbacks run on the running thread, outside any lock, and their exceptions are
    logged and ignored. ``on_batch`` gets ``{"docs", "docs_read", "docs_written",
    "doc_write_failures", "last_seq", "pending"}`` after each batch; ``docs`` (the docs
    the batch wrote) is a read-only sequence whose docs are built when first read.
    """

    def __init__(self, source: Database, target: Database, *, live: bool = False,
                 since: Any = None, doc_ids: Sequence[str] | None = None,
                 selector: Mapping[str, Any] | None = None,
                 filter: Callable[[dict[str, Any]], Any] | None = None,  # noqa: A002
                 batch_size: int = 100, batches_limit: int = 10, checkpoint: bool = True,
                 cancel: Any = None,
                 on_batch: Callable[[dict[str, Any]], Any] | None = None,
                 on_state: Callable[[str], Any] | None = None,
                 longpoll_timeout: float = 25.0,
                 max_batch_bytes: int = MAX_BATCH_BYTES,
                 checkpoint_interval: float = 30.0) -> None:
        if batch_size < 1 or batches_limit < 1 or max_batch_bytes < 1:
            raise ValueError("batch_size, batches_limit and max_batch_bytes must be >= 1")
        if longpoll_timeout <= 0:
            raise ValueError("longpoll_timeout must be > 0 seconds")
        if checkpoint_interval < 0:
            raise ValueError("checkpoint_interval must be >= 0 seconds (0: every batch)")
        self.source = source
        self.target = target
        self.live = live
        self.since = since
        self.doc_ids = list(doc_ids) if doc_ids is not None else None
        self.selector = selector
        self.filter = filter
        self.batch_size = batch_size
        self.batches_limit = batches_limit
        self.checkpoint = checkpoint
        self.cancel = cancel
        self.on_batch = on_batch
        self.on_state = on_state
        self.longpoll_timeout = longpoll_timeout
        self.max_batch_bytes = max_batch_bytes
        self.checkpoint_interval = checkpoint_interval

        self.replication_id: str | None = None
        self.session_id = uuid.uuid4().hex
        self._result = ReplicationResult()
        self._start_seq: Any = LOWEST_SEQ
        self._seq: Any = LOWEST_SEQ
        self._checkpoints = CheckpointSchedule(checkpoint_interval, live=live)
        self._listener = SourceListener(source)  # the steps API's wake-ups
        self._caught_up_at: Any = None  # the seq the last catch_up() ended caught up at
        self._progress = Progress(LOWEST_SEQ)
        self._writer = WriteSide(
            target, self._result, max_batch_bytes=max_batch_bytes,
            thread_name=f"pouchsync-upload[{source.name}->{target.name}]",
            cancelled=self._cancelled, batch_started=functools.partial(self._set_state, "active"),
            finish_batch=self.finish_batch)
        self._reader = ReadSide(
            source, target, live=live, doc_ids=self.doc_ids, selector=selector, filter=filter,
            batch_size=batch_size, batches_limit=batches_limit,
            longpoll_timeout=longpoll_timeout, max_batch_bytes=max_batch_bytes,
            begin_read=self._progress.begin_read, cancelled=self._cancelled,
            revs_diff=self.calculate_revision_difference,
            fetch=self.fetch_changed_documents, lacked=self._writer.lacked)

    # -- observation (any thread) -----------------------------------------------------
    @property
    def state(self) -> str:
        """ "idle", "active", "paused", "complete", "cancelled" or "error"."""
        return self._progress.state

    @property
    def pending(self) -> int | None:
        """Changes left on the source after the last batch, when the source says."""
        return self._progress.pending

    def wait_caught_up(self, timeout: float) -> bool:
        """True once every change the source had when this call began is written and
        checkpointed: a changes read begun after the call found nothing new (or, while
        paused, a probe read from this thread finds nothing after the checkpoint).
        Also True for a completed run; False on timeout, cancel or error.
        """
        return self._progress.wait_caught_up(timeout, self._reader.nothing_new_since)

    # -- the run ----------------------------------------------------------------------
    def run(self) -> ReplicationResult:
        """Replicate until done (one-shot), cancelled or failed; never raises for those."""
        self._progress.claim()
        status, error = "complete", None
        try:
            self._open()
            if not self.locate_changed_documents():
                status = "cancelled"
        except Exception as exc:  # noqa: BLE001 - top frame: _end reports it
            status, error = "error", exc
        return self._end(status, error)

    # -- the run in steps, driven by an owner (a client's Sync) ---------------------------
    def open(self) -> None:
        """Start a run driven by steps instead of ``run()``: Verify Peers and Find Common
        Ancestry (state ``active``); raises what failed. Then ``catch_up()``; while live,
        ``listen(wake)``, wait for ``wake`` (or ``polls``: a while), ``catch_up(woken=True)``,
        again; and ``finish()`` to end (always, also after an error)."""
        self._progress.claim()
        self._open()

    def _open(self) -> None:
        self._result.start_time = now_utc()
        self._set_state("active")
        self.verify_peers()
        self.find_common_ancestry()

    def catch_up(self, *, woken: bool = False) -> bool:
        """Replicate until a read finds nothing new: True then (state ``paused`` when
        live), False when cancelled; raises what failed.

        ``woken``: a wake-up from ``listen`` started this pass, so its first read takes
        what the source's subscription delivered (a live read: its checkpoint may wait).
        The read side goes ahead on a reader thread only while more is pending."""
        if self._cancelled():
            return False
        since = self._seq
        live_first = woken and self._listener.pushed
        first = self._reader.read_batch_of_changes(since, longpoll=live_first, timeout=0.0)
        changes = first[0]
        batches = functools.partial(self._reader.changed_batches, since=since, first=first,
                                    live_first=woken, one_pass=True)
        ahead = bool(changes.get("results")) and changes.get("pending") != 0
        done = self._replicate(batches, ahead=ahead)
        self._caught_up_at = self._seq if done else None
        return done

    def listen(self, wake: Callable[[], Any]) -> None:
        """Call ``wake()`` (from any thread; it must not block) when the source may have
        changes past what was replicated; call again after each ``catch_up``. A source
        that cannot tell across processes is to be re-read now and then (``polls``)."""
        if not self._progress.claimed:
            raise PouchSyncError("listen() before open()")
        caught_up = self._caught_up_at is not None and self._caught_up_at == self._seq
        self._listener.arm(wake, since=self._seq, caught_up=caught_up,
                           read_args=self._reader.changes_args())

    @property
    def polls(self) -> bool:
        """True when ``listen`` cannot see every change (other processes' writes to an
        embedded store; a backend without notifications): re-read now and then."""
        return self._listener.polls

    def unlisten(self) -> None:
        """Stop the ``listen`` wake-ups (idempotent)."""
        self._listener.disarm()

    def finish(self, error: BaseException | None = None) -> ReplicationResult:
        """End a run driven by steps: record the deferred checkpoint (best effort) and
        enter the final state, ``error`` when ``error`` is given (unless it is the
        ``Cancelled`` of our own cancel), else ``cancelled`` for a live run (it only
        stops when told) and ``complete`` for a one-shot one."""
        self.unlisten()
        if error is not None:
            return self._end("error", error)
        return self._end("cancelled" if self.live or self._cancelled() else "complete", None)

    def _end(self, status: str, error: BaseException | None) -> ReplicationResult:
        status, error = ending(status, error, cancelled=self._cancelled(),
                               replication_id=self.replication_id, source=self.source,
                               target=self.target)
        if self._checkpoints.held is not None:
            try:  # best effort: after an error it may be the very connection it needs
                self.flush_checkpoint()
            except Exception as exc:  # noqa: BLE001 - best effort, logged
                log.info("replication %s: last checkpoint not recorded (%r)",
                         self.replication_id, exc)
        settle(self._result, status, error, last_seq=self._seq, source=self.source,
               target=self.target)
        self._set_state(status)
        return self._result

    # -- protocol steps ---------------------------------------------------------------
    def verify_peers(self) -> None:
        """Verify Peers / Get Peers Information: both databases answer ``info()``."""
        self.source.info()
        self.target.info()

    def find_common_ancestry(self) -> None:
        """Generate Replication ID, retrieve and compare both logs: the start sequence."""
        self.replication_id = generate_replication_id(
            self.source.identity(), self.target.identity(), doc_ids=self.doc_ids,
            selector=self.selector, filter_fn=self.filter)
        start: Any = LOWEST_SEQ
        self._writer.replication_id = self.replication_id
        if self.checkpoint:
            checkpointer = Checkpointer(self.source, self.target, self.replication_id,
                                        self.session_id)
            if self.since is None:
                start = checkpointer.find_start_seq()
            else:
                checkpointer.retrieve_replication_logs()  # their revs, for writing
            self._checkpoints.start(checkpointer)
        if self.since is not None:
            start = self.since
        log.info("replication %s: %s -> %s from seq %r", self.replication_id, self.source,
                 self.target, start)
        self._start_seq = start
        self._seq = start
        self._progress.batch_done(start, None)

    def locate_changed_documents(self) -> bool:
        """Replicate batch after batch; False when cancelled. The read side (changes,
        revision difference, fetches) runs ``batches_limit`` items ahead on a reader
        thread when ``batches_limit > 1``; this thread uploads, checkpoints, owns the state.
        """
        return self._replicate(functools.partial(self._reader.changed_batches,
                                                 since=self._start_seq), ahead=True)

    def _replicate(self, batches: Callable[[threading.Event], Iterator[Any]], *,
                   ahead: bool) -> bool:
        """The write side consumes ``batches``, read on a reader thread when ``ahead``
        and ``batches_limit > 1``, else inline; False when cancelled."""
        if not ahead or self.batches_limit <= 1:
            return self._writer.consume(batches(threading.Event()))
        reader = Prefetcher(batches, depth=self.batches_limit, name=self._reader.thread_name,
                            join_timeout=self.longpoll_timeout + 10.0).start()
        try:
            return self._writer.consume(reader.items(self._cancelled))
        finally:
            reader.close()

    def finish_batch(self, end: BatchEnd, batch: BatchStats) -> None:
        """Record Replication Checkpoint after a batch; report it; pause when caught up."""
        if end.had_rows or end.last_seq != self._seq:
            if self._checkpoints.may_defer(live_read=end.live_read, caught_up=end.caught_up):
                self._checkpoints.hold(end.last_seq, end.pending)
                self._mark_written(end.last_seq, end.pending)
            else:
                self.record_replication_checkpoint(end.last_seq, end.pending)
        elif end.pending is not None:
            self._progress.set_pending(end.pending)
        if (batch.written or batch.failures) and self.on_batch is not None:
            call_back(self.on_batch, batch_report(self._result, batch.written,
                                                  last_seq=self._seq, pending=self.pending))
        if end.caught_up:
            self._progress.caught_up(end.ticket)
            if self.live:
                self._set_state("paused")

    def flush_checkpoint(self) -> None:
        """Record the checkpoint the run deferred, if any."""
        held = self._checkpoints.held
        if held is not None:
            self.record_replication_checkpoint(*held)

    def checkpoint_due_in(self) -> float | None:
        """Seconds until the deferred checkpoint of a live run is due (then flush it)."""
        return self._checkpoints.due_in()

    def calculate_revision_difference(self, rows: Sequence[Mapping[str, Any]]
                                      ) -> dict[str, Any]:
        """Calculate Revision Difference: the target's ``revs_diff`` of every leaf."""
        request = revs_diff_request(rows)
        if not request:
            return {}
        return self.target.revs_diff(request)

    def fetch_changed_documents(self, requests: list[dict[str, Any]]
                                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Fetch Changed Documents: ``bulk_get`` with history, latest leaves, attachments.

        Revisions the source cannot serve come back as errors (counted as failures by
        the write side, never fatal).
        """
        if not requests:
            return [], []
        answer = self.source.bulk_get(requests, revs=True, latest=True, attachments=True)
        return collect_bulk_get(answer)

    def record_replication_checkpoint(self, last_seq: Any, pending: Any) -> None:
        """Record Replication Checkpoint on target then source; then the seq is done."""
        result = self._result
        self._checkpoints.record(
            recorded_seq=last_seq, start_last_seq=self._start_seq,
            start_time=rfc5322(result.start_time or now_utc()), end_time=rfc5322(now_utc()),
            docs_read=result.docs_read, docs_written=result.docs_written,
            doc_write_failures=result.doc_write_failures)
        self._mark_written(last_seq, pending)

    def _mark_written(self, last_seq: Any, pending: Any) -> None:
        self._seq = last_seq
        self._result.last_seq = last_seq
        self._progress.batch_done(last_seq, pending)

    def _cancelled(self) -> bool:
        return self.cancel is not None and bool(self.cancel.is_set())

    def _set_state(self, new: str) -> None:
        if self._progress.move(new):
            log.debug("replication %s: -> %s", self.replication_id, new)
            call_back(self.on_state, new)

    def __repr__(self) -> str:
        return f"<Replicator {self.source!r} -> {self.target!r} {self.state}>"


def replicate(source: Database, target: Database, *, live: bool = False, since: Any = None,
              doc_ids: Sequence[str] | None = None, selector: Mapping[str, Any] | None = None,
              filter: Callable[[dict[str, Any]], Any] | None = None,  # noqa: A002
              batch_size: int = 100, batches_limit: int = 10, checkpoint: bool = True,
              cancel: Any = None) -> ReplicationResult:
    """Replicate ``source`` into ``target`` on this thread and return what happened."""
    return Replicator(source, target, live=live, since=since, doc_ids=doc_ids,
                      selector=selector, filter=filter, batch_size=batch_size,
                      batches_limit=batches_limit, checkpoint=checkpoint,
                      cancel=cancel).run()
