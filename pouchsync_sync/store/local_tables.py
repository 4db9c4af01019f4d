"""Table operations of the embedded store, on an open connection (``local_file``).

The one place with the SQL that reads and writes the ``revs``, ``docs``,
``local_docs`` and ``attachments`` rows; the store's readers, writers, changes feed and
text lane (``local_reads``, ``local_writes``, ``local_changes``, ``local_texts``) all
go through these functions. Each runs on the connection it is given, inside whatever
transaction the caller holds (``LocalFile.reading``/``writing``); none opens one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .. import revtree
from ..errors import NotFound
from ..jsoncodec import loads
from .validate import dump_json

__all__ = ["CHUNK", "INSERT_REV", "PENDING_EXACT", "SQLITE_MAX_INT", "Tree", "attachment_data",
           "attachment_length", "chunks", "compact", "load_trees", "pending", "read_body",
           "read_local", "set_docs", "stem", "store_attachment", "update_seq", "write_local"]

#: ids per ``IN (...)`` list (SQLite allows 32,766 bound parameters at most)
CHUNK = 500
#: changes' "pending" is exact below this, an upper bound above
PENDING_EXACT = 1000
#: SQLite integers are 64-bit: a larger limit or skip means "all"
SQLITE_MAX_INT = 2**63 - 1

INSERT_REV = "INSERT INTO revs (id, rev, parent, deleted, body) VALUES (?, ?, ?, ?, ?)"

Tree = dict[str, revtree.Node]


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# -- revision trees and bodies ------------------------------------------------------------
def load_trees(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, Tree]:
    """The revision trees of ``ids`` (absent: no such document)."""
    trees: dict[str, Tree] = {}
    unique = list(dict.fromkeys(ids))
    for chunk in chunks(unique):
        marks = ",".join("?" * len(chunk))
        for doc_id, rev, parent, deleted in conn.execute(
                f"SELECT id, rev, parent, deleted FROM revs WHERE id IN ({marks})", chunk):
            trees.setdefault(doc_id, {})[rev] = revtree.Node(
                int(rev.partition("-")[0]), parent, bool(deleted))
    return trees


def read_body(conn: sqlite3.Connection, doc_id: str, rev: str) -> dict[str, Any] | None:
    """The stored content of one revision (``None``: unknown, or known only by id)."""
    row = conn.execute("SELECT body FROM revs WHERE id = ? AND rev = ?", (doc_id, rev)).fetchone()
    return None if row is None or row[0] is None else loads(row[0])


def stem(conn: sqlite3.Connection, doc_id: str, tree: Tree, revs_limit: int) -> Tree:
    """``tree`` cut to ``revs_limit`` revisions a path, the cut rows deleted."""
    if len(tree) <= revs_limit:
        return tree  # no path can be longer than the tree is big
    stemmed = revtree.stem(tree, revs_limit)
    if len(stemmed) == len(tree):
        return tree
    gone = [(doc_id, r) for r in tree if r not in stemmed]
    conn.executemany("DELETE FROM revs WHERE id = ? AND rev = ?", gone)
    roots = [(doc_id, r) for r, node in stemmed.items()
             if node.parent is None and tree[r].parent is not None]
    conn.executemany("UPDATE revs SET parent = NULL WHERE id = ? AND rev = ?", roots)
    return stemmed


# -- the docs table: winners and the update sequence --------------------------------------
def update_seq(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT coalesce(max(seq), 0) FROM docs").fetchone()[0]


def set_docs(conn: sqlite3.Connection, items: Sequence[tuple[str, Mapping[str, revtree.Node], int]],
             *, known: Sequence[tuple[str, int, str, int]] = ()) -> None:
    """Upsert the docs rows of ``(id, tree, seq)`` items, after the ``known``
    ``(id, seq, winner, deleted)`` rows, given whole (a later row of an id wins)."""
    rows = list(known)
    for doc_id, tree, seq in items:
        win = revtree.winner(tree)
        rows.append((doc_id, seq, win, int(tree[win].deleted)))
    conn.executemany(
        "INSERT INTO docs (id, seq, winner, deleted) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, winner = excluded.winner, "
        "deleted = excluded.deleted", rows)


def pending(conn: sqlite3.Connection, last: int, id_filter: str = "",
            id_args: Sequence[Any] = ()) -> int:
    """Changes after ``last``: exact up to ``PENDING_EXACT``, above it the upper bound
    ``max(seq) - last`` (counting every remaining row at each batch made a long feed
    quadratic in its length). ``id_filter``/``id_args``: the feed's ``doc_ids`` clause."""
    if id_filter:  # bounded by the number of ids asked for: exact
        return conn.execute(f"SELECT count(*) FROM docs WHERE seq > ?{id_filter}",
                            [last, *id_args]).fetchone()[0]
    counted = conn.execute("SELECT count(*) FROM (SELECT 1 FROM docs WHERE seq > ? LIMIT ?)",
                           (last, PENDING_EXACT)).fetchone()[0]
    if counted < PENDING_EXACT:
        return counted
    top = conn.execute("SELECT max(seq) FROM docs").fetchone()[0] or 0
    return max(counted, top - last)


# -- _local docs ----------------------------------------------------------------------------
def write_local(conn: sqlite3.Connection, doc_id: str, doc: Mapping[str, Any],
                *, force: bool = False) -> dict[str, Any]:
    """Write (or with ``_deleted`` remove) a ``_local`` doc; its ``_rev`` must be the
    current one unless ``force``. A ``bulk_docs`` result row, errors included."""
    row = conn.execute("SELECT rev FROM local_docs WHERE id = ?", (doc_id,)).fetchone()
    current = row[0] if row else 0
    if not force and doc.get("_rev") != (f"0-{current}" if row else None):
        return {"id": doc_id, "error": "conflict", "reason": "Document update conflict"}
    if doc.get("_deleted"):
        if row is None:
            return {"id": doc_id, "error": "not_found", "reason": "missing"}
        conn.execute("DELETE FROM local_docs WHERE id = ?", (doc_id,))
        return {"ok": True, "id": doc_id, "rev": "0-0"}
    body = {k: v for k, v in doc.items() if not k.startswith("_")}
    conn.execute("INSERT INTO local_docs (id, rev, body) VALUES (?, ?, ?) ON CONFLICT (id) "
                 "DO UPDATE SET rev = excluded.rev, body = excluded.body",
                 (doc_id, current + 1, dump_json(body)))
    return {"ok": True, "id": doc_id, "rev": f"0-{current + 1}"}


def read_local(conn: sqlite3.Connection, doc_id: str) -> dict[str, Any]:
    row = conn.execute("SELECT rev, body FROM local_docs WHERE id = ?", (doc_id,)).fetchone()
    if row is None:
        raise NotFound("missing")
    return {"_id": doc_id, "_rev": f"0-{row[0]}", **loads(row[1])}


# -- attachments ----------------------------------------------------------------------------
def attachment_data(conn: sqlite3.Connection, digest: str) -> bytes | None:
    row = conn.execute("SELECT data FROM attachments WHERE digest = ?", (digest,)).fetchone()
    return None if row is None else bytes(row[0])


def attachment_length(conn: sqlite3.Connection, digest: str) -> int | None:
    row = conn.execute("SELECT length(data) FROM attachments WHERE digest = ?",
                       (digest,)).fetchone()
    return None if row is None else row[0]


def store_attachment(conn: sqlite3.Connection, digest: str, data: bytes) -> None:
    conn.execute("INSERT OR IGNORE INTO attachments (digest, data) VALUES (?, ?)", (digest, data))


def compact(conn: sqlite3.Connection) -> None:
    """Drop the bodies of non-leaf revisions and attachments no revision uses."""
    conn.execute("UPDATE revs SET body = NULL WHERE body IS NOT NULL AND EXISTS "
                 "(SELECT 1 FROM revs AS child "
                 "WHERE child.id = revs.id AND child.parent = revs.rev)")
    used: set[str] = set()
    for (body,) in conn.execute("SELECT body FROM revs WHERE body LIKE '%\"_attachments\"%'"):
        for att in (loads(body).get("_attachments") or {}).values():
            used.add(att.get("digest"))
    stale = [(d,) for (d,) in conn.execute("SELECT digest FROM attachments") if d not in used]
    conn.executemany("DELETE FROM attachments WHERE digest = ?", stale)
