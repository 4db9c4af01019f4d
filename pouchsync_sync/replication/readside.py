"""The read side of a replication: changes, revision difference and fetches, as items.

Steps 3 and the fetch of 4 of the replicator's theory of operation: *Read Batch of
Changes* (``changes_texts`` for first-generation docs as text rows, else ``changes``
with ``style=all_docs``), the Python ``filter``, *Calculate Revision Difference* and
*Fetch Changed Documents* (given by the replicator), handed to the write side as a
stream of items (``items.py``): batch start, byte-bounded chunks of docs, batch end.

The shortcut: a first-generation doc (``1-x``, no attachments, the only leaf: its whole
history is itself) comes from the changes read itself as a text row (``changes_texts``,
the body's stored JSON text, at most ``max_batch_bytes`` of them per read) and goes to
the target's ``write_missing_texts``, which writes it if it lacks it: no ``revs_diff``,
no ``bulk_get``, no dict of the doc on the way. With a ``filter``, ``doc_ids`` or a
``selector`` the read asks ``changes`` for the docs instead (``include_docs``) and the
same docs go to ``write_missing``. When the target turns out to have most of them
(echoes), the reads stop asking for docs until a batch of new ones comes again.

``ReadSide`` runs on the replicating thread, or on a reader thread at most
``batches_limit`` items ahead (``pipeline.Prefetcher``), so network waits overlap with
writes; with read-ahead (``batches_limit > 1``) it also reads the next batch of changes
on a ``pouchsync-changes-ahead`` thread while it diffs and hands over this one. Its
read policy (ask ``changes`` for docs or not, the size of the next ``bulk_get``) is its
own; only the share of whole docs the target lacked comes from the write side
(``lacked``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

from ..errors import PouchSyncError
from ..store.base import Database
from .batch import (
    apply_filter,
    bulk_get_requests,
    doc_sizes,
    is_first_generation,
    next_fetch_size,
    prefer_docs_in_changes,
    text_sizes,
    texts_in_changes,
    whole_docs_in_changes,
)
from .items import BatchEnd, BatchStart, BatchStats, Done, Fetched

__all__ = ["ReadSide"]

log = logging.getLogger("pouchsync_sync.replication.replicator")

#: the longest wait for a read of changes made ahead (each call has its own timeout)
_AHEAD_TIMEOUT = 3600.0

_Diff = Callable[[Sequence[Mapping[str, Any]]], dict[str, Any]]
_Fetch = Callable[[list[dict[str, Any]]], tuple[list[dict[str, Any]], list[dict[str, Any]]]]


class ReadSide:
    """The read side of one replication from ``source`` to ``target``.

    The replicator passes in what it needs: its options, ``begin_read`` (a ticket per
    changes read, for "caught up"), ``cancelled``, its *Calculate Revision Difference*
    (``revs_diff``) and *Fetch Changed Documents* (``fetch``) steps, and ``lacked``
    (the share of the last whole docs the target lacked, from the write side). One
    thread at a time runs it.
    """

    def __init__(self, source: Database, target: Database, *, live: bool,
                 doc_ids: list[str] | None, selector: Mapping[str, Any] | None,
                 filter: Callable[[dict[str, Any]], Any] | None,  # noqa: A002
                 batch_size: int, batches_limit: int, longpoll_timeout: float,
                 max_batch_bytes: int, begin_read: Callable[[], int],
                 cancelled: Callable[[], bool], revs_diff: _Diff, fetch: _Fetch,
                 lacked: Callable[[], float]) -> None:
        self.source = source
        self.target = target
        self.live = live
        self.doc_ids = doc_ids
        self.selector = selector
        self.filter = filter
        self.batch_size = batch_size
        self.batches_limit = batches_limit
        self.longpoll_timeout = longpoll_timeout
        self.max_batch_bytes = max_batch_bytes
        self._begin_read = begin_read
        self._cancelled = cancelled
        self._revs_diff = revs_diff
        self._fetch = fetch
        self._lacked = lacked
        self._fetch_size = batch_size
        # with no filter, first-generation docs may come as text rows (changes_texts)
        self._texts_ok = filter is None and doc_ids is None and selector is None
        # ask changes for docs (set per batch by the policy); text rows from the start:
        # the source bounds their bytes, rows without text are diffed as usual
        self._docs_in_changes = self._texts_ok

    @property
    def thread_name(self) -> str:
        """The name of a reader thread that runs this read side ahead."""
        return f"pouchsync-replicate-reader[{self.source.name}->{self.target.name}]"

    def changed_batches(self, stop: threading.Event, *, since: Any,
                        first: tuple[dict[str, Any], int] | None = None,
                        live_first: bool = False, one_pass: bool = False) -> Iterator[Any]:
        """Listen to Changes Feed, Read Batch of Changes, Calculate Revision Difference
        and Fetch Changed Documents from ``since``, as a stream of items.

        One-shot: until a read finds nothing new (then ``Done``). Live: then on
        longpoll reads until cancelled or ``stop`` is set. With read-ahead
        (``batches_limit`` > 1) the next batch of changes is read while this one is
        diffed and handed over, as long as the source says more is pending.
        ``one_pass`` (``catch_up``): starting with the read ``first`` already made (a
        live read when ``live_first``), until caught up, then ``Done``.
        """
        seq = since
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
        up, for ``timeout`` seconds, ``longpoll_timeout`` by default), with its ticket."""
        ticket = self._begin_read()
        if self._texts_ok and self._docs_in_changes and not longpoll:
            return self.source.changes_texts(since=since, limit=self.batch_size,
                                             max_bytes=self.max_batch_bytes), ticket
        kwargs = self.changes_args()
        if longpoll:
            kwargs.update(feed="longpoll",
                          timeout=self.longpoll_timeout if timeout is None else timeout)
        return self.source.changes(since=since, **kwargs), ticket

    def changes_args(self) -> dict[str, Any]:
        """The arguments of a ``changes`` read (not of ``changes_texts``), less ``since``
        and the feed."""
        kwargs: dict[str, Any] = dict(limit=self.batch_size, style="all_docs",
                                      include_docs=self.filter is not None or self._docs_in_changes)
        if self.doc_ids is not None:
            kwargs["doc_ids"] = self.doc_ids
        if self.selector is not None:
            kwargs["selector"] = self.selector
        return kwargs

    def nothing_new_since(self, since: Any) -> bool:
        """A probe read from ``since`` (for ``wait_caught_up``): True when it finds no
        change; False when it finds one or fails."""
        try:
            answer = self.source.changes(since=since, limit=1, doc_ids=self.doc_ids,
                                         selector=self.selector)
        except PouchSyncError as exc:
            log.debug("caught-up probe failed: %r", exc)
            return False
        return not answer.get("results")

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
        diff = self._revs_diff(rest)
        requests = bulk_get_requests(diff)
        start = 0
        while start < len(requests):
            if stop.is_set() or self._cancelled():
                return False
            chunk = requests[start:start + self._fetch_size]
            start += len(chunk)
            docs, errors = self._fetch(chunk)
            item = self._fetched(docs, errors, policy)
            self._fetch_size = next_fetch_size(len(chunk), len(docs), sum(item.sizes),
                                               self.max_batch_bytes, self.batch_size)
            yield item
        self._docs_in_changes = prefer_docs_in_changes(
            policy.first_generation, read, policy.bytes, policy.count, self.batch_size,
            self.max_batch_bytes, lacked=self._lacked() if whole or texts else 1.0)
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
