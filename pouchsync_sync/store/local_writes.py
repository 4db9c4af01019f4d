"""Writes and merges of the embedded store, inside a write transaction the caller holds.

Two kinds of write, as CouchDB's ``_bulk_docs`` (https://docs.couchdb.org/en/stable/
api/database/bulk-api.html#db-bulk-docs):

* ``new_edits``: an edit of the current leaf a doc's ``_rev`` names (or a new doc);
  the new revision's id is computed here (``revtree.new_rev``), a stale ``_rev`` is a
  ``conflict`` row in the results.
* ``merge_replicated`` (``new_edits=false``): a revision with its path of ancestors is
  merged into the doc's tree as it is (``revtree.merge_into``), whatever it conflicts
  with; a revision already there is skipped. The common case of a replication, a doc
  the file lacks with one revision, is two plain inserts.

Either way the trees are then stemmed to ``revs_limit`` and each touched doc's row in
``docs`` gets its winner and a new sequence. Docs come in checked (``incoming``), so
nothing here fails half-way but a conflict row or a refused revision.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from .. import revtree
from ..errors import Conflict, PayloadTooLarge, PreconditionFailed
from . import local_tables as tables
from .incoming import Prepared
from .local_tables import Tree
from .validate import dump_json, is_local_id, split_body

__all__ = ["Writer"]

_OCTETS = "application/octet-stream"


class Writer:
    """The writes of one store, with its limits: ``revs_limit`` (revisions kept a path)
    and ``max_leaves`` (leaf revisions a doc may have; a replicated revision that would
    add one more is refused with 413 instead of merged). Holds no connection: every
    method runs on the ``conn`` of the caller's transaction. Thread-safe as that is."""

    def __init__(self, *, revs_limit: int, max_leaves: int) -> None:
        self.revs_limit = revs_limit
        self.max_leaves = max_leaves

    # -- new edits --------------------------------------------------------------------
    def new_edits(self, conn: sqlite3.Connection, prepared: list[Prepared]) -> list[dict[str, Any]]:
        """``bulk_docs`` results, one per item: ``{"ok", "id", "rev"}`` or an error row."""
        results: list[dict[str, Any]] = []
        trees = tables.load_trees(conn, [p.doc_id for p in prepared if not is_local_id(p.doc_id)])
        seq = tables.update_seq(conn)
        for item in prepared:
            if is_local_id(item.doc_id):
                results.append(tables.write_local(conn, item.doc_id, item.doc))
                continue
            try:
                rev = self._write_edit(conn, item, trees, seq + 1)
            except (Conflict, PreconditionFailed) as exc:
                results.append({"id": item.doc_id, "error": exc.error, "reason": exc.reason})
                continue
            seq += 1
            results.append({"ok": True, "id": item.doc_id, "rev": rev})
        return results

    def _write_edit(self, conn: sqlite3.Connection, item: Prepared, trees: dict[str, Tree],
                    seq: int) -> str:
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
        parent_body = tables.read_body(conn, doc_id, parent) if parent else None
        body = _attach(conn, split_body(doc), item.atts, pos, parent_body)
        new = revtree.new_rev(parent, body, deleted)
        if new in tree:
            raise Conflict()
        merged, _ = revtree.merge(tree, [new] + ([parent] if parent else []), deleted)
        conn.execute(tables.INSERT_REV, (doc_id, new, parent, int(deleted), dump_json(body)))
        trees[doc_id] = tables.stem(conn, doc_id, merged, self.revs_limit)
        tables.set_docs(conn, [(doc_id, trees[doc_id], seq)])
        return new

    # -- replicated revisions ---------------------------------------------------------
    def merge_replicated(self, conn: sqlite3.Connection, prepared: list[Prepared]
                         ) -> tuple[list[Prepared], list[dict[str, Any]]]:
        """Merge replicated revisions: ``(the items whose revision was new, failures)``,
        failures as ``{"id", "rev", "error", "reason"}``."""
        written: list[Prepared] = []
        failures: list[dict[str, Any]] = []
        trees = tables.load_trees(conn, [p.doc_id for p in prepared if p.path is not None])
        seq = tables.update_seq(conn)
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
                tables.write_local(conn, doc_id, local, force=True)
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
        conn.executemany(tables.INSERT_REV, rows)
        if regrown:
            conn.executemany("UPDATE revs SET parent = ? WHERE id = ? AND rev = ?", regrown)
        for doc_id in touched:
            trees[doc_id] = tables.stem(conn, doc_id, trees[doc_id], self.revs_limit)
        # a doc both new and merged again in this batch: its later row wins
        tables.set_docs(conn, [(doc_id, trees[doc_id], s) for doc_id, s in touched.items()],
                        known=doc_rows)
        return written, failures

    def _merge_path(self, conn: sqlite3.Connection, item: Prepared, trees: dict[str, Tree],
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
            body = _attach(conn, split_body(doc), item.atts, revtree.parse_rev(rev)[0], None,
                           replicated=True)
            body_text = dump_json(body)
        leaf_set = leafsets.get(doc_id)
        if leaf_set is None:
            leaf_set = leafsets[doc_id] = set(revtree.leaves(tree)) if tree else set()
        if len(leaf_set) + revtree.leaf_growth(tree, leaf_set, path) > self.max_leaves:
            raise PayloadTooLarge(f"document {doc_id[:100]!r} would have more than "
                                  f"{self.max_leaves} leaf revisions (conflicts); "
                                  "refused (max_leaves)")
        # the batch's own copy of the tree, merged in place: O(len(path)), not O(tree)
        trees[doc_id] = tree
        added, regrew = revtree.merge_into(tree, path, bool(doc.get("_deleted", False)))
        revtree.update_leaves(tree, leaf_set, path, added)
        rows.extend((doc_id, r, tree[r].parent, int(tree[r].deleted),
                     body_text if r == rev else None) for r in added)
        regrown.extend((tree[r].parent, doc_id, r) for r in regrew)
        return True


def _attach(conn: sqlite3.Connection, body: dict[str, Any], atts: dict[str, tuple[bytes, str]],
            pos: int, parent_body: Mapping[str, Any] | None, *,
            replicated: bool = False) -> dict[str, Any]:
    """Store inline attachments once per digest and turn them into stubs."""
    given = body.get("_attachments")
    if not given:
        body.pop("_attachments", None)
        return body
    known = (parent_body or {}).get("_attachments") or {}
    stubs: dict[str, Any] = {}
    for name, att in given.items():
        revpos = att.get("revpos") if replicated and isinstance(att.get("revpos"), int) else pos
        if name in atts:
            raw, digest = atts[name]
            tables.store_attachment(conn, digest, raw)
            stubs[name] = _stub(att, digest, len(raw), revpos)
        elif replicated:
            digest = att["digest"]
            length = tables.attachment_length(conn, digest)
            if length is None:
                raise PreconditionFailed(f"Invalid attachment stub in {name!r}: we lack {digest}",
                                         error="missing_stub")
            stubs[name] = _stub(att, digest, length, revpos)
        elif name in known and (att.get("digest") in (None, known[name].get("digest"))):
            stubs[name] = dict(known[name])
        else:
            raise PreconditionFailed(f"Invalid attachment stub in {name!r}", error="missing_stub")
    body["_attachments"] = stubs
    return body


def _stub(att: Mapping[str, Any], digest: str, length: int, revpos: Any) -> dict[str, Any]:
    return {"content_type": att.get("content_type", _OCTETS), "digest": digest,
            "length": length, "revpos": revpos, "stub": True}
