"""``assert_converged``: do several databases hold the same documents, revision for revision?

A database's ``snapshot`` is, per document id: the winning revision and whether it is
deleted, and every leaf revision (the conflicts and the deleted leaves) with its body,
its revision history (``_revisions``) and its attachments (content type, length and
digest; the bytes when a store gives no digest). Two databases have converged when their
snapshots are equal. ``_local/`` documents (checkpoints) are not replicated and so are
not compared.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from ..store.base import Database

__all__ = ["assert_converged", "snapshot", "differences"]

#: lines shown per differing document, and documents shown in one failure
LINES_PER_DOC = 4
MAX_DOCS = 10
_CHUNK = 500


def snapshot(db: Database) -> dict[str, dict[str, Any]]:
    """``{doc_id: {"winner", "deleted", "leaves": {rev: {"history", "body",
    "attachments"}}}}`` for every document of ``db`` (design documents included)."""
    rows = db.changes(since=0, style="all_docs", include_docs=True)["results"]
    wanted: list[dict[str, str]] = []
    docs: dict[str, dict[str, Any]] = {}
    for row in rows:
        winner = row["doc"]["_rev"]
        docs[row["id"]] = {"winner": winner, "deleted": bool(row.get("deleted")), "leaves": {}}
        wanted.extend({"id": row["id"], "rev": change["rev"]} for change in row["changes"])
    for start in range(0, len(wanted), _CHUNK):
        for result in db.bulk_get(wanted[start:start + _CHUNK], revs=True)["results"]:
            for entry in result["docs"]:
                if "ok" not in entry:
                    raise AssertionError(f"{db!r} lists a leaf of {result['id']!r} it cannot "
                                         f"read: {entry.get('error')}")
                leaf = entry["ok"]
                docs[result["id"]]["leaves"][leaf["_rev"]] = _leaf(db, leaf)
    return docs


def _leaf(db: Database, leaf: dict[str, Any]) -> dict[str, Any]:
    revisions = leaf.get("_revisions") or {}
    start, ids = revisions.get("start", 0), revisions.get("ids", [])
    attachments = {}
    for name, stub in sorted((leaf.get("_attachments") or {}).items()):
        digest = stub.get("digest")
        if not digest:  # a store that gives no digest: compare the bytes themselves
            data = db.get_attachment(leaf["_id"], name, leaf["_rev"])
            digest = "md5-" + hashlib.md5(data).hexdigest()
        attachments[name] = (stub.get("content_type"), stub.get("length"), digest)
    body = {k: v for k, v in leaf.items() if not k.startswith("_")}
    return {"history": [f"{start - i}-{rev_id}" for i, rev_id in enumerate(ids)],
            "body": body, "deleted": bool(leaf.get("_deleted")), "attachments": attachments}


def differences(a: dict[str, Any], b: dict[str, Any], names: tuple[str, str] = ("a", "b"),
                per_doc: int = LINES_PER_DOC) -> dict[str, list[str]]:
    """``{doc_id: [what differs, ...]}`` between two snapshots, at most ``per_doc`` lines
    per document (the last says how many more were left out)."""
    out: dict[str, list[str]] = {}
    for doc_id in sorted(set(a) | set(b)):
        lines = _doc_lines(a.get(doc_id), b.get(doc_id), names)
        if lines:
            if len(lines) > per_doc:
                lines = lines[:per_doc - 1] + [f"... and {len(lines) - per_doc + 1} more"]
            out[doc_id] = lines
    return out


def _doc_lines(x: dict[str, Any] | None, y: dict[str, Any] | None,
               names: tuple[str, str]) -> list[str]:
    na, nb = names
    if x is None or y is None:
        there, holder = (nb, y) if x is None else (na, x)
        missing = na if x is None else nb
        assert holder is not None
        return [f"missing in {missing} (in {there} at {holder['winner']})"]
    lines: list[str] = []
    if x["winner"] != y["winner"] or x["deleted"] != y["deleted"]:
        lines.append(f"winner {_rev(x)} in {na}, {_rev(y)} in {nb}")
    leaves_x, leaves_y = set(x["leaves"]), set(y["leaves"])
    if leaves_x != leaves_y:
        only_x = sorted(leaves_x - leaves_y)
        only_y = sorted(leaves_y - leaves_x)
        if only_x:
            lines.append(f"leaves only in {na}: {', '.join(only_x)}")
        if only_y:
            lines.append(f"leaves only in {nb}: {', '.join(only_y)}")
    for rev in sorted(leaves_x & leaves_y):
        lx, ly = x["leaves"][rev], y["leaves"][rev]
        for key, label in (("history", "revision history"), ("deleted", "deleted flag"),
                           ("body", "body"), ("attachments", "attachments")):
            if lx[key] != ly[key]:
                lines.append(f"{label} of {rev}: {_short(lx[key])} in {na}, "
                             f"{_short(ly[key])} in {nb}")
    return lines


def _rev(doc: dict[str, Any]) -> str:
    return doc["winner"] + (" (deleted)" if doc["deleted"] else "")


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _label(db: Any, index: int, seen: Sequence[str]) -> str:
    name = getattr(db, "name", None)
    label = f"{name!r}" if isinstance(name, str) else f"database #{index + 1}"
    return label if label not in seen else f"{label} (#{index + 1})"


def assert_converged(*dbs: Database) -> None:
    """Pass when every database holds the same documents with the same winning
    revisions, conflicts, revision histories, bodies and attachments; else raise
    ``AssertionError`` with a short diff naming each differing document id (at most
    ``LINES_PER_DOC`` lines per document and ``MAX_DOCS`` documents)."""
    if len(dbs) < 2:
        raise TypeError(f"assert_converged needs at least two databases, got {len(dbs)}")
    for db in dbs:
        if not isinstance(db, Database):
            raise TypeError(f"assert_converged compares pouchsync_sync Databases, "
                            f"not {type(db).__name__}")
    labels: list[str] = []
    for index, db in enumerate(dbs):
        labels.append(_label(db, index, labels))
    snaps = [snapshot(db) for db in dbs]
    report: list[str] = []
    differing: set[str] = set()
    detailed = 0
    for label, snap in zip(labels[1:], snaps[1:]):
        diff = differences(snaps[0], snap, (labels[0], label))
        differing.update(diff)
        for doc_id, lines in diff.items():
            if detailed >= MAX_DOCS:
                break
            detailed += 1
            report.append(f"  {doc_id!r} ({labels[0]} vs {label}):")
            report.extend(f"    {line}" for line in lines)
    if differing:
        shown = sorted(differing)
        head = (f"databases did not converge: {len(differing)} document(s) differ: "
                f"{', '.join(repr(d) for d in shown[:MAX_DOCS])}"
                + (f" and {len(shown) - MAX_DOCS} more" if len(shown) > MAX_DOCS else ""))
        raise AssertionError("\n".join([head] + report))
