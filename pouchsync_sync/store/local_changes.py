"""The embedded store's changes feed: ``_changes`` pages and the longpoll wait.

The feed is an index scan of ``docs`` by ``seq`` (one row per doc at its latest
sequence, tombstones included), read a page at a time, each page under the file's lock
and the selector matched outside it, so a slow ``$regex`` never holds the database's
other readers and writers (https://docs.couchdb.org/en/stable/api/database/changes.html).
A ``longpoll`` read with nothing new waits on the file's ``Notifier`` (a write through
any object on the file in this process wakes it) and re-reads at least every
``POLL_INTERVAL`` (writes of other processes), until its timeout.
"""

from __future__ import annotations

import contextlib
import json
import reprlib
import sqlite3
import time
from collections.abc import Sequence
from typing import Any, Callable

from .. import gcpause, revtree
from ..errors import BadRequest
from ..jsoncodec import loads
from . import local_tables as tables
from .local_file import LocalFile
from .local_reads import render
from .notify import POLL_INTERVAL

__all__ = ["DEFAULT_LONGPOLL", "changes", "parse_since"]

#: seconds a longpoll read waits when no timeout is given (CouchDB's default)
DEFAULT_LONGPOLL = 60.0

Match = Callable[[dict[str, Any]], bool]


def parse_since(file: LocalFile, since: Any) -> int:
    """The position ``since`` names: a sequence number, ``"now"``, or ``None`` (0)."""
    if since == "now":
        with file.reading() as conn:
            return tables.update_seq(conn)
    if since is None:
        return 0
    if isinstance(since, bool):
        raise BadRequest(f"Malformed since: {since!r}")
    if isinstance(since, int) and 0 <= since <= tables.SQLITE_MAX_INT:
        return since
    if (isinstance(since, str) and since.isdigit() and since.isascii()
            and int(since) <= tables.SQLITE_MAX_INT):
        return int(since)
    # reprlib: bounded in length and depth (a client's since may be huge or deep)
    raise BadRequest(f"Malformed since: {reprlib.repr(since)}")


def changes(file: LocalFile, position: int, *, limit: int | None, include_docs: bool,
            conflicts: bool, style: str, doc_ids: Sequence[str] | None, match: Match | None,
            descending: bool, feed: str, timeout: float | None,
            attachments: bool) -> dict[str, Any]:
    """One answer of the feed from ``position`` (checked arguments); a ``longpoll``
    ``feed`` waits up to ``timeout`` seconds for a change when there is none."""
    wait_for = DEFAULT_LONGPOLL if timeout is None else float(timeout)
    deadline = time.monotonic() + wait_for
    while True:
        generation = file.notifier.generation
        with gcpause.paused() if include_docs else contextlib.nullcontext():  # a page of docs
            result = _changes_once(file, position, limit, include_docs or match is not None,
                                   conflicts, style, doc_ids, match, descending, attachments)
        if match is not None and not include_docs:
            for row in result["results"]:
                row.pop("doc", None)
        remaining = deadline - time.monotonic()
        if result["results"] or feed != "longpoll" or remaining <= 0:
            return result
        position = result["last_seq"]
        file.notifier.wait(generation, min(remaining, POLL_INTERVAL))


def _changes_once(file: LocalFile, since: int, limit: int | None, include_docs: bool,
                  conflicts: bool, style: str, doc_ids: Sequence[str] | None,
                  match: Match | None, descending: bool, attachments: bool) -> dict[str, Any]:
    want = None if limit is None else max(limit, 1)  # CouchDB treats limit=0 as 1
    if doc_ids is not None and not doc_ids:
        return {"results": [], "last_seq": since, "pending": 0}
    # one bound parameter whatever the number of ids (SQLite allows 32,766 at most)
    id_filter = " AND id IN (SELECT value FROM json_each(?))" if doc_ids else ""
    # (the stdlib's ASCII text: an id holding a lone surrogate is still encoded)
    id_args: list[Any] = [json.dumps(list(doc_ids))] if doc_ids else []
    page = 1000 if want is None else max(want, 100)
    results: list[dict[str, Any]] = []
    last = since
    need_trees = conflicts or attachments
    # all_docs lists every leaf: only docs with more than one revision need their tree
    columns = "seq, id, winner, deleted, " + (
        "(SELECT body FROM revs WHERE revs.id = docs.id AND revs.rev = docs.winner)"
        if include_docs else "NULL") + (
        ", (SELECT count(*) FROM revs WHERE revs.id = docs.id)" if style == "all_docs"
        and not need_trees else ", 1")
    exhausted = False  # ascending: the last page read was the end of the feed
    cursor: int | None = None  # descending: below this seq
    while want is None or len(results) < want:
        with file.reading() as conn:
            if descending:
                bound = "" if cursor is None else " AND seq < ?"
                rows = conn.execute(
                    f"SELECT {columns} FROM docs WHERE seq > ?{bound}{id_filter} "
                    f"ORDER BY seq DESC LIMIT ?",
                    [since, *([] if cursor is None else [cursor]), *id_args, page]).fetchall()
            else:
                rows = conn.execute(
                    f"SELECT {columns} FROM docs WHERE seq > ?{id_filter} "
                    f"ORDER BY seq LIMIT ?", [last, *id_args, page]).fetchall()
            if not rows:
                exhausted = True
                break
            page_rows = _change_rows(conn, rows, include_docs, conflicts, style,
                                     need_trees, attachments)
        # the selector runs outside the database's lock: a slow $regex must not
        # hold every other reader and writer of this database
        for row in page_rows:
            cursor = row["seq"]
            if not descending:
                last = row["seq"]
            if match is not None and not match(row["doc"]):
                continue
            results.append(row)
            if want is not None and len(results) >= want:
                break
        if len(rows) < page:
            exhausted = last == rows[-1][0]
            break
    if descending:
        last = results[-1]["seq"] if results else since
        pending = 0
    elif exhausted:
        pending = 0
    else:
        with file.reading() as conn:
            pending = tables.pending(conn, last, id_filter, id_args)
    return {"results": results, "last_seq": last, "pending": pending}


def _change_rows(conn: sqlite3.Connection, rows: list[Any], include_docs: bool,
                 conflicts: bool, style: str, need_trees: bool,
                 attachments: bool) -> list[dict[str, Any]]:
    """The ``changes`` rows of one page read from ``docs``."""
    trees = tables.load_trees(conn, [r[1] for r in rows if need_trees or r[5] > 1])
    out: list[dict[str, Any]] = []
    for seq, doc_id, win, deleted, body_text, _revs in rows:
        row: dict[str, Any] = {"seq": seq, "id": doc_id}
        if style == "all_docs" and doc_id in trees:
            row["changes"] = [{"rev": r} for r in revtree.leaves(trees[doc_id])]
        else:
            row["changes"] = [{"rev": win}]
        if deleted:
            row["deleted"] = True
        if include_docs:
            tree = trees[doc_id] if need_trees else {win: revtree.Node(0, None, bool(deleted))}
            row["doc"] = render(conn, doc_id, win, tree, loads(body_text) if body_text else {},
                                conflicts=conflicts, attachments=attachments)
        out.append(row)
    return out
