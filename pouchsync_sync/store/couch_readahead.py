"""Read-ahead of ``_changes`` pages for a sequential reader of the CouchDB backend.

A replication reads the changes feed page by page, each request starting at the
previous answer's ``last_seq``. Between two pages the reader does its own work (our
sync server encodes and sends the page, the client decodes and writes it) while the
CouchDB server sits idle; then the reader waits for the server again. Once a reader
is seen paging (a request at the ``last_seq`` of a full page this handle answered),
the next page is requested on a thread as soon as a full page is answered, so the
server prepares page k+1 while the reader handles page k. CouchDB's own replicator
overlaps the same way by streaming the feed.

Why a page read ahead is a correct answer (theory of operation):

- Only a *full* page is ever served from read-ahead (``limit`` rows, and not
  ``pending == 0``). It is the feed's answer at the moment it was read: every change
  made later gets a sequence after the feed's end at that moment, so after the page's
  ``last_seq``, and the reader's next requests see it. A doc changed meanwhile may
  appear in the page at its older revision and again later at the newer one, as in
  any read made a moment earlier.
- A page that is not full (the end of the feed, where a reader decides it is caught
  up) is always read fresh, at the reader's request.
- A write through this handle (``invalidate()``) discards every page read before it,
  so a caller that writes and then reads through the same handle sees its write.

Pure decisions (``page_key``, ``is_full_page``) are separate from the thread work in
``ReadAhead``. Sequences are compared for equality only (a key), never ordered.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Hashable, Mapping

__all__ = ["ReadAhead", "is_full_page", "page_key"]

log = logging.getLogger(__name__)

Fetch = Callable[[Any], dict[str, Any]]  # since -> the feed's answer for that page

_MAX_AGE = 30.0      # seconds a page read ahead may wait for its reader
_MAX_PAGES = 4       # pages read ahead and not yet claimed (memory bound)
_MAX_CHAINS = 16     # remembered ends of full pages (readers that may be paging)


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


class _Page:
    """One page being read ahead; ``done`` is set when ``answer`` or ``error`` is."""

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.started = time.monotonic()
        self.done = threading.Event()
        self.answer: dict[str, Any] | None = None
        self.error: BaseException | None = None


class ReadAhead:
    """Pages read ahead for one database handle. Thread-safe.

    ``read(since, options, limit, fetch)`` answers one page request: from a page read
    ahead when one matches, else with ``fetch(since)`` on the caller's thread; then,
    for a paging reader, starts reading the next page on a ``pouchsync-couch-readahead``
    thread. ``invalidate()`` after writes; ``wait_idle()`` until no page is being read;
    ``close()`` stops reading ahead and joins the threads (idempotent).
    """

    def __init__(self, *, wait_timeout: float, max_pages: int = _MAX_PAGES,
                 max_age: float = _MAX_AGE) -> None:
        self._wait_timeout = wait_timeout
        self._max_pages = max_pages
        self._max_age = max_age
        self._lock = threading.Lock()
        self._pages: OrderedDict[Hashable, _Page] = OrderedDict()
        self._chains: OrderedDict[Hashable, None] = OrderedDict()
        self._threads: set[threading.Thread] = set()
        self._generation = 0
        self._closed = False
        self._stats = {"served": 0, "read_ahead": 0, "discarded": 0}

    def stats(self) -> dict[str, int]:
        """Counters: pages ``read_ahead`` (started), ``served`` from them, ``discarded``."""
        with self._lock:
            return dict(self._stats)

    def read(self, since: Any, options: Hashable, limit: int, fetch: Fetch) -> dict[str, Any]:
        """One page of ``limit`` rows from ``since``; ``options`` (hashable) are the
        request's other parameters, ``fetch(since)`` reads such a page from the server."""
        key = page_key(since, (options, limit))
        if key is None:
            return fetch(since)
        answer = self._claim(key, limit)
        served = answer is not None
        if answer is None:
            answer = fetch(since)
        if is_full_page(answer, limit):
            self._after_full_page(key, page_key(answer["last_seq"], (options, limit)),
                                  answer["last_seq"], fetch, paging=served)
        return answer

    def invalidate(self) -> None:
        """A write went through this handle: pages read before it are not served."""
        with self._lock:
            self._generation += 1
            for key in [k for k, p in self._pages.items() if p.done.is_set()]:
                del self._pages[key]
                self._stats["discarded"] += 1

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no page is being read ahead; False if one still is at ``timeout``."""
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
        """The page read ahead for ``key`` if it may be served (waiting for it if it is
        still being read), else None; either way it is no longer kept."""
        with self._lock:
            page = self._pages.pop(key, None)
            current = page is not None and page.generation == self._generation
        if page is None:
            return None
        if current:
            page.done.wait(self._wait_timeout)
        with self._lock:
            usable = (page.done.is_set() and page.error is None
                      and page.generation == self._generation
                      and time.monotonic() - page.started <= self._max_age
                      and is_full_page(page.answer, limit))
            self._stats["served" if usable else "discarded"] += 1
        if page.error is not None:
            log.debug("changes read-ahead failed (%r); reading the page now", page.error)
        return page.answer if usable else None

    def _after_full_page(self, key: Hashable, next_key: Hashable | None, next_since: Any,
                         fetch: Fetch, *, paging: bool) -> None:
        """Remember where this reader asks next; if it is paging, read that page now."""
        if next_key is None:
            return
        with self._lock:
            if self._closed:
                return
            paging = paging or key in self._chains
            self._chains.pop(key, None)
            self._chains[next_key] = None  # where a paging reader asks next
            while len(self._chains) > _MAX_CHAINS:
                self._chains.popitem(last=False)
            if not paging:  # the first full page of this reader: no read-ahead yet
                return
            self._expire_locked()
            if next_key in self._pages or len(self._pages) >= self._max_pages:
                return
            page = _Page(self._generation)
            self._pages[next_key] = page
            thread = threading.Thread(target=self._run, args=(page, next_since, fetch),
                                      name="pouchsync-couch-readahead", daemon=True)
            self._threads.add(thread)
            self._stats["read_ahead"] += 1
        try:
            thread.start()
        except RuntimeError as exc:  # no thread to be had: the reader reads it itself
            with self._lock:
                self._threads.discard(thread)
            page.error = exc
            page.done.set()

    def _expire_locked(self) -> None:
        now = time.monotonic()
        for key in [k for k, p in self._pages.items() if p.done.is_set() and (
                now - p.started > self._max_age or p.generation != self._generation)]:
            del self._pages[key]
            self._stats["discarded"] += 1

    def _run(self, page: _Page, since: Any, fetch: Fetch) -> None:
        try:
            page.answer = fetch(since)
        except Exception as exc:  # the thread's top frame: the reader reads the page itself
            page.error = exc
        finally:
            page.done.set()
            with self._lock:
                self._threads.discard(threading.current_thread())
