"""The embedded store's text rows (``store.texts``): read and written as stored.

``read`` answers ``changes_texts`` with the body texts the ``revs`` table holds, never
parsing them; ``write`` stores checked texts (``texts.check_text_rows``) of docs the
file lacks with two plain inserts each, and hands anything else (a doc the file
already has, a second first revision of a doc new in the batch) to the general
replicated merge, in the same transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Callable

from .. import revtree
from ..jsoncodec import loads
from . import local_tables as tables
from .incoming import Prepared
from .texts import text_length

__all__ = ["MergeReplicated", "read", "write"]

#: the store's general replicated merge (``local_writes.Writer.merge_replicated``)
MergeReplicated = Callable[[sqlite3.Connection, list[Prepared]],
                           tuple[list[Prepared], list[dict[str, Any]]]]

_PAGE = 1000
_INSERT_REV = "INSERT INTO revs (id, rev, parent, deleted, body) VALUES (?, ?, NULL, 0, ?)"
_INSERT_DOC = "INSERT INTO docs (id, seq, winner, deleted) VALUES (?, ?, ?, 0)"
_INSERT_NEW_DOC = "INSERT OR IGNORE INTO docs (id, seq, winner, deleted) VALUES (?, ?, ?, 0)"

# One look at a doc's revisions gives what its row needs: 0 when it has several (its
# leaves come from its tree, and no text travels), else the body of its only revision
# when that is a live first generation (the text of nothing else is sent), else NULL.
_READ = (
    "SELECT seq, id, winner, "
    "(SELECT CASE WHEN count(*) > 1 THEN 0 "
    "WHEN substr(docs.winner, 1, 2) = '1-' AND docs.deleted = 0 THEN body END "
    "FROM revs WHERE revs.id = docs.id), deleted "
    "FROM docs WHERE seq > ? ORDER BY seq LIMIT ?")
_SEVERAL = 0
#: the marker of a body that may hold attachments (it may also be a nested key)
_ATTACHMENTS = '"_attachments":'


def read(conn: sqlite3.Connection, since: int, want: int | None,
         max_bytes: int | None) -> dict[str, Any]:
    """``changes_texts`` from ``since`` (a parsed position), at most ``want`` rows."""
    results: list[list[Any]] = []
    append = results.append
    last = since
    room = max_bytes  # bytes of text still allowed (None: no bound)
    exhausted = False
    while want is None or len(results) < want:
        size = _PAGE if want is None else min(_PAGE, want - len(results))
        rows = conn.execute(_READ, (last, size)).fetchall()
        if not rows:
            exhausted = True
            break
        multi = [row[1] for row in rows if row[3] == _SEVERAL]
        trees = tables.load_trees(conn, multi) if multi else {}
        for seq, doc_id, win, body, deleted in rows:
            if body.__class__ is not str:
                append([seq, doc_id, revtree.leaves(trees[doc_id]) if body == _SEVERAL
                        else [win], bool(deleted), None])
                continue
            # the marker may be a nested key (no attachment): the body's top level says
            if _ATTACHMENTS in body and "_attachments" in loads(body):
                body = None
            elif room is not None:
                length = text_length(body)
                if length <= room:
                    room -= length
                else:
                    body = None
            append([seq, doc_id, [win], False, body])
        last = rows[-1][0]
        if len(rows) < size:
            exhausted = True
            break
    pending = 0 if exhausted else tables.pending(conn, last)
    return {"results": results, "last_seq": last, "pending": pending}


def write(conn: sqlite3.Connection, rows: Sequence[tuple[str, str, str]],
          merge_replicated: MergeReplicated) -> tuple[list[int], list[dict[str, Any]]]:
    """Store checked text rows in the open write transaction ``conn``:
    ``(positions written, failures)``; ``merge_replicated`` decides the rows that are
    not plain inserts."""
    if not rows:
        return [], []
    seq = tables.update_seq(conn)
    # the common case of an initial replication: every doc new here, each once. Tried
    # first, whole: the docs rows go in unless an id is there (or twice); if one was,
    # undone, and the rows go the general way below.
    conn.execute("SAVEPOINT texts")
    new_ids, new_revs, _ = zip(*rows)
    added = conn.executemany(
        _INSERT_NEW_DOC, zip(new_ids, range(seq + 1, seq + 1 + len(rows)), new_revs)).rowcount
    if added == len(rows):
        conn.executemany(_INSERT_REV, rows)  # bound as they are
        conn.execute("RELEASE texts")
        return list(range(len(rows))), []
    conn.execute("ROLLBACK TO texts")
    conn.execute("RELEASE texts")
    ids = list(dict.fromkeys([row[0] for row in rows]))
    known: set[str] = set()
    for chunk in tables.chunks(ids):
        known.update(found for (found,) in conn.execute(
            f"SELECT id FROM docs WHERE id IN ({','.join('?' * len(chunk))})", chunk))
    rev_rows: list[tuple[str, str, str]] = []
    doc_rows: list[tuple[str, int, str]] = []
    written: list[int] = []
    fresh: dict[str, str] = {}  # id -> its revision, for the docs new here
    later: list[int] = []  # rows the general merge decides
    for index, (doc_id, rev, text) in enumerate(rows):
        if doc_id in known:
            later.append(index)
            continue
        had = fresh.get(doc_id)
        if had is None:
            fresh[doc_id] = rev
            seq += 1
            rev_rows.append((doc_id, rev, text))
            doc_rows.append((doc_id, seq, rev))
            written.append(index)
        elif had != rev:
            later.append(index)  # two first revisions of one new doc: a conflict to merge
    if rev_rows:
        conn.executemany(_INSERT_REV, rev_rows)
        conn.executemany(_INSERT_DOC, doc_rows)
    failures: list[dict[str, Any]] = []
    if later:
        prepared = []
        for index in later:
            doc_id, rev, text = rows[index]
            prepared.append(Prepared({"_id": doc_id, "_rev": rev}, doc_id, {}, [rev], text))
        position = {id(item): index for item, index in zip(prepared, later)}
        merged, failures = merge_replicated(conn, prepared)
        written.extend(position[id(item)] for item in merged)
        written.sort()
    return written, failures
