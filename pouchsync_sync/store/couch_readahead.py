"""Read-ahead of ``_changes`` pages for a sequential reader of the CouchDB backend.

A replication reads the changes feed page by page, each request starting at the
previous answer's ``last_seq``. Between two pages the reader does its own work (our
sync server encodes and sends the page, the client decodes and writes it) while the
CouchDB server sits idle; then the reader waits for the server again. Once a reader
is seen paging (a request at the ``last_seq`` of a full page this handle answered),
the following pages are requested on a thread, so the server prepares them while
the reader handles the current one. They are read in spans of several pages (up to
``_SPAN_PAGES`` pages, ``_SPAN_ROWS`` rows) in one request, split at row sequences:
pouchdb-server spends several ms per request besides its per-row work. The next span
is requested as soon as fewer than a span of pages is left ahead of the reader.
CouchDB's own replicator overlaps the same way by streaming the feed.

Why a page read ahead is a correct answer (theory of operation):

- Only a *full* page is ever served from read-ahead (``limit`` rows, and not
  ``pending == 0``). It is the feed's answer at the moment it was read (a page cut
  from a span ends at its last row's ``seq``, which CouchDB accepts as ``since``;
  rows without a ``seq`` end the split): every change
  made later gets a sequence after the feed's end at that moment, so after the page's
  ``last_seq``, and the reader's next requests see it. A doc changed meanwhile may
  appear in the page at its older revision and again later at the newer one, as in
  any read made a moment earlier.
- A page that is not full (the end of the feed, where a reader decides it is caught
  up) is always read fresh, at the reader's request.
- A write through this handle (``invalidate()``) discards every page read before it,
  so a caller that writes and then reads through the same handle sees its write.

Pure decisions (``page_key``, ``is_full_page``, ``split_span``) are separate from the thread work in
``ReadAhead``. Sequences are compared for equality only (a key), never ordered.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Hashable, Mapping
from typing import Any, Callable

__all__ = ["ReadAhead", "is_full_page", "page_key", "split_span"]

log = logging.getLogger(__name__)

Fetch = Callable[[Any, int], dict[str, Any]]  # (since, limit) -> the feed's answer

_MAX_AGE = 30.0      # seconds a page read ahead may wait for its reader
_MAX_SPANS = 4       # spans read ahead and not yet claimed (memory bound)
_MAX_CHAINS = 16     # remembered ends of full pages (readers that may be paging)
_SPAN_PAGES = 4      # pages per read-ahead request ...
_SPAN_ROWS = 2000    # ... but no more rows than this (unless one page is bigger)


def page_key(since: Any, options: Hashable) -> tuple[str, Hashable] | None:
    """The identity of a page request: its ``since`` (as canonical JSON) and options;
    None when ``since`` is not JSON (then it is never read ahead)."""
    try:
        return json.dumps(since, sort_keys=True, separators=(",", ":")), options
    except (TypeError, ValueError):
        return None


def is_full_page(answer: Any, limit: int) -> bool:
    """Does this answer stop at ``limit`` rows with more to come, rather than at the
    feed's end? Only such a page may be read ahead or served from read-ahead."""
    if not isinstance(answer, Mapping) or "last_seq" not in answer:
        return False
    rows = answer.get("results")
    return isinstance(rows, list) and len(rows) >= limit > 0 and answer.get("pending") != 0


def span_rows(limit: int) -> int:
    """How many rows one read-ahead request asks for, for pages of ``limit`` rows."""
    return max(limit, min(limit * _SPAN_PAGES, _SPAN_ROWS // limit * limit))


def split_span(since: Any, answer: Any, limit: int) -> list[tuple[Any, dict[str, Any]]]:
    """A span's answer as consecutive full pages of ``limit`` rows, each with the
    ``since`` it answers: ``[(since, page), ...]``. A page ends at its last row's
    ``seq`` (the span's ``last_seq`` for its last row); a trailing partial page and
    everything after a row without a ``seq`` are left out."""
    if not isinstance(answer, Mapping) or not isinstance(answer.get("results"), list) \
            or "last_seq" not in answer:
        return []
    rows = answer["results"]
    pending = answer.get("pending")
    pages: list[tuple[Any, dict[str, Any]]] = []
    at = since
    for end in range(limit, len(rows) + 1, limit):
        last = answer["last_seq"] if end == len(rows) else (
            rows[end - 1].get("seq") if isinstance(rows[end - 1], Mapping) else None)
        if last is None:
            break
        page: dict[str, Any] = {"results": rows[end - limit:end], "last_seq": last}
        if isinstance(pending, int) and not isinstance(pending, bool):
            page["pending"] = pending + len(rows) - end
        pages.append((at, page))
        at = last
    return pages


class _Span:
    """One read-ahead request; ``done`` is set once ``pages`` (key -> page) or
    ``error`` is."""

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.started = time.monotonic()
        self.done = threading.Event()
        self.pages: dict[Hashable, dict[str, Any]] = {}
        self.ends: dict[Hashable, tuple[Hashable, Any]] = {}  # key -> (next key, next since)
        self.error: BaseException | None = None


class ReadAhead:
    """Pages read ahead for one database handle. Thread-safe.

    ``read(since, options, limit, fetch)`` answers one page request: from a page read
    ahead when one matches, else with ``fetch(since, limit)`` on the caller's thread;
    then, for a paging reader, makes sure a span of pages is being read ahead on a
    ``pouchsync-couch-readahead`` thread. ``invalidate()`` after writes;
    ``wait_idle()`` until nothing is being read; ``close()`` stops reading ahead and
    joins the threads (idempotent).
    """

    def __init__(self, *, wait_timeout: float, max_spans: int = _MAX_SPANS,
                 max_age: float = _MAX_AGE) -> None:
        self._wait_timeout = wait_timeout
        self._max_spans = max_spans
        self._max_age = max_age
        self._lock = threading.Lock()
        self._pages: dict[Hashable, _Span] = {}        # page key -> the span holding it
        self._chains: dict[Hashable, None] = {}        # insertion-ordered
        self._threads: set[threading.Thread] = set()
        self._generation = 0
        self._closed = False
        self._stats = {"served": 0, "read_ahead": 0, "discarded": 0}

    def stats(self) -> dict[str, int]:
        """Counters: spans ``read_ahead`` (requests), pages ``served`` from them, and
        pages or spans ``discarded``."""
        with self._lock:
            return dict(self._stats)

    def read(self, since: Any, options: Hashable, limit: int, fetch: Fetch) -> dict[str, Any]:
        """One page of ``limit`` rows from ``since``; ``options`` (hashable) are the
        request's other parameters, ``fetch(since, limit)`` reads from the server."""
        key = page_key(since, (options, limit))
        if key is None:
            return fetch(since, limit)
        answer = self._claim(key, limit)
        served = answer is not None
        if answer is None:
            answer = fetch(since, limit)
        if is_full_page(answer, limit):
            next_since = answer["last_seq"]
            self._after_full_page(key, page_key(next_since, (options, limit)), next_since,
                                  options, limit, fetch, paging=served)
        return answer

    def invalidate(self) -> None:
        """A write went through this handle: pages read before it are not served."""
        with self._lock:
            self._generation += 1
            for key in [k for k, span in self._pages.items() if span.done.is_set()]:
                del self._pages[key]
                self._stats["discarded"] += 1

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is being read ahead; False if something still is at
        ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                threads = list(self._threads)
            if not threads:
                return True
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            if time.monotonic() >= deadline:
                with self._lock:
                    return not self._threads

    def close(self) -> None:
        """Read ahead no more, drop the pages read ahead, join the reading threads."""
        with self._lock:
            self._closed = True
            self._pages.clear()
            self._chains.clear()
        self.wait_idle(self._wait_timeout)

    # -- internals -----------------------------------------------------------------------
    def _claim(self, key: Hashable, limit: int) -> dict[str, Any] | None:
        """The page read ahead for ``key`` if it may be served (waiting for its span if
        it is still being read), else None; either way it is no longer kept."""
        with self._lock:
            span = self._pages.pop(key, None)
            current = span is not None and span.generation == self._generation
        if span is None:
            return None
        if current:
            span.done.wait(self._wait_timeout)
        with self._lock:
            page = span.pages.pop(key, None) if span.done.is_set() else None
            usable = (page is not None and span.generation == self._generation
                      and time.monotonic() - span.started <= self._max_age
                      and is_full_page(page, limit))
            self._stats["served" if usable else "discarded"] += 1
        if span.error is not None:
            log.debug("changes read-ahead failed (%r); reading the page now", span.error)
        return page if usable else None

    def _after_full_page(self, key: Hashable, next_key: Hashable | None, next_since: Any,
                         options: Hashable, limit: int, fetch: Fetch, *, paging: bool) -> None:
        """Remember where this reader asks next; if it is paging and less than a span
        of pages is read ahead of it, read the next span now."""
        if next_key is None:
            return
        with self._lock:
            if self._closed:
                return
            paging = paging or key in self._chains
            self._chains.pop(key, None)
            self._chains[next_key] = None  # where a paging reader asks next
            while len(self._chains) > _MAX_CHAINS:
                del self._chains[next(iter(self._chains))]
            if not paging:  # the first full page of this reader: no read-ahead yet
                return
            self._expire_locked()
            ahead, at_key, at = 0, next_key, next_since
            while at_key in self._pages:
                span = self._pages[at_key]
                if not span.done.is_set() or at_key not in span.ends:
                    return  # a span is being read, or the pages ahead end here
                ahead += 1
                at_key, at = span.ends[at_key]
            spans = len({id(s) for s in self._pages.values()})
            if ahead >= _SPAN_PAGES or spans >= self._max_spans:
                return
            span = _Span(self._generation)
            self._pages[at_key] = span
            thread = threading.Thread(target=self._run,
                                      args=(span, at_key, at, options, limit, fetch),
                                      name="pouchsync-couch-readahead", daemon=True)
            self._threads.add(thread)
            self._stats["read_ahead"] += 1
        try:
            thread.start()
        except RuntimeError as exc:  # no thread to be had: the reader reads it itself
            with self._lock:
                self._threads.discard(thread)
            span.error = exc
            span.done.set()

    def _expire_locked(self) -> None:
        now = time.monotonic()
        for key in [k for k, s in self._pages.items() if s.done.is_set() and (
                now - s.started > self._max_age or s.generation != self._generation)]:
            del self._pages[key]
            self._stats["discarded"] += 1

    def _run(self, span: _Span, key: Hashable, since: Any, options: Hashable, limit: int,
             fetch: Fetch) -> None:
        try:
            pages = split_span(since, fetch(since, span_rows(limit)), limit)
        except Exception as exc:  # noqa: BLE001 - the thread's top frame: the reader reads it itself
            span.error = exc
            pages = []
        try:
            keys = [page_key(at, (options, limit)) for at, _ in pages]
            with self._lock:
                for i, (at_key, (_, page)) in enumerate(zip(keys, pages)):
                    if at_key is None:
                        break
                    span.pages[at_key] = page
                    next_since = page["last_seq"]
                    next_key = keys[i + 1] if i + 1 < len(keys) else page_key(
                        next_since, (options, limit))
                    if next_key is not None:
                        span.ends[at_key] = (next_key, next_since)
                    if at_key != key and not self._closed \
                            and span.generation == self._generation:
                        self._pages.setdefault(at_key, span)
        finally:
            span.done.set()
            with self._lock:
                self._threads.discard(threading.current_thread())
