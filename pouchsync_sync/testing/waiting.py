"""``wait_for``: block until a document (or one revision of it) is readable in a database.

It follows the database's own changes feed (``feed="longpoll"``, filtered to the one
id), so it wakes on the write that makes the document appear, never on a sleep loop.
Works on every ``Database``: ``LocalDatabase``, ``CouchDatabase``, a client's
``RemoteDatabase``.
"""

from __future__ import annotations

import time
from typing import Any

from ..errors import NotFound, PouchSyncError
from ..store.base import Database

__all__ = ["WaitTimeout", "wait_for"]

#: longest single longpoll, seconds (so a deadline is checked at least this often)
_LONGPOLL = 5.0


class WaitTimeout(PouchSyncError, TimeoutError):
    """``wait_for`` gave up: the document (or revision) was not readable in time.
    A ``TimeoutError`` too, so ``pytest.raises(TimeoutError)`` catches it."""


def wait_for(db: Database, doc_id: str, *, rev: str | None = None,
             timeout: float = 10.0) -> dict[str, Any]:
    """The document ``doc_id`` (at ``rev`` when given) once it is readable in ``db``.

    Without ``rev``: the winning revision once the document exists and is not deleted.
    With ``rev``: that revision, once ``db`` holds it (a conflict or a deleted leaf too).
    Raises ``WaitTimeout`` (a ``TimeoutError``) naming the id and the database after
    ``timeout`` seconds; bad arguments raise ``TypeError`` / ``ValueError`` at once.
    """
    if not isinstance(doc_id, str) or not doc_id:
        raise TypeError(f"doc_id must be a non-empty str, not {doc_id!r}")
    if rev is not None and (not isinstance(rev, str) or not rev):
        raise TypeError(f"rev must be a non-empty str or None, not {rev!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    if not isinstance(db, Database):
        raise TypeError(f"db must be a pouchsync_sync Database, not {type(db).__name__}")
    deadline = time.monotonic() + timeout
    since = db.info().get("update_seq", 0)  # before the first read: no change can slip by
    doc = _read(db, doc_id, rev)
    while doc is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(_timeout_message(db, doc_id, rev, timeout))
        feed = db.changes(since=since, feed="longpoll", doc_ids=[doc_id],
                          timeout=min(remaining, _LONGPOLL))
        since = feed.get("last_seq", since)
        if feed.get("results"):
            doc = _read(db, doc_id, rev)
    return doc


def _read(db: Database, doc_id: str, rev: str | None) -> dict[str, Any] | None:
    """The doc, or None while it is missing (or deleted, when no ``rev`` is asked)."""
    try:
        return db.get(doc_id) if rev is None else db.get(doc_id, rev=rev)
    except NotFound:
        return None


def _timeout_message(db: Database, doc_id: str, rev: str | None, timeout: float) -> str:
    what = f"document {doc_id!r}" + (f" at revision {rev!r}" if rev else "")
    now = ""
    if rev is not None:
        try:
            now = f" (it holds {doc_id!r} at {db.get(doc_id)['_rev']!r})"
        except PouchSyncError:
            now = ""
    name = getattr(db, "name", None)
    return (f"{what} was not readable in database {name!r} ({db!r}) within {timeout:g} s"
            f"{now}")
