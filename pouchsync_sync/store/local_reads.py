"""Reads of the embedded store: documents rendered as CouchDB answers them.

``render`` turns a stored revision (its tree and body) into the doc CouchDB's
``GET /db/doc`` gives (``_id``, ``_rev``, ``_deleted``, and on request ``_conflicts``,
``_revisions``, ``_revs_info``, inline attachments); ``get``, ``all_docs``,
``revs_diff`` and ``bulk_get`` are the rest of
https://docs.couchdb.org/en/stable/api/document/common.html and ``/db/_all_docs``,
``_revs_diff``, ``_bulk_get``. Each function runs on the connection of a read the
caller holds (``LocalFile.reading``); the arguments' checks come first, outside it.
"""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from .. import revtree
from ..errors import BadRequest, NotFound
from . import local_tables as tables
from .local_tables import Tree
from .validate import check_doc_id, is_local_id

__all__ = ["all_docs", "bulk_get", "check_bulk_get", "check_revs_diff", "get", "render",
           "revs_diff"]


def render(conn: sqlite3.Connection, doc_id: str, rev: str, tree: Mapping[str, revtree.Node],
           body: dict[str, Any], *, revs: bool = False, revs_info: bool = False,
           conflicts: bool = False, attachments: bool = False,
           atts_since: Sequence[str] | None = None) -> dict[str, Any]:
    """The doc of revision ``rev`` whose stored content is ``body``."""
    doc: dict[str, Any] = {"_id": doc_id, "_rev": rev}
    doc.update(body)
    if tree[rev].deleted:
        doc["_deleted"] = True
    if attachments and doc.get("_attachments"):
        doc["_attachments"] = _inline(conn, tree, rev, doc["_attachments"], atts_since)
    if conflicts:
        found = revtree.conflicts(tree)
        if found:
            doc["_conflicts"] = found
    if revs:
        doc["_revisions"] = revtree.revisions(tree, rev)
    if revs_info:
        chain = revtree.ancestry(tree, rev)
        have = {r for (r,) in conn.execute(
            "SELECT rev FROM revs WHERE id = ? AND body IS NOT NULL "
            f"AND rev IN ({','.join('?' * len(chain))})",
            [doc_id, *chain])}
        doc["_revs_info"] = [{"rev": r, "status": "deleted" if tree[r].deleted and r in have
                              else "available" if r in have else "missing"} for r in chain]
    return doc


def _inline(conn: sqlite3.Connection, tree: Mapping[str, revtree.Node], rev: str,
            stubs: Mapping[str, Any], atts_since: Sequence[str] | None) -> dict[str, Any]:
    """Attachment stubs with their data, but for those the ``atts_since`` revs had."""
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
        data = tables.attachment_data(conn, stub["digest"])
        if data is None:
            out[name] = dict(stub)
            continue
        att = {k: v for k, v in stub.items() if k != "stub"}
        att["data"] = base64.b64encode(data).decode("ascii")
        out[name] = att
    return out


def get(conn: sqlite3.Connection, doc_id: str, rev: str | None,
        open_revs: Sequence[str] | str | None, latest: bool, opts: dict[str, Any]) -> Any:
    """``LocalDatabase.get`` of a checked, non-``_local`` id; ``opts`` go to ``render``."""
    tree = tables.load_trees(conn, [doc_id]).get(doc_id, {})
    if open_revs is not None:
        return _open_revs(conn, doc_id, tree, open_revs, latest, opts)
    if not tree:
        raise NotFound("missing")
    if rev is None:
        rev = revtree.winner(tree)
        if tree[rev].deleted:
            raise NotFound("deleted")
    elif latest and rev in tree:
        rev = revtree.descendant_leaves(tree, rev)[0]
    body = tables.read_body(conn, doc_id, rev) if rev in tree else None
    if body is None:
        raise NotFound("missing")
    return render(conn, doc_id, rev, tree, body, **opts)


def _open_revs(conn: sqlite3.Connection, doc_id: str, tree: Tree, open_revs: Sequence[str] | str,
               latest: bool, opts: dict[str, Any]) -> list[dict[str, Any]]:
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
            body = tables.read_body(conn, doc_id, target) if target in tree else None
            if body is None:
                out.append({"missing": r})
            else:
                out.append({"ok": render(conn, doc_id, target, tree, body, **opts)})
    return out


def all_docs(conn: sqlite3.Connection, *, include_docs: bool, keys: Sequence[str] | None,
             startkey: str | None, endkey: str | None, limit: int | None, skip: int,
             descending: bool, conflicts: bool) -> dict[str, Any]:
    """``LocalDatabase.all_docs`` with checked arguments."""
    total = conn.execute("SELECT count(*) FROM docs WHERE deleted = 0").fetchone()[0]
    if keys is not None:
        if not isinstance(keys, (list, tuple)):
            raise BadRequest("keys must be a list")
        rows = _rows_for_keys(conn, list(keys), include_docs, conflicts)
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
    trees = tables.load_trees(conn, [i for i, _ in found]) if include_docs else {}
    for doc_id, win in found:
        row: dict[str, Any] = {"id": doc_id, "key": doc_id, "value": {"rev": win}}
        if include_docs:
            row["doc"] = render(conn, doc_id, win, trees[doc_id],
                                tables.read_body(conn, doc_id, win) or {}, conflicts=conflicts)
        rows.append(row)
    return {"total_rows": total, "offset": offset, "rows": rows}


def _rows_for_keys(conn: sqlite3.Connection, keys: list[Any], include_docs: bool,
                   conflicts: bool) -> list[dict[str, Any]]:
    ids = [k for k in keys if isinstance(k, str)]
    found: dict[str, tuple[str, int]] = {}
    for chunk in tables.chunks(list(dict.fromkeys(ids))):
        marks = ",".join("?" * len(chunk))
        for doc_id, win, deleted in conn.execute(
                f"SELECT id, winner, deleted FROM docs WHERE id IN ({marks})", chunk):
            found[doc_id] = (win, deleted)
    trees = tables.load_trees(conn, list(found)) if include_docs else {}
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
            row["doc"] = render(conn, key, win, trees[key], tables.read_body(conn, key, win) or {},
                                conflicts=conflicts)
        rows.append(row)
    return rows


def check_revs_diff(revs: Any) -> None:
    if not isinstance(revs, Mapping):
        raise BadRequest("revs_diff takes an object of id: [revs]")
    for doc_id, rev_list in revs.items():
        check_doc_id(doc_id)
        if not isinstance(rev_list, (list, tuple)):
            raise BadRequest(f"revs_diff: revs of {doc_id!r} must be a list")
        for rev in rev_list:
            revtree.parse_rev(rev)


def revs_diff(trees: Mapping[str, Tree], revs: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """``_revs_diff`` of checked ``revs`` against the docs' ``trees``. Pure."""
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


def check_bulk_get(docs: Any) -> None:
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


def bulk_get(conn: sqlite3.Connection, docs: Sequence[Mapping[str, Any]], *, revs: bool,
             latest: bool, attachments: bool) -> dict[str, Any]:
    """``_bulk_get`` of checked requests: one result per request, in order."""
    results: list[dict[str, Any]] = []
    trees = tables.load_trees(conn, [req["id"] for req in docs if not is_local_id(req["id"])])
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
            body = tables.read_body(conn, doc_id, target) if target in tree else None
            if body is None:
                continue
            entries.append({"ok": render(conn, doc_id, target, tree, body, revs=revs,
                                         attachments=attachments,
                                         atts_since=req.get("atts_since"))})
        if not entries:
            entries.append({"error": {"id": doc_id, "rev": rev or "undefined",
                                      "error": "not_found", "reason": reason}})
        results.append({"id": doc_id, "docs": entries})
    return {"results": results}
