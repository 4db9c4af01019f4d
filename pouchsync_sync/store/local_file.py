"""The embedded store's SQLite file: its schema, one connection, and transactions.

Theory of operation. Four tables hold a database (their operations are in
``local_tables``):

* ``revs(id, rev, parent, deleted, body)``: every revision node of every document's
  tree (``pouchsync_sync.revtree``); ``body`` is the JSON text of the revision's
  content, ``NULL`` for ancestors known only by id (from ``_revisions``) or compacted.
* ``docs(id, seq, winner, deleted)``: one row per document at its latest update
  sequence; the ``_changes`` feed is an index scan of ``seq`` (tombstones included).
  ``update_seq`` is ``max(seq)``.
* ``local_docs`` (never replicated, never in changes) and ``attachments`` (bytes stored
  once per md5 digest; revision bodies keep stubs).

Every write runs in one ``BEGIN IMMEDIATE`` transaction (``LocalFile.writing``), so a
process killed mid-write leaves the file consistent. One connection per ``LocalFile``,
guarded by its lock, makes it thread-safe; WAL mode lets several objects and processes
share the file. A committed write wakes the file's shared ``Notifier`` (``notify``),
on which longpoll readers of the same process wait.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator

from ..errors import BadRequest, PouchSyncError, ServerError
from .notify import Notifier, notifier_for

__all__ = ["LocalFile", "SCHEMA", "is_memory_path"]

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS docs (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL, winner TEXT NOT NULL, deleted INTEGER NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS docs_by_seq ON docs (seq);
CREATE TABLE IF NOT EXISTS revs (
    id TEXT NOT NULL, rev TEXT NOT NULL, parent TEXT, deleted INTEGER NOT NULL, body TEXT,
    PRIMARY KEY (id, rev)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS local_docs (
    id TEXT PRIMARY KEY, rev INTEGER NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS attachments (digest TEXT PRIMARY KEY, data BLOB NOT NULL);
"""


def is_memory_path(path: str) -> bool:
    """Whether SQLite opens ``path`` as an in-memory database."""
    return path == ":memory:" or path.startswith("file::memory:")


class LocalFile:
    """One open store file: its connection, the lock guarding it, its uuid and the
    ``Notifier`` its writes wake. Thread-safe; ``close()`` is idempotent.

    ``name`` only serves error messages (``database 'todos' is closed``).
    """

    def __init__(self, path: str, *, name: str) -> None:
        self.path = path
        self.name = name
        #: held for every statement; ``GroupCommit`` queues writers behind it
        self.lock = threading.RLock()
        self.closed = False
        memory = is_memory_path(path)
        try:
            self._conn = sqlite3.connect(path, check_same_thread=False,
                                         isolation_level=None, timeout=30.0)
            if not memory:
                self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(SCHEMA)
            self.uuid = self._meta("uuid") or self._init_uuid()
        except sqlite3.Error as exc:
            raise ServerError(f"cannot open {path!r}: {exc}") from exc
        #: shared by every ``LocalFile`` on the same file in this process
        self.notifier: Notifier = notifier_for(None if memory else os.path.realpath(path))

    def _meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _init_uuid(self) -> str:
        value = uuid.uuid4().hex
        self._conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('uuid', ?)", (value,))
        return self._meta("uuid") or value

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock; SQLite's errors translated (the one boundary
        for ``sqlite3`` in the store)."""
        with self.lock:
            if self.closed:
                raise PouchSyncError(f"database {self.name!r} is closed")
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise ServerError(f"SQLite error: {exc}") from exc
            except UnicodeEncodeError as exc:  # a lone surrogate in an id or a body
                raise BadRequest("Document is not valid UTF-8 text") from exc

    @contextlib.contextmanager
    def writing(self, *, notify: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction; ``notify`` wakes the changes feed's waiters after it
        (not needed for ``_local`` docs, which are not in the feed)."""
        with self.reading() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        if notify:
            self.notifier.notify()

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            try:
                self._conn.close()
            except sqlite3.Error:  # pragma: no cover - closing a broken handle
                log.debug("error closing %s", self.path, exc_info=True)
