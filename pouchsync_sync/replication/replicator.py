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
   first-generation doc (``1-x``, no attachments, the only leaf: its whole history is
   itself) comes from the changes read itself as a text row (``changes_texts``, the
   body's stored JSON text, at most ``max_batch_bytes`` of them per read) and goes to
   the target's ``write_missing_texts``, which writes it if it lacks it: no
   ``revs_diff``, no ``bulk_get``, no dict of the doc on the way. With a ``filter``,
   ``doc_ids`` or a ``selector`` the read asks ``changes`` for the docs instead
   (``include_docs``) and the same docs go to ``write_missing``. When the target turns
   out to have most of them (echoes), the reads stop asking for docs until a batch of
   new ones comes again.
5. One-shot: stop when a read finds nothing new. Live: ``paused``, wait on a
   ``longpoll`` read (at most ``longpoll_timeout`` seconds, so ``cancel`` takes effect
   within one wait), ``active`` again when changes come.

``run()`` does all of it on the caller's thread. An owner that runs several live
replications on one thread (a client's ``Sync``: pull and push) drives the same steps
itself instead: ``open()`` (1 and 2), ``catch_up()`` (3 and 4 until a read finds
nothing new; a read-ahead thread only while a backlog moves), ``listen(wake)`` (no
thread waits: the source's subscription or the embedded store's notifier calls
``wake``; ``polls`` says when a periodic re-read is needed too), ``catch_up(woken=True)``
when woken (its first read takes what the subscription delivered, a live read), and
``finish()`` (the deferred checkpoint, the final state). See ``listen.py``.

Checkpoints (CouchDB's ``checkpoint_interval``, 30 s by default): in a one-shot run, and
for a batch that a live ``longpoll`` read delivered and that left a live replication
caught up, a checkpoint is recorded only when the last one is ``checkpoint_interval``
seconds old (give or take a random quarter, so that many live replications started
together, e.g. 1,000 clients of one server, do not all write their checkpoints on the
same change); otherwise the batch's seq is kept as written but not yet recorded, and
recorded by the next batch end past the interval, at the end of every live backlog (a
batch that is not caught up, or came from a normal read), and when the run ends
(complete, cancel, stop or error; best effort). ``checkpoint_interval=0`` records one
after every batch. A replication killed in between resumes from an older checkpoint and
re-reads the docs of at most that interval (they are already on the target: harmless);
none is skipped. ``wait_caught_up`` is
about docs written, so a deferred checkpoint does not delay it.

Steps 3 and the fetch of 4 (the read side, ``changed_batches``) produce a stream of
items: batch start, byte-bounded chunks of docs, batch end. The running thread consumes
it (the write side: upload, checkpoint, state, callbacks). With ``batches_limit > 1`` the
read side runs ahead on a reader thread (``pipeline.Prefetcher``), at most
``batches_limit`` items ahead, so network waits overlap with writes, and it reads the
next batch of changes while it diffs and hands over this one; with 1 it runs inline.
To a target across a round trip (``Database.write_round_trip``) the write side keeps
two whole-doc writes in flight (``writebehind.py``). Either way checkpoints are
recorded in order, only after everything before them is written.

Sequences are opaque: stored and sent back as received, compared only for equality.
A document the target refuses counts in ``doc_write_failures``; a revision the source
can no longer serve likewise; neither stops the replication. Any other error (transport,
server, a refused read) ends the run with status ``"error"`` and the partial result; the
caller decides whether to retry (the client adds backoff). Everything checkpointed stays
done: the next run of the same replication resumes from there.
"""

from __future__ import annotations

import datetime as _dt
import email.utils
import functools
import logging
import random
import threading
import time
import uuid
from collections.abc import Generator, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import Cancelled, PouchSyncError
from ..store.base import Database
from .batch import (
    WrittenDocs,
    apply_filter,
    bulk_get_requests,
    collect_bulk_get,
    doc_sizes,
    is_first_generation,
    next_fetch_size,
    prefer_docs_in_changes,
    revs_diff_request,
    text_sizes,
    texts_in_changes,
    whole_docs_in_changes,
)
from .checkpoint import LOWEST_SEQ, Checkpointer
from .ids import generate_replication_id
from .items import BatchEnd, BatchStart, BatchStats, Done, Fetched
from .listen import SourceListener
from .pipeline import Prefetcher
from .progress import STATES, Progress
from .writebehind import WriteBehind
from .writeside import WriteSide

__all__ = ["ReplicationResult", "Replicator", "replicate", "STATES"]

log = logging.getLogger(__name__)

#: at most this many per-document errors are kept in a result (the counts stay exact)
MAX_ERRORS_KEPT = 1000
#: the default bound on the bytes of docs one write carries (``max_batch_bytes``)
MAX_BATCH_BYTES = 8 * 1024 * 1024
#: the longest wait for a read of changes made ahead (each call has its own timeout)
_AHEAD_TIMEOUT = 3600.0


@dataclass
class ReplicationResult:
    """What one replication run did: its counts, where it ended, and any error that
    ended it.

    Example::

        import pouchsync_sync as ps

        a, b = ps.LocalDatabase(":memory:", name="a"), ps.LocalDatabase(":memory:", name="b")
        a.put({"_id": "x"})
        result = ps.replicate(a, b)                         # a ReplicationResult
        print(result.ok, result.docs_written)               # True 1

    ``ok`` is true when no error ended it (``status`` "complete" or "cancelled");
    ``error`` is the exception that ended it otherwise (``status`` "error").
    ``docs_read`` counts docs read from the source and handed to the target,
    ``docs_written`` those the target accepted; revisions the source could not serve
    and docs the target refused are counted in ``doc_write_failures`` and listed in
    ``errors`` as ``{"id", "rev", "error", "reason"}`` (at most ``MAX_ERRORS_KEPT``).
    ``last_seq`` is the last source sequence written and checkpointed (written only,
    when the final checkpoint write of a live run failed). Times are UTC.
    """

    ok: bool = False
    docs_read: int = 0
    docs_written: int = 0
    doc_write_failures: int = 0
    errors: list[Any] = field(default_factory=list)
    start_time: _dt.datetime | None = None
    end_time: _dt.datetime | None = None
    last_seq: Any = None
    status: str = "complete"
    error: BaseException | None = None


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _rfc5322(moment: _dt.datetime) -> str:
    return email.utils.format_datetime(moment, usegmt=True)


class Replicator(WriteSide):
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
        self._checkpointer: Checkpointer | None = None
        self._result = ReplicationResult()
        self._start_seq: Any = LOWEST_SEQ
        self._seq: Any = LOWEST_SEQ
        self._fetch_size = batch_size
        # with no filter, first-generation docs may come as text rows (changes_texts)
        self._texts_ok = filter is None and doc_ids is None and selector is None
        # ask changes for docs (set per batch by the policy); text rows from the start:
        # the source bounds their bytes, rows without text are diffed as usual
        self._docs_in_changes = self._texts_ok
        self._whole_lacked = 1.0  # share of the last whole docs the target lacked (write side)
        self._behind: WriteBehind | None = None  # uploads in flight to a remote target
        self._unsaved: tuple[Any, Any] | None = None  # live: (seq, pending) written, not recorded
        self._saved_at = float("-inf")  # time.monotonic() of the last checkpoint recorded
        self._next_interval = checkpoint_interval  # this one's, jittered after each record

        self._listener = SourceListener(source)  # the steps API's wake-ups
        self._caught_up_at: Any = None  # the seq the last catch_up() ended caught up at

        self._progress = Progress(LOWEST_SEQ)
        self._run_lock = threading.Lock()
        self._ran = False

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
        return self._progress.wait_caught_up(timeout, self._probe_nothing_new)

    def _probe_nothing_new(self, since: Any) -> bool:
        try:
            answer = self.source.changes(since=since, limit=1, doc_ids=self.doc_ids,
                                         selector=self.selector)
        except PouchSyncError as exc:
            log.debug("caught-up probe failed: %r", exc)
            return False
        return not answer.get("results")

    # -- the run ----------------------------------------------------------------------
    def run(self) -> ReplicationResult:
        """Replicate until done (one-shot), cancelled or failed; never raises for those."""
        self._claim()
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
        """Start the run: Verify Peers and Find Common Ancestry (state ``active``).

        The steps API, for an owner that drives a live replication on its own thread
        instead of ``run()``: ``open()``; ``catch_up()``; then, while live, ``listen(wake)``,
        wait for ``wake`` (or ``polls``: a while), ``catch_up(woken=True)``, again; and
        ``finish()`` to end (always, also after an error). Raises what failed.
        """
        self._claim()
        self._open()

    def _claim(self) -> None:
        with self._run_lock:
            if self._ran:
                raise PouchSyncError("a Replicator runs once; create a new one")
            self._ran = True

    def _open(self) -> None:
        self._result.start_time = _now()
        self._set_state("active")
        self.verify_peers()
        self.find_common_ancestry()

    def catch_up(self, *, woken: bool = False) -> bool:
        """Replicate until a read finds nothing new: True then (state ``paused`` when
        live), False when cancelled; raises what failed.

        ``woken``: a wake-up from ``listen`` started this pass, so its first read takes
        what the source's subscription delivered (a live read: a batch that leaves it
        caught up may defer its checkpoint). The first read runs on this thread; only
        when more is pending does the read side go ahead on a reader thread, which ends
        with the pass.
        """
        if self._cancelled():
            return False
        since = self._seq
        live_first = woken and self._listener.pushed
        first = self.read_batch_of_changes(since, longpoll=live_first, timeout=0.0)
        changes = first[0]
        batches = functools.partial(self.changed_batches, since=since, first=first,
                                    live_first=woken, one_pass=True)
        if not changes.get("results") or changes.get("pending") == 0 \
                or self.batches_limit <= 1:
            done = self._consume(batches(threading.Event()))
        else:
            reader = Prefetcher(batches, depth=self.batches_limit, name=self._reader_name(),
                                join_timeout=self.longpoll_timeout + 10.0).start()
            try:
                done = self._consume(reader.items(self._cancelled))
            finally:
                reader.close()
        self._caught_up_at = self._seq if done else None
        return done

    def listen(self, wake: Callable[[], Any]) -> None:
        """Call ``wake()`` (from any thread; it must not block) when the source may have
        changes past what was replicated; call again after each ``catch_up``. A source
        that cannot tell across processes is to be re-read now and then (``polls``)."""
        if not self._ran:
            raise PouchSyncError("listen() before open()")
        caught_up = self._caught_up_at is not None and self._caught_up_at == self._seq
        self._listener.arm(wake, since=self._seq, caught_up=caught_up,
                           read_args=self._changes_args())

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
        result = self._result
        if result.start_time is None:
            result.start_time = _now()
        if error is not None:
            if isinstance(error, Cancelled) and self._cancelled():
                # our owner cancelled us and closed what the call in flight waited on
                status, error = "cancelled", None
                log.debug("replication %s: a call in flight was cancelled",
                          self.replication_id)
            elif isinstance(error, PouchSyncError):
                log.warning("replication %s -> %s failed: %r", self.source, self.target,
                            error)
            else:
                log.error("replication %s -> %s crashed", self.source, self.target,
                          exc_info=error)
        if self._unsaved is not None:
            try:  # best effort: after an error it may be the very connection it needs
                self.flush_checkpoint()
            except Exception as exc:  # noqa: BLE001 - best effort, logged
                log.info("replication %s: last checkpoint not recorded (%r)",
                         self.replication_id, exc)
        result.end_time = _now()
        result.status = status
        result.error = error
        result.ok = error is None
        result.last_seq = self._seq
        log.info("replication %s -> %s %s: read %d, written %d, failures %d",
                 self.source, self.target, status, result.docs_read, result.docs_written,
                 result.doc_write_failures)
        self._set_state(status)
        return result

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
        if self.checkpoint:
            self._checkpointer = Checkpointer(self.source, self.target, self.replication_id,
                                              self.session_id)
            if self.since is None:
                start = self._checkpointer.find_start_seq()
            else:
                self._checkpointer.retrieve_replication_logs()  # their revs, for writing
        if self.since is not None:
            start = self.since
        log.info("replication %s: %s -> %s from seq %r", self.replication_id, self.source,
                 self.target, start)
        self._start_seq = start
        self._seq = start
        self._progress.batch_done(start, None)

    def locate_changed_documents(self) -> bool:
        """Replicate batch after batch; False when cancelled.

        The read side (``changed_batches``: changes, revision difference, fetches) runs
        on a reader thread ``batches_limit`` items ahead when ``batches_limit > 1``, else
        inline; this thread uploads, checkpoints and owns the state.
        """
        if self.batches_limit <= 1:
            return self._consume(self.changed_batches(threading.Event()))
        reader = Prefetcher(self.changed_batches, depth=self.batches_limit,
                            name=self._reader_name(),
                            join_timeout=self.longpoll_timeout + 10.0).start()
        try:
            return self._consume(reader.items(self._cancelled))
        finally:
            reader.close()

    def changed_batches(self, stop: threading.Event, *, since: Any = None,
                        first: tuple[dict[str, Any], int] | None = None,
                        live_first: bool = False, one_pass: bool = False) -> Iterator[Any]:
        """The read side: Listen to Changes Feed, Read Batch of Changes, Calculate
        Revision Difference and Fetch Changed Documents, as a stream of items.

        One-shot: until a read finds nothing new (then ``Done``). Live: then on
        longpoll reads until cancelled or ``stop`` is set. With read-ahead
        (``batches_limit`` > 1) the next batch of changes is read while this one is
        diffed and handed over, as long as the source says more is pending.
        ``one_pass`` (``catch_up``): from ``since``, starting with the read ``first``
        already made (a live read when ``live_first``), until caught up, then ``Done``.
        """
        seq = self._start_seq if since is None else since
        caught_up = False
        ahead: Future[tuple[dict[str, Any], int]] | None = None
        pool: ThreadPoolExecutor | None = None
        try:
            while True:
                if stop.is_set() or self._cancelled():
                    return
                if caught_up and (one_pass or not self.live):
                    yield Done()
                    return
                live_read = caught_up
                if first is not None:
                    (changes, ticket), first = first, None
                    live_read = live_first
                elif ahead is not None:
                    changes, ticket = ahead.result(timeout=_AHEAD_TIMEOUT)
                    ahead = None
                else:
                    changes, ticket = self.read_batch_of_changes(seq, longpoll=caught_up)
                rows = changes.get("results") or []
                last_seq = changes.get("last_seq")
                if last_seq is None:
                    last_seq = seq
                pending = changes.get("pending")
                if rows and pending != 0 and self.batches_limit > 1:
                    if pool is None:
                        pool = ThreadPoolExecutor(
                            max_workers=1, thread_name_prefix="pouchsync-changes-ahead"
                            f"[{self.source.name}->{self.target.name}]")
                    ahead = pool.submit(self.read_batch_of_changes, last_seq, longpoll=False)
                if rows:
                    yield BatchStart()
                    if not (yield from self.locate_changed_documents_in(rows, stop)):
                        return  # stopped half way: never checkpoint past what was not fetched
                yield BatchEnd(ticket=ticket, last_seq=last_seq, pending=pending,
                                caught_up=not rows or pending == 0, had_rows=bool(rows),
                                live_read=live_read)
                caught_up = not rows or pending == 0
                seq = last_seq
                if caught_up and pool is not None and ahead is None:
                    pool.shutdown(wait=True)  # a live run waits on longpolls now: no thread idle
                    pool = None
        finally:
            if pool is not None:
                pool.shutdown(wait=True)  # a read in flight ends by its own timeout

    def read_batch_of_changes(self, since: Any, *, longpoll: bool,
                              timeout: float | None = None) -> tuple[dict[str, Any], int]:
        """Read Batch of Changes (``feed=longpoll``: Listen to Changes Feed when caught
        up, for ``timeout`` seconds, ``longpoll_timeout`` by default)."""
        ticket = self._progress.begin_read()
        if self._texts_ok and self._docs_in_changes and not longpoll:
            return self.source.changes_texts(since=since, limit=self.batch_size,
                                             max_bytes=self.max_batch_bytes), ticket
        kwargs = self._changes_args()
        if longpoll:
            kwargs.update(feed="longpoll",
                          timeout=self.longpoll_timeout if timeout is None else timeout)
        return self.source.changes(since=since, **kwargs), ticket

    def _changes_args(self) -> dict[str, Any]:
        """The arguments of a ``changes`` read (not of ``changes_texts``), less ``since``
        and the feed."""
        kwargs: dict[str, Any] = dict(limit=self.batch_size, style="all_docs",
                                      include_docs=self.filter is not None or self._docs_in_changes)
        if self.doc_ids is not None:
            kwargs["doc_ids"] = self.doc_ids
        if self.selector is not None:
            kwargs["selector"] = self.selector
        return kwargs

    def _reader_name(self) -> str:
        return f"pouchsync-replicate-reader[{self.source.name}->{self.target.name}]"

    def locate_changed_documents_in(self, rows: Sequence[Mapping[str, Any]],
                                    stop: threading.Event
                                    ) -> Generator[Fetched, None, bool]:
        """Filter, compare with the target, and fetch what it lacks, in byte-bounded chunks.

        First-generation docs the changes read carried whole (``include_docs``) go to
        the target as they are (its ``write_missing`` skips what it has: no diff, no
        fetch); the other rows are diffed and what is missing comes from ``bulk_get``
        in chunks sized so one answer stays near ``max_batch_bytes``. Returns False
        when stopped before the end.
        """
        policy = BatchStats()
        read = len(rows)
        texts: Sequence[Any] = []
        if rows and rows[0].__class__ is list:  # changes_texts' rows
            texts, rows = texts_in_changes(rows)
        if texts:
            sizes = text_sizes(texts)
            # checked here, ahead of the write (on the read-ahead thread)
            yield self._fetched(self.target.check_texts(texts), [], policy, len(texts),
                                sizes=sizes, whole=True, texts=True)
        rows = apply_filter(rows, self.filter)
        whole, rest = whole_docs_in_changes(rows)
        if whole:
            yield self._fetched(whole, [], policy, len(whole), whole=True)
        diff = self.calculate_revision_difference(rest)
        requests = bulk_get_requests(diff)
        start = 0
        while start < len(requests):
            if stop.is_set() or self._cancelled():
                return False
            chunk = requests[start:start + self._fetch_size]
            start += len(chunk)
            docs, errors = self.fetch_changed_documents(chunk)
            item = self._fetched(docs, errors, policy)
            self._fetch_size = next_fetch_size(len(chunk), len(docs), sum(item.sizes),
                                               self.max_batch_bytes, self.batch_size)
            yield item
        self._docs_in_changes = prefer_docs_in_changes(
            policy.first_generation, read, policy.bytes, policy.count, self.batch_size,
            self.max_batch_bytes, lacked=self._whole_lacked if whole or texts else 1.0)
        return True

    def _fetched(self, docs: Sequence[Any], errors: list[dict[str, Any]],
                 policy: BatchStats, first_generation: int | None = None, *,
                 sizes: list[int] | None = None, whole: bool = False,
                 texts: bool = False) -> Fetched:
        """``docs`` as an item for the write side, counted for the read policy."""
        if sizes is None:
            sizes = doc_sizes(docs, self.max_batch_bytes)
        policy.bytes += sum(sizes)
        policy.count += len(docs)
        if first_generation is None:
            first_generation = sum(1 for doc in docs if is_first_generation(doc))
        policy.first_generation += first_generation
        return Fetched(docs=docs, sizes=sizes, errors=errors, whole=whole,  # type: ignore[arg-type]
                       texts=texts)

    def finish_batch(self, end: BatchEnd, batch: BatchStats) -> None:
        """Record Replication Checkpoint after a batch; report it; pause when caught up."""
        if end.had_rows or end.last_seq != self._seq:
            if self._defer_checkpoint(end):
                self._unsaved = (end.last_seq, end.pending)
                self._mark_written(end.last_seq, end.pending)
            else:
                self.record_replication_checkpoint(end.last_seq, end.pending)
        elif end.pending is not None:
            self._progress.set_pending(end.pending)
        if batch.written or batch.failures:
            self._notify_batch(batch.written)
        if end.caught_up:
            self._progress.caught_up(end.ticket)
            if self.live:
                self._set_state("paused")

    def _defer_checkpoint(self, end: BatchEnd) -> bool:
        """The last checkpoint is recent and this batch's may wait: a one-shot run's (its
        end records it) or a live run's that a live read left caught up."""
        if self._checkpointer is None or self.checkpoint_interval <= 0:
            return False
        if self.live and not (end.live_read and end.caught_up):
            return False  # a live run's backlog: every batch
        return time.monotonic() - self._saved_at < self._next_interval

    def flush_checkpoint(self) -> None:
        """Record the checkpoint the run deferred, if any."""
        if self._unsaved is not None:
            seq, pending = self._unsaved
            self.record_replication_checkpoint(seq, pending)

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
        if self._checkpointer is not None:
            result = self._result
            self._checkpointer.record_checkpoint(
                recorded_seq=last_seq, start_last_seq=self._start_seq,
                start_time=_rfc5322(result.start_time or _now()), end_time=_rfc5322(_now()),
                docs_read=result.docs_read, docs_written=result.docs_written,
                doc_write_failures=result.doc_write_failures)
            self._saved_at = time.monotonic()
            self._next_interval = self.checkpoint_interval * random.uniform(0.75, 1.25)
        self._unsaved = None
        self._mark_written(last_seq, pending)

    def _mark_written(self, last_seq: Any, pending: Any) -> None:
        self._seq = last_seq
        self._result.last_seq = last_seq
        self._progress.batch_done(last_seq, pending)

    # -- helpers ----------------------------------------------------------------------
    def _cancelled(self) -> bool:
        return self.cancel is not None and bool(self.cancel.is_set())

    def _keep_errors(self, errors: Sequence[Any]) -> None:
        room = MAX_ERRORS_KEPT - len(self._result.errors)
        if room > 0:
            self._result.errors.extend(errors[:room])

    def _set_state(self, new: str) -> None:
        if self._progress.move(new):
            log.debug("replication %s: -> %s", self.replication_id, new)
            self._call(self.on_state, new)

    def _notify_batch(self, written: list[dict[str, Any]]) -> None:
        if self.on_batch is None:
            return
        result = self._result
        self._call(self.on_batch, {
            "docs": WrittenDocs(written),
            "docs_read": result.docs_read,
            "docs_written": result.docs_written,
            "doc_write_failures": result.doc_write_failures,
            "last_seq": self._seq,
            "pending": self.pending,
        })

    def _call(self, callback: Callable[[Any], Any] | None, arg: Any) -> None:
        if callback is None:
            return
        try:
            callback(arg)
        except Exception:  # a user callback must never break replication
            log.exception("replication callback %r raised", callback)

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
