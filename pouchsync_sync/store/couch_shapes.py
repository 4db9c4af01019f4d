"""Answers of CouchDB-protocol servers brought to CouchDB 3's shapes (pure, no I/O).

pouchdb-server, our test server (``pouchsync_sync.testing.couchserver``), answers
``_bulk_get`` in its own way (tests/unit/test_couch_names.py pins both shapes):
results grouped by id instead of in request
order, ``{"missing": rev}`` instead of ``{"error": {...}}``, and ``{}`` (or nothing at
all) for a rev-less request on a deleted or unknown doc. CouchDB 3 answers one result
per request, in order (https://docs.couchdb.org/en/stable/api/database/bulk-api.html#db-bulk-get).
These functions map either form onto CouchDB 3's; what cannot be mapped is left as
``None`` for the caller to fetch on its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["bulk_get_results", "missing_entry", "open_revs_entries", "strip_null_docs"]


def missing_entry(doc_id: str, rev: str | None, reason: str = "missing") -> dict[str, Any]:
    """CouchDB 3's ``_bulk_get`` entry for a revision it does not have."""
    return {"error": {"id": doc_id, "rev": rev if rev is not None else "undefined",
                      "error": "not_found", "reason": reason}}


def _normal_item(doc_id: str, item: Any) -> dict[str, Any] | None:
    if not isinstance(item, Mapping):
        return None
    if isinstance(item.get("ok"), Mapping):
        return {"ok": item["ok"]}
    if "missing" in item:
        return missing_entry(doc_id, item["missing"])
    if isinstance(item.get("error"), Mapping):
        return {"error": dict(item["error"])}
    return None  # {} and anything else: unknown, fetch it on its own


def open_revs_entries(doc_id: str, answer: Any) -> list[dict[str, Any]] | None:
    """An ``open_revs`` answer as ``_bulk_get`` entries, or None if it is not one."""
    if not isinstance(answer, list):
        return None
    entries = [_normal_item(doc_id, item) for item in answer]
    if not entries or any(e is None for e in entries):
        return None
    return entries  # type: ignore[return-value]


def _revs_of(result: Mapping[str, Any]) -> set[str]:
    revs: set[str] = set()
    for item in result.get("docs") or ():
        if not isinstance(item, Mapping):
            continue
        if isinstance(item.get("ok"), Mapping) and isinstance(item["ok"].get("_rev"), str):
            revs.add(item["ok"]["_rev"])
        elif isinstance(item.get("missing"), str):
            revs.add(item["missing"])
        elif isinstance(item.get("error"), Mapping) and isinstance(item["error"].get("rev"), str):
            revs.add(item["error"]["rev"])
    return revs


def _match(requests: Sequence[Mapping[str, Any]],
           results: list[Any]) -> list[Mapping[str, Any] | None]:
    """One server result per request: positional when the ids line up (CouchDB 3),
    else by id — exact ``(id, rev)`` first, then the rest of that id in order."""
    results = [r for r in results if isinstance(r, Mapping)]
    if len(results) == len(requests) and all(
            r.get("id") == q["id"] for r, q in zip(results, requests)):
        return list(results)
    by_id: dict[Any, list[Mapping[str, Any]]] = {}
    for result in results:
        by_id.setdefault(result.get("id"), []).append(result)
    picked: list[Mapping[str, Any] | None] = [None] * len(requests)
    for i, req in enumerate(requests):
        rev = req.get("rev")
        queue = by_id.get(req["id"], [])
        if rev is None:
            continue
        for j, result in enumerate(queue):
            if rev in _revs_of(result):
                picked[i] = queue.pop(j)
                break
    for i, req in enumerate(requests):
        queue = by_id.get(req["id"], [])
        if picked[i] is None and queue:
            picked[i] = queue.pop(0)
    return picked


def bulk_get_results(requests: Sequence[Mapping[str, Any]],
                     answer: Any) -> list[dict[str, Any] | None]:
    """For each request, in order, ``{"id", "docs": [...]}`` in CouchDB 3's shape, or
    None where the answer holds nothing usable for it."""
    results = answer.get("results") if isinstance(answer, Mapping) else None
    if not isinstance(results, list):
        return [None] * len(requests)
    out: list[dict[str, Any] | None] = []
    for req, result in zip(requests, _match(requests, results)):
        if result is None:
            out.append(None)
            continue
        docs = [_normal_item(req["id"], item) for item in result.get("docs") or ()]
        if not docs or any(d is None for d in docs):
            out.append(None)
        else:
            out.append({"id": req["id"], "docs": docs})
    return out


def strip_null_docs(answer: Any) -> Any:
    """``_all_docs`` rows without ``include_docs`` carry no ``doc`` (pouchdb-server adds
    ``"doc": null`` to deleted rows when keys are given)."""
    if isinstance(answer, dict) and isinstance(answer.get("rows"), list):
        for row in answer["rows"]:
            if isinstance(row, dict) and row.get("doc", 0) is None:
                del row["doc"]
    return answer
