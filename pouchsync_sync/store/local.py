"""``LocalDatabase``: the embedded store, one SQLite file with CouchDB semantics.

Theory of operation. Three tables hold a database:

* ``revs(id, rev, parent, deleted, body)``: every revision node of every document's
  tree (``pouchsync_sync.revtree``); ``body`` is the JSON text of the revision's
  content, ``NULL`` for ancestors known only by id (from ``_revisions``) or compacted.
* ``docs(id, seq, winner, deleted)``: one row per document at its latest update
  sequence; the ``_changes`` feed is an index scan of ``seq`` (tombstones included).
  ``update_seq`` is ``max(seq)``.
* ``local_docs`` (never replicated, never in changes) and ``attachments`` (bytes stored
  once per md5 digest; revision bodies keep stubs).

Every write runs in one ``BEGIN IMMEDIATE`` transaction, so a process killed
mid-write leaves the file consistent, and bad input is refused before anything is
written. One connection per object, guarded by a lock, makes the object thread-safe;
WAL mode lets several objects and processes share the file. Longpoll readers wake on
the file's shared ``Notifier`` (same process) or by re-reading (other processes).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import reprlib
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from .. import gcpause, revtree
from ..errors import (BadRequest, Conflict, NotFound, PayloadTooLarge, PouchSyncError, PreconditionFailed,
                      ServerError)
from .base import Database
from . import local_texts
from .incoming import Prepared, prepare_replicated
from .texts import check_text_rows
from .notify import POLL_INTERVAL, notifier_for
from .validate import (
    check_all_docs_args,
    check_changes_args,
    check_count,
    check_doc,
    check_doc_id,
    decode_attachment,
    dump_json,
    is_local_id,
    split_body,
)
from ..jsoncodec import loads

__all__ = ["LocalDatabase"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS docs (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL, winner TEXT NOT NULL, deleted INTEGER NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS docs_by_seq ON docs (seq);
CREATE TABLE IF NOT EXISTS revs (
    id TEXT NOT NULL, rev TEXT NOT NULL, parent TEXT, deleted INTEGER NOT NULL, body TEXT,
    PRIMARY KEY (id, rev)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS local_docs (id TEXT PRIMARY KEY, rev INTEGER NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS attachments (digest TEXT PRIMARY KEY, data BLOB NOT NULL);
"""
_CHUNK = 500
_DEFAULT_LONGPOLL = 60.0
_PENDING_EXACT = 1000  # changes' "pending" is exact below this, an upper bound above
_SQLITE_MAX_INT = 2**63 - 1


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class LocalDatabase(Database):
    """The embedded store. Thread-safe: any number of threads may share one object."""

    def __init__(self, path: str | os.PathLike[str] = ":memory:", *, name: str | None = None,
                 revs_limit: int = revtree.DEFAULT_REVS_LIMIT,
                 max_leaves: int = revtree.DEFAULT_MAX_LEAVES) -> None:
        self.path = str(path)
        memory = self.path == ":memory:" or self.path.startswith("file::memory:")
        self.name = name or ("memory" if memory else Path(self.path).stem)
        if revs_limit < 1:
            raise BadRequest("revs_limit must be at least 1")
        self.revs_limit = revs_limit
        if type(max_leaves) is not int or max_leaves < 1:
            raise BadRequest("max_leaves must be a positive integer")
        #: most leaf revisions (open conflicts) one document may have; a replicated
        #: revision that would add one more is refused (413) instead of merged
        self.max_leaves = max_leaves
        self._lock = threading.RLock()
        self._closed = False
        try:
            self._conn = sqlite3.connect(self.path, check_same_thread=False,
                                         isolation_level=None, timeout=30.0)
            if not memory:
                self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
            self._uuid = self._meta("uuid") or self._init_uuid()
        except sqlite3.Error as exc:
            raise ServerError(f"cannot open {self.path!r}: {exc}") from exc
        self._notifier = notifier_for(None if memory else os.path.realpath(self.path))

    # -- plumbing ----------------------------------------------------------------------
    def _meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _init_uuid(self) -> str:
        value = uuid.uuid4().hex
        self._conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('uuid', ?)", (value,))
        return self._meta("uuid") or value

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._closed:
                raise PouchSyncError(f"database {self.name!r} is closed")
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise ServerError(f"SQLite error: {exc}") from exc
            except UnicodeEncodeError as exc:  # a lone surrogate in an id or a body
                raise BadRequest("Document is not valid UTF-8 text") from exc

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        with self._reading() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        self._notifier.notify()

    def _load_trees(self, conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, dict[str, revtree.Node]]:
        trees: dict[str, dict[str, revtree.Node]] = {}
        unique = list(dict.fromkeys(ids))
        for chunk in _chunks(unique):
            marks = ",".join("?" * len(chunk))
            for doc_id, rev, parent, deleted in conn.execute(
                    f"SELECT id, rev, parent, deleted FROM revs WHERE id IN ({marks})", chunk):
                trees.setdefault(doc_id, {})[rev] = revtree.Node(
                    int(rev.partition("-")[0]), parent, bool(deleted))
        return trees

    def _body(self, conn: sqlite3.Connection, doc_id: str, rev: str) -> dict[str, Any] | None:
        row = conn.execute("SELECT body FROM revs WHERE id = ? AND rev = ?", (doc_id, rev)).fetchone()
        return None if row is None or row[0] is None else loads(row[0])

    def _update_seq(self, conn: sqlite3.Connection) -> int:
        return conn.execute("SELECT coalesce(max(seq), 0) FROM docs").fetchone()[0]

    # -- identity ------------------------------------------------------------------------
    def identity(self) -> str:
        return f"local:{self._uuid}"

    def info(self) -> dict[str, Any]:
        with self._reading() as conn:
            live, dead = conn.execute(
                "SELECT coalesce(sum(deleted = 0), 0), coalesce(sum(deleted = 1), 0) FROM docs").fetchone()
            return {"db_name": self.name, "doc_count": live, "doc_del_count": dead,
                    "update_seq": self._update_seq(conn), "purge_seq": 0,
                    "instance_start_time": "0", "uuid": self._uuid, "adapter": "sqlite"}

    # -- writes --------------------------------------------------------------------------
    def put(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        result = self._bulk_new_edits([self._prepare(doc, require_id=True)])[0]
        if "error" in result:
            raise _error_from_result(result)
        return result

    def post(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(doc, Mapping):
            raise BadRequest("Document must be a JSON object")
        if "_id" not in doc:
            doc = {"_id": uuid.uuid4().hex, **doc}
        return self.put(doc)

    def delete(self, doc_id: str, rev: str) -> dict[str, Any]:
        check_doc_id(doc_id)
        if not isinstance(rev, str) or not rev:
            raise Conflict("Document update conflict")
        return self.put({"_id": doc_id, "_rev": rev, "_deleted": True})

    def bulk_docs(self, docs: Sequence[Mapping[str, Any]], *, new_edits: bool = True) -> list[dict[str, Any]]:
        if not isinstance(docs, (list, tuple)):
            raise BadRequest("docs must be a list")
        if not isinstance(new_edits, bool):
            raise BadRequest("new_edits must be a boolean")
        if new_edits:
            return self._bulk_new_edits([self._prepare(doc, require_id=False) for doc in docs])
        with gcpause.paused():
            return self._bulk_replicated(self._prepare_replicated(docs))[1]

    def write_missing(self, docs: Sequence[Mapping[str, Any]]
                      ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """``Database.write_missing`` in one transaction: the rev trees say what is new."""
        if not isinstance(docs, (list, tuple)):
            raise BadRequest("docs must be a list")
        with gcpause.paused():  # a batch: thousands of objects alive until it is written
            written, failures = self._bulk_replicated(self._prepare_replicated(docs))
            return [item.doc for item in written], failures

    def write_missing_texts(self, rows: Sequence[Sequence[Any]]
                            ) -> tuple[list[int], list[dict[str, Any]]]:
        """``Database.write_missing_texts``: the checked texts stored as they are."""
        checked = check_text_rows(rows)  # given CheckedTexts: as they are
        with gcpause.paused():
            with self._writing() as conn:
                return local_texts.write(self, conn, checked)

    def check_texts(self, rows: Sequence[Sequence[Any]]) -> Sequence[Sequence[Any]]:
        """``Database.check_texts``: ``texts.CheckedTexts`` (written without a second check)."""
        return check_text_rows(rows)

    def _prepare_replicated(self, docs: Sequence[Any]) -> list[Prepared]:
        """Check a replicated batch (plain docs in bulk, the rest one by one)."""
        return prepare_replicated(
            docs, lambda doc: self._prepare(doc, require_id=True, replicated=True))

    def _prepare(self, doc: Any, *, require_id: bool, replicated: bool = False) -> Prepared:
        doc = check_doc(doc, require_id=require_id)
        doc_id = doc.get("_id") or uuid.uuid4().hex
        path = None
        if replicated and not is_local_id(doc_id):
            path = revtree.path_from_revisions(doc.get("_rev"), doc.get("_revisions"))
        elif doc.get("_rev") is not None and not is_local_id(doc_id):
            revtree.parse_rev(doc["_rev"])
        atts: dict[str, tuple[bytes, str]] = {}
        for name, att in (doc.get("_attachments") or {}).items():
            if not att.get("stub"):
                atts[name] = decode_attachment(name, att)
            elif replicated and att.get("digest") is None:
                raise BadRequest(f"Attachment stub {name!r} needs its digest")
        body_text = dump_json(split_body(doc))  # refuse non-JSON values before writing anything
        return Prepared(doc, doc_id, atts, path, None if "_attachments" in doc else body_text)

    def _bulk_new_edits(self, prepared: list[Prepared]) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        with self._writing() as conn:
            trees = self._load_trees(conn, [p.doc_id for p in prepared if not is_local_id(p.doc_id)])
            seq = self._update_seq(conn)
            for item in prepared:
                if is_local_id(item.doc_id):
                    results.append(self._write_local(conn, item.doc_id, item.doc))
                    continue
                try:
                    rev = self._write_edit(conn, item, trees, seq + 1)
                except (Conflict, PreconditionFailed) as exc:
                    results.append({"id": item.doc_id, "error": exc.error, "reason": exc.reason})
                    continue
                seq += 1
                results.append({"ok": True, "id": item.doc_id, "rev": rev})
        return results

    def _write_edit(self, conn: sqlite3.Connection, item: Prepared,
                    trees: dict[str, dict[str, revtree.Node]], seq: int) -> str:
        doc, doc_id = item.doc, item.doc_id
        tree = trees.get(doc_id, {})
        rev = doc.get("_rev")
        deleted = bool(doc.get("_deleted", False))
        if not tree:
            if rev:
                raise Conflict()
            parent = None
        elif rev is None:
            current = revtree.winner(tree)
            if not tree[current].deleted:
                raise Conflict()
            parent = current
        else:
            if rev not in tree or rev not in revtree.leaves(tree):
                raise Conflict()
            parent = rev
        pos = revtree.parse_rev(parent)[0] + 1 if parent else 1
        parent_body = self._body(conn, doc_id, parent) if parent else None
        body = self._attach(conn, split_body(doc), item.atts, pos, parent_body)
        new = revtree.new_rev(parent, body, deleted)
        if new in tree:
            raise Conflict()
        merged, _ = revtree.merge(tree, [new] + ([parent] if parent else []), deleted)
        conn.execute("INSERT INTO revs (id, rev, parent, deleted, body) VALUES (?, ?, ?, ?, ?)",
                     (doc_id, new, parent, int(deleted), dump_json(body)))
        trees[doc_id] = self._stem(conn, doc_id, merged)
        self._set_doc(conn, doc_id, trees[doc_id], seq)
        return new

    def _attach(self, conn: sqlite3.Connection, body: dict[str, Any], atts: dict[str, tuple[bytes, str]],
                pos: int, parent_body: Mapping[str, Any] | None, *, replicated: bool = False) -> dict[str, Any]:
        """Store inline attachments once per digest and turn them into stubs."""
        given = body.get("_attachments")
        if not given:
            body.pop("_attachments", None)
            return body
        known = (parent_body or {}).get("_attachments") or {}
        stubs: dict[str, Any] = {}
        for name, att in given.items():
            if name in atts:
                raw, digest = atts[name]
                conn.execute("INSERT OR IGNORE INTO attachments (digest, data) VALUES (?, ?)", (digest, raw))
                revpos = att.get("revpos") if replicated and isinstance(att.get("revpos"), int) else pos
                stubs[name] = {"content_type": att.get("content_type", "application/octet-stream"),
                               "digest": digest, "length": len(raw), "revpos": revpos, "stub": True}
            elif replicated:
                digest = att["digest"]
                row = conn.execute("SELECT length(data) FROM attachments WHERE digest = ?", (digest,)).fetchone()
                if row is None:
                    raise PreconditionFailed(f"Invalid attachment stub in {name!r}: we lack {digest}",
                                             error="missing_stub")
                stubs[name] = {"content_type": att.get("content_type", "application/octet-stream"),
                               "digest": digest, "length": row[0],
                               "revpos": att.get("revpos") if isinstance(att.get("revpos"), int) else pos,
                               "stub": True}
            elif name in known and (att.get("digest") in (None, known[name].get("digest"))):
                stubs[name] = dict(known[name])
            else:
                raise PreconditionFailed(f"Invalid attachment stub in {name!r}", error="missing_stub")
        body["_attachments"] = stubs
        return body

    def _bulk_replicated(self, prepared: list[Prepared]
                         ) -> tuple[list[Prepared], list[dict[str, Any]]]:
        """Merge replicated revisions; ``(the items whose revision was new, failures)``."""
        with self._writing() as conn:
            return self._merge_replicated(conn, prepared)

    def _merge_replicated(self, conn: sqlite3.Connection, prepared: list[Prepared]
                          ) -> tuple[list[Prepared], list[dict[str, Any]]]:
        """``_bulk_replicated`` in the open write transaction ``conn``."""
        written: list[Prepared] = []
        failures: list[dict[str, Any]] = []
        trees = self._load_trees(conn, [p.doc_id for p in prepared if p.path is not None])
        seq = self._update_seq(conn)
        rows: list[tuple[Any, ...]] = []
        regrown: list[tuple[Any, ...]] = []
        doc_rows: list[tuple[str, int, str, int]] = []  # docs rows known without a tree
        fresh: dict[str, int] = {}  # id -> its row in doc_rows: new here, one revision
        touched: dict[str, int] = {}
        leafsets: dict[str, set[str]] = {}  # the leaves of each doc merged here
        for item in prepared:
            doc_id, path = item.doc_id, item.path
            if path is None:  # a _local doc
                local = dict(item.doc)
                local.pop("_rev", None)
                self._write_local(conn, doc_id, local, force=True)
                written.append(item)
                continue
            if doc_id not in trees:
                if len(path) == 1 and item.body_text is not None and doc_id not in fresh:
                    # the common case of a replication: a doc the target lacks, one revision
                    rev = path[0]
                    deleted = int(item.doc.get("_deleted", False))
                    seq += 1
                    rows.append((doc_id, rev, None, deleted, item.body_text))
                    fresh[doc_id] = len(doc_rows)
                    doc_rows.append((doc_id, seq, rev, deleted))
                    written.append(item)
                    continue
                if doc_id in fresh:  # another revision of a doc new in this batch
                    _id, _seq, rev, deleted = doc_rows[fresh.pop(doc_id)]
                    trees[doc_id] = {rev: revtree.Node(int(rev.partition("-")[0]), None,
                                                       bool(deleted))}
            try:
                if self._merge_path(conn, item, trees, rows, regrown, leafsets):
                    seq += 1
                    touched[doc_id] = seq
                    written.append(item)
            except (PreconditionFailed, PayloadTooLarge) as exc:
                failures.append({"id": doc_id, "rev": item.doc.get("_rev"),
                                 "error": exc.error, "reason": exc.reason})
        conn.executemany("INSERT INTO revs (id, rev, parent, deleted, body) VALUES (?, ?, ?, ?, ?)", rows)
        if regrown:
            conn.executemany("UPDATE revs SET parent = ? WHERE id = ? AND rev = ?", regrown)
        for doc_id in touched:
            trees[doc_id] = self._stem(conn, doc_id, trees[doc_id])
        # a doc both new and merged again in this batch: its later row wins
        self._set_docs(conn, [(doc_id, trees[doc_id], s) for doc_id, s in touched.items()],
                       known=doc_rows)
        return written, failures

    def _merge_path(self, conn: sqlite3.Connection, item: Prepared,
                    trees: dict[str, dict[str, revtree.Node]],
                    rows: list[tuple[Any, ...]], regrown: list[tuple[Any, ...]],
                    leafsets: dict[str, set[str]]) -> bool:
        """Merge one replicated revision into ``trees``, queueing the rows to insert."""
        doc, doc_id, path = item.doc, item.doc_id, item.path
        assert path is not None
        rev = path[0]
        tree = trees.get(doc_id)
        if tree is None:
            tree = {}
        if rev in tree:
            return False
        if item.body_text is not None:
            body_text = item.body_text
        else:
            body = self._attach(conn, split_body(doc), item.atts, revtree.parse_rev(rev)[0], None,
                                replicated=True)
            body_text = dump_json(body)
        leaf_set = leafsets.get(doc_id)
        if leaf_set is None:
            leaf_set = leafsets[doc_id] = set(revtree.leaves(tree)) if tree else set()
        if len(leaf_set) + revtree.leaf_growth(tree, leaf_set, path) > self.max_leaves:
            raise PayloadTooLarge(f"document {doc_id[:100]!r} would have more than {self.max_leaves} "
                                  f"leaf revisions (conflicts); refused (max_leaves)")
        # the batch's own copy of the tree, merged in place: O(len(path)), not O(tree)
        trees[doc_id] = tree
        added, regrew = revtree.merge_into(tree, path, bool(doc.get("_deleted", False)))
        revtree.update_leaves(tree, leaf_set, path, added)
        rows.extend((doc_id, r, tree[r].parent, int(tree[r].deleted), body_text if r == rev else None)
                    for r in added)
        regrown.extend((tree[r].parent, doc_id, r) for r in regrew)
        return True

    def _stem(self, conn: sqlite3.Connection, doc_id: str, tree: dict[str, revtree.Node]) -> dict[str, revtree.Node]:
        if len(tree) <= self.revs_limit:
            return tree  # no path can be longer than the tree is big
        stemmed = revtree.stem(tree, self.revs_limit)
        if len(stemmed) == len(tree):
            return tree
        gone = [(doc_id, r) for r in tree if r not in stemmed]
        conn.executemany("DELETE FROM revs WHERE id = ? AND rev = ?", gone)
        roots = [(doc_id, r) for r, node in stemmed.items() if node.parent is None and tree[r].parent is not None]
        conn.executemany("UPDATE revs SET parent = NULL WHERE id = ? AND rev = ?", roots)
        return stemmed

    def _set_doc(self, conn: sqlite3.Connection, doc_id: str, tree: Mapping[str, revtree.Node], seq: int) -> None:
        self._set_docs(conn, [(doc_id, tree, seq)])

    def _set_docs(self, conn: sqlite3.Connection,
                  items: Sequence[tuple[str, Mapping[str, revtree.Node], int]], *,
                  known: Sequence[tuple[str, int, str, int]] = ()) -> None:
        """Upsert the docs rows of ``items`` (after the ``known`` rows, given whole)."""
        rows = list(known)
        for doc_id, tree, seq in items:
            win = revtree.winner(tree)
            rows.append((doc_id, seq, win, int(tree[win].deleted)))
        conn.executemany(
            "INSERT INTO docs (id, seq, winner, deleted) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, winner = excluded.winner, "
            "deleted = excluded.deleted", rows)

    # -- local docs ----------------------------------------------------------------------
    def _write_local(self, conn: sqlite3.Connection, doc_id: str, doc: Mapping[str, Any],
                     *, force: bool = False) -> dict[str, Any]:
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

    def _get_local(self, doc_id: str) -> dict[str, Any]:
        with self._reading() as conn:
            row = conn.execute("SELECT rev, body FROM local_docs WHERE id = ?", (doc_id,)).fetchone()
        if row is None:
            raise NotFound("missing")
        return {"_id": doc_id, "_rev": f"0-{row[0]}", **loads(row[1])}

    # -- reads ---------------------------------------------------------------------------
    def _render(self, conn: sqlite3.Connection, doc_id: str, rev: str, tree: Mapping[str, revtree.Node],
                body: dict[str, Any], *, revs: bool = False, revs_info: bool = False,
                conflicts: bool = False, attachments: bool = False,
                atts_since: Sequence[str] | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {"_id": doc_id, "_rev": rev}
        doc.update(body)
        if tree[rev].deleted:
            doc["_deleted"] = True
        if attachments and doc.get("_attachments"):
            doc["_attachments"] = self._inline(conn, tree, rev, doc["_attachments"], atts_since)
        if conflicts:
            found = revtree.conflicts(tree)
            if found:
                doc["_conflicts"] = found
        if revs:
            doc["_revisions"] = revtree.revisions(tree, rev)
        if revs_info:
            chain = revtree.ancestry(tree, rev)
            have = {r for (r,) in conn.execute(
                f"SELECT rev FROM revs WHERE id = ? AND body IS NOT NULL AND rev IN ({','.join('?' * len(chain))})",
                [doc_id, *chain])}
            doc["_revs_info"] = [{"rev": r, "status": "deleted" if tree[r].deleted and r in have
                                  else "available" if r in have else "missing"} for r in chain]
        return doc

    def _inline(self, conn: sqlite3.Connection, tree: Mapping[str, revtree.Node], rev: str,
                stubs: Mapping[str, Any], atts_since: Sequence[str] | None) -> dict[str, Any]:
        known_pos = 0
        if atts_since:
            chain = set(revtree.ancestry(tree, rev))
            known_pos = max((revtree.parse_rev(r)[0] for r in atts_since
                             if isinstance(r, str) and r in chain), default=0)
        out: dict[str, Any] = {}
        for name, stub in stubs.items():
            if known_pos and stub.get("revpos", 0) <= known_pos:
                out[name] = dict(stub)
                continue
            row = conn.execute("SELECT data FROM attachments WHERE digest = ?", (stub["digest"],)).fetchone()
            if row is None:
                out[name] = dict(stub)
                continue
            att = {k: v for k, v in stub.items() if k != "stub"}
            att["data"] = base64.b64encode(row[0]).decode("ascii")
            out[name] = att
        return out

    def get(self, doc_id: str, *, rev: str | None = None, revs: bool = False,
            revs_info: bool = False, conflicts: bool = False,
            open_revs: Sequence[str] | str | None = None, latest: bool = False,
            attachments: bool = False) -> Any:
        check_doc_id(doc_id)
        if is_local_id(doc_id):
            return self._get_local(doc_id)
        if rev is not None:
            revtree.parse_rev(rev)
        opts = {"revs": revs, "revs_info": revs_info, "conflicts": conflicts, "attachments": attachments}
        with self._reading() as conn:
            tree = self._load_trees(conn, [doc_id]).get(doc_id, {})
            if open_revs is not None:
                return self._open_revs(conn, doc_id, tree, open_revs, latest, opts)
            if not tree:
                raise NotFound("missing")
            if rev is None:
                rev = revtree.winner(tree)
                if tree[rev].deleted:
                    raise NotFound("deleted")
            elif latest and rev in tree:
                rev = revtree.descendant_leaves(tree, rev)[0]
            body = self._body(conn, doc_id, rev) if rev in tree else None
            if body is None:
                raise NotFound("missing")
            return self._render(conn, doc_id, rev, tree, body, **opts)

    def _open_revs(self, conn: sqlite3.Connection, doc_id: str, tree: Mapping[str, revtree.Node],
                   open_revs: Sequence[str] | str, latest: bool, opts: dict[str, Any]) -> list[dict[str, Any]]:
        if open_revs == "all":
            wanted = revtree.leaves(tree)
        elif isinstance(open_revs, (list, tuple)):
            wanted = list(open_revs)
            for r in wanted:
                revtree.parse_rev(r)
        else:
            raise BadRequest("open_revs must be a list of revs or \"all\"")
        if not tree and open_revs == "all":
            raise NotFound("missing")
        out: list[dict[str, Any]] = []
        for r in wanted:
            targets = revtree.descendant_leaves(tree, r) if latest and r in tree else [r]
            for target in targets:
                body = self._body(conn, doc_id, target) if target in tree else None
                if body is None:
                    out.append({"missing": r})
                else:
                    out.append({"ok": self._render(conn, doc_id, target, tree, body, **opts)})
        return out

    def all_docs(self, *, include_docs: bool = False, keys: Sequence[str] | None = None,
                 startkey: str | None = None, endkey: str | None = None,
                 limit: int | None = None, skip: int = 0,
                 descending: bool = False, conflicts: bool = False) -> dict[str, Any]:
        check_all_docs_args(limit=limit, skip=skip)
        # SQLite integers are 64-bit: a larger limit or skip means "all" / "past the end"
        limit = None if limit is None else min(limit, _SQLITE_MAX_INT)
        skip = min(skip, _SQLITE_MAX_INT)
        with self._reading() as conn:
            total = conn.execute("SELECT count(*) FROM docs WHERE deleted = 0").fetchone()[0]
            if keys is not None:
                if not isinstance(keys, (list, tuple)):
                    raise BadRequest("keys must be a list")
                rows = self._rows_for_keys(conn, list(keys), include_docs, conflicts)
                return {"total_rows": total, "offset": 0, "rows": rows}
            where, args = ["deleted = 0"], []
            low, high = (endkey, startkey) if descending else (startkey, endkey)
            if low is not None:
                where.append("id >= ?")
                args.append(low)
            if high is not None:
                where.append("id <= ?")
                args.append(high)
            order = "DESC" if descending else "ASC"
            sql = (f"SELECT id, winner FROM docs WHERE {' AND '.join(where)} ORDER BY id {order} "
                   f"LIMIT ? OFFSET ?")
            found = conn.execute(sql, [*args, -1 if limit is None else limit, skip]).fetchall()
            offset = skip
            if startkey is not None:
                cmp = ">" if descending else "<"
                offset += conn.execute(f"SELECT count(*) FROM docs WHERE deleted = 0 AND id {cmp} ?",
                                       (startkey,)).fetchone()[0]
            rows = []
            trees = self._load_trees(conn, [i for i, _ in found]) if include_docs else {}
            for doc_id, win in found:
                row: dict[str, Any] = {"id": doc_id, "key": doc_id, "value": {"rev": win}}
                if include_docs:
                    row["doc"] = self._render(conn, doc_id, win, trees[doc_id],
                                              self._body(conn, doc_id, win) or {}, conflicts=conflicts)
                rows.append(row)
            return {"total_rows": total, "offset": offset, "rows": rows}

    def _rows_for_keys(self, conn: sqlite3.Connection, keys: list[Any], include_docs: bool,
                       conflicts: bool) -> list[dict[str, Any]]:
        ids = [k for k in keys if isinstance(k, str)]
        found: dict[str, tuple[str, int]] = {}
        for chunk in _chunks(list(dict.fromkeys(ids))):
            marks = ",".join("?" * len(chunk))
            for doc_id, win, deleted in conn.execute(
                    f"SELECT id, winner, deleted FROM docs WHERE id IN ({marks})", chunk):
                found[doc_id] = (win, deleted)
        trees = self._load_trees(conn, list(found)) if include_docs else {}
        rows: list[dict[str, Any]] = []
        for key in keys:
            if not isinstance(key, str) or key not in found:
                rows.append({"key": key, "error": "not_found"})
                continue
            win, deleted = found[key]
            value: dict[str, Any] = {"rev": win}
            row: dict[str, Any] = {"id": key, "key": key, "value": value}
            if deleted:
                value["deleted"] = True
                if include_docs:
                    row["doc"] = None
            elif include_docs:
                row["doc"] = self._render(conn, key, win, trees[key], self._body(conn, key, win) or {},
                                          conflicts=conflicts)
            rows.append(row)
        return rows

    # -- changes -------------------------------------------------------------------------
    def changes(self, *, since: Any = 0, limit: int | None = None,
                include_docs: bool = False, conflicts: bool = False,
                style: str = "main_only", doc_ids: Sequence[str] | None = None,
                selector: Mapping[str, Any] | None = None, descending: bool = False,
                feed: str = "normal", timeout: float | None = None,
                attachments: bool = False) -> dict[str, Any]:
        check_changes_args(style=style, feed=feed, limit=limit, timeout=timeout, doc_ids=doc_ids)
        if limit is not None:
            limit = min(limit, _SQLITE_MAX_INT)  # 64-bit SQLite; larger means "all"
        match: Callable[[dict[str, Any]], bool] | None = None
        if selector is not None:
            from ..selector import compile_selector
            match = compile_selector(selector)
        position = self._parse_since(since)
        wait_for = _DEFAULT_LONGPOLL if timeout is None else float(timeout)
        deadline = time.monotonic() + wait_for
        while True:
            generation = self._notifier.generation
            with gcpause.paused() if include_docs else contextlib.nullcontext():  # a page of docs
                result = self._changes_once(position, limit, include_docs or match is not None,
                                            conflicts, style, doc_ids, match, descending, attachments)
            if match is not None and not include_docs:
                for row in result["results"]:
                    row.pop("doc", None)
            remaining = deadline - time.monotonic()
            if result["results"] or feed != "longpoll" or remaining <= 0:
                return result
            position = result["last_seq"]
            self._notifier.wait(generation, min(remaining, POLL_INTERVAL))

    def changes_texts(self, *, since: Any = 0, limit: int | None = None,
                      max_bytes: int | None = None) -> dict[str, Any]:
        """``Database.changes_texts``: the stored texts, never parsed."""
        check_changes_args(style="all_docs", feed="normal", limit=limit, timeout=None,
                           doc_ids=None)
        check_count("max_bytes", max_bytes)
        position = self._parse_since(since)
        want = None if limit is None else max(min(limit, _SQLITE_MAX_INT), 1)  # as changes
        with self._reading() as conn:
            return local_texts.read(self, conn, position, want, max_bytes)

    def _parse_since(self, since: Any) -> int:
        if since == "now":
            with self._reading() as conn:
                return self._update_seq(conn)
        if since is None:
            return 0
        if isinstance(since, bool):
            raise BadRequest(f"Malformed since: {since!r}")
        if isinstance(since, int) and 0 <= since <= _SQLITE_MAX_INT:
            return since
        if (isinstance(since, str) and since.isdigit() and since.isascii()
                and int(since) <= _SQLITE_MAX_INT):
            return int(since)
        # reprlib: bounded in length and depth (a client's since may be huge or deep)
        raise BadRequest(f"Malformed since: {reprlib.repr(since)}")

    def _changes_once(self, since: int, limit: int | None, include_docs: bool, conflicts: bool,
                      style: str, doc_ids: Sequence[str] | None,
                      match: Callable[[dict[str, Any]], bool] | None, descending: bool,
                      attachments: bool) -> dict[str, Any]:
        want = None if limit is None else max(limit, 1)  # CouchDB treats limit=0 as 1
        if doc_ids is not None and not doc_ids:
            return {"results": [], "last_seq": since, "pending": 0}
        # one bound parameter whatever the number of ids (SQLite allows 32,766 at most)
        id_filter = " AND id IN (SELECT value FROM json_each(?))" if doc_ids else ""
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
            with self._reading() as conn:
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
                page_rows = self._change_rows(conn, rows, include_docs, conflicts, style,
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
            with self._reading() as conn:
                pending = self._pending(conn, last, id_filter, id_args)
        return {"results": results, "last_seq": last, "pending": pending}

    def _change_rows(self, conn: sqlite3.Connection, rows: list[Any], include_docs: bool,
                     conflicts: bool, style: str, need_trees: bool,
                     attachments: bool) -> list[dict[str, Any]]:
        """The ``changes`` rows of one page read from ``docs``."""
        trees = self._load_trees(conn, [r[1] for r in rows if need_trees or r[5] > 1])
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
                row["doc"] = self._render(conn, doc_id, win, tree,
                                          loads(body_text) if body_text else {},
                                          conflicts=conflicts, attachments=attachments)
            out.append(row)
        return out

    @staticmethod
    def _pending(conn: sqlite3.Connection, last: int, id_filter: str, id_args: list[Any]) -> int:
        """Changes after ``last``: exact up to ``_PENDING_EXACT``, above it the upper bound
        ``max(seq) - last`` (counting every remaining row each batch made a long feed
        quadratic: 1,000 batches of 100 over 100k docs counted 50M rows)."""
        if id_filter:  # bounded by the number of ids asked for: exact
            return conn.execute(f"SELECT count(*) FROM docs WHERE seq > ?{id_filter}",
                                [last, *id_args]).fetchone()[0]
        counted = conn.execute("SELECT count(*) FROM (SELECT 1 FROM docs WHERE seq > ? LIMIT ?)",
                               (last, _PENDING_EXACT)).fetchone()[0]
        if counted < _PENDING_EXACT:
            return counted
        top = conn.execute("SELECT max(seq) FROM docs").fetchone()[0] or 0
        return max(counted, top - last)

    # -- replication helpers ---------------------------------------------------------------
    def revs_diff(self, revs: Mapping[str, Sequence[str]]) -> dict[str, Any]:
        if not isinstance(revs, Mapping):
            raise BadRequest("revs_diff takes an object of id: [revs]")
        for doc_id, rev_list in revs.items():
            check_doc_id(doc_id)
            if not isinstance(rev_list, (list, tuple)):
                raise BadRequest(f"revs_diff: revs of {doc_id!r} must be a list")
            for rev in rev_list:
                revtree.parse_rev(rev)
        with self._reading() as conn:
            trees = self._load_trees(conn, list(revs))
        out: dict[str, Any] = {}
        for doc_id, rev_list in revs.items():
            tree = trees.get(doc_id, {})
            missing = [r for r in dict.fromkeys(rev_list) if r not in tree]
            if not missing:
                continue
            entry: dict[str, Any] = {"missing": missing}
            top = max(revtree.parse_rev(r)[0] for r in missing)
            ancestors = [leaf for leaf in revtree.leaves(tree) if tree[leaf].pos < top]
            if ancestors:
                entry["possible_ancestors"] = ancestors
            out[doc_id] = entry
        return out

    def bulk_get(self, docs: Sequence[Mapping[str, Any]], *, revs: bool = False,
                 latest: bool = False, attachments: bool = False) -> dict[str, Any]:
        if not isinstance(docs, (list, tuple)):
            raise BadRequest("bulk_get takes a list of {id, rev?}")
        for req in docs:
            if not isinstance(req, Mapping) or not isinstance(req.get("id"), str):
                raise BadRequest("each bulk_get request needs an id")
            if req.get("rev") is not None:
                revtree.parse_rev(req["rev"])
            since = req.get("atts_since")
            if since is not None and not isinstance(since, (list, tuple)):
                raise BadRequest("atts_since must be a list of revs")
        results: list[dict[str, Any]] = []
        with self._reading() as conn:
            trees = self._load_trees(conn, [req["id"] for req in docs if not is_local_id(req["id"])])
            for req in docs:
                doc_id, rev = req["id"], req.get("rev")
                tree = trees.get(doc_id, {})
                entries: list[dict[str, Any]] = []
                if not tree:
                    targets: list[str] = []
                    reason = "missing"
                elif rev is None:
                    win = revtree.winner(tree)
                    targets = [] if tree[win].deleted else [win]
                    reason = "deleted"
                elif latest and rev in tree:
                    targets, reason = revtree.descendant_leaves(tree, rev), "missing"
                else:
                    targets, reason = [rev], "missing"
                for target in targets:
                    body = self._body(conn, doc_id, target) if target in tree else None
                    if body is None:
                        continue
                    entries.append({"ok": self._render(conn, doc_id, target, tree, body, revs=revs,
                                                       attachments=attachments,
                                                       atts_since=req.get("atts_since"))})
                if not entries:
                    entries.append({"error": {"id": doc_id, "rev": rev or "undefined",
                                              "error": "not_found", "reason": reason}})
                results.append({"id": doc_id, "docs": entries})
        return {"results": results}

    def get_attachment(self, doc_id: str, name: str, rev: str | None = None) -> bytes:
        doc = self.get(doc_id, rev=rev)
        stub = (doc.get("_attachments") or {}).get(name)
        if stub is None:
            raise NotFound("Document is missing attachment")
        with self._reading() as conn:
            row = conn.execute("SELECT data FROM attachments WHERE digest = ?", (stub["digest"],)).fetchone()
        if row is None:
            raise NotFound("Document is missing attachment")
        return bytes(row[0])

    # -- maintenance -----------------------------------------------------------------------
    def compact(self) -> None:
        """Drop the bodies of non-leaf revisions and attachments no revision uses."""
        with self._writing() as conn:
            conn.execute("UPDATE revs SET body = NULL WHERE body IS NOT NULL AND EXISTS "
                         "(SELECT 1 FROM revs AS child WHERE child.id = revs.id AND child.parent = revs.rev)")
            used: set[str] = set()
            for (body,) in conn.execute("SELECT body FROM revs WHERE body LIKE '%\"_attachments\"%'"):
                for stub in (loads(body).get("_attachments") or {}).values():
                    used.add(stub.get("digest"))
            stale = [(d,) for (d,) in conn.execute("SELECT digest FROM attachments") if d not in used]
            conn.executemany("DELETE FROM attachments WHERE digest = ?", stale)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._conn.close()
            except sqlite3.Error:  # pragma: no cover - closing a broken handle
                log.debug("error closing %s", self.path, exc_info=True)

    def __repr__(self) -> str:
        return f"<LocalDatabase {self.name!r} at {self.path!r}>"

    def _repr_html_(self) -> str:
        """An info table in Jupyter (see ``pouchsync_sync.display``)."""
        from ..display import database_html
        return database_html(self)


def _error_from_result(result: Mapping[str, Any]) -> PouchSyncError:
    from ..errors import error_from_json
    status = {"conflict": 409, "not_found": 404, "missing_stub": 412, "forbidden": 403}.get(result["error"], 400)
    return error_from_json({"status": status, "error": result["error"], "reason": result.get("reason")})
