"""Run one allow-listed call on a granted database, and turn failures into wire errors.

The op names map to explicit functions (``_METHODS``), never to ``getattr`` on the
database: the allow-list in ``protocol.ops`` is the whole surface. Write policy comes
from ``grant.refusal``; in ``bulk_docs`` and ``write_missing`` refusals are per document,
in CouchDB's shape, and the other documents are written.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Callable

from ..errors import BadRequest, CouchError, Denied, Forbidden, TransportError
from ..protocol import ops
from ..store.base import Database
from .grant import Grant, refusal, refusals

__all__ = ["execute", "error_json", "bounded"]

log = logging.getLogger(__name__)

_METHODS: dict[str, Callable[[Database, dict[str, Any]], Any]] = {
    "info": lambda db, kw: db.info(**kw),
    "get": lambda db, kw: db.get(**kw),
    "put": lambda db, kw: db.put(**kw),
    "post": lambda db, kw: db.post(**kw),
    "delete": lambda db, kw: db.delete(**kw),
    "bulk_docs": lambda db, kw: db.bulk_docs(**kw),
    "write_missing": lambda db, kw: db.write_missing(**kw),
    "write_missing_texts": lambda db, kw: db.write_missing_texts(**kw),
    "changes_texts": lambda db, kw: db.changes_texts(**kw),
    "all_docs": lambda db, kw: db.all_docs(**kw),
    "changes": lambda db, kw: db.changes(**kw),
    "revs_diff": lambda db, kw: db.revs_diff(**kw),
    "bulk_get": lambda db, kw: db.bulk_get(**kw),
    "get_attachment": lambda db, kw: db.get_attachment(**kw),
}
assert set(_METHODS) == set(ops.OPS), "dispatch table and allow-list disagree"


def execute(grant: Grant, op: str, kwargs: dict[str, Any]) -> Any:
    """The JSON result of ``op`` (validated by ``ops.validate_call``) on the grant's db."""
    if op == "bulk_docs":
        return ops.encode_result(op, _bulk_docs(grant, kwargs))
    if op == "write_missing":
        return _write_missing(grant, kwargs)
    if op == "write_missing_texts":
        return _write_missing_texts(grant, kwargs)
    if op in ops.WRITE_OPS:
        why = refusal(grant, ops.written_ids(op, kwargs)[0])
        if why is not None:
            raise Forbidden(why)
    return ops.encode_result(op, _METHODS[op](grant.db, kwargs))


#: reads whose reply grows with the database: a page of at most ``max_rows`` rows
_PAGED_OPS = frozenset({"changes", "changes_texts", "all_docs"})
#: reads whose reply grows with the list asked for: at most ``max_rows`` items
_LISTED = {"bulk_get": "docs", "all_docs": "keys"}


def bounded(op: str, kwargs: dict[str, Any], max_rows: int) -> dict[str, Any]:
    """``kwargs`` of a validated call with the server's row bound applied: a paged read
    gets ``limit <= max_rows`` (a smaller one is kept; the caller pages on), a read of
    more than ``max_rows`` listed items is a ``BadRequest`` naming the limit."""
    listed = _LISTED.get(op)
    items = kwargs.get(listed) if listed else None
    if items is not None and len(items) > max_rows:
        raise BadRequest(f"{op} asks for {len(items)} {listed}; this server answers at most "
                         f"{max_rows} per call (max_rows): ask in several calls")
    if op in _PAGED_OPS and items is None:
        return {**kwargs, "limit": min(kwargs.get("limit", max_rows), max_rows)}
    return kwargs


def _bulk_docs(grant: Grant, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    docs = kwargs["docs"]
    new_edits = kwargs.get("new_edits", True)
    ids = ops.written_ids("bulk_docs", kwargs)
    refused: dict[int, dict[str, Any]] = {}
    for i, why in refusals(grant, ids):
        row: dict[str, Any] = {"id": ids[i], "error": "forbidden", "reason": why}
        rev = docs[i].get("_rev")
        if isinstance(rev, str):
            row["rev"] = rev
        refused[i] = row
    if not refused:
        return grant.db.bulk_docs(**kwargs)
    allowed = [doc for i, doc in enumerate(docs) if i not in refused]
    written = grant.db.bulk_docs(allowed, new_edits=new_edits) if allowed else []
    if not new_edits:  # CouchDB then lists only the failures
        return list(written) + list(refused.values())
    results = iter(written)
    return [refused[i] if i in refused else next(results) for i in range(len(docs))]


def _write_missing(grant: Grant, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``{"written": [indexes into docs], "failures": [...]}``. A doc the grant may not
    write is a ``forbidden`` failure only when the database lacks its revision (one it
    has, e.g. a doc the client pulled from here, is simply not missing)."""
    docs = kwargs["docs"]
    allowed, failures = _refusals(grant, ops.written_ids("write_missing", kwargs),
                                  lambda i: docs[i].get("_rev"))
    written: list[dict[str, Any]] = []
    if allowed:
        written, refused = grant.db.write_missing(
            docs if len(allowed) == len(docs) else [docs[i] for i in allowed])
        failures.extend(refused)
    return ops.write_missing_answer(docs, written, failures)


def _write_missing_texts(grant: Grant, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``write_missing`` for text rows: the same answer and the same refusals."""
    rows = kwargs["rows"]
    allowed, failures = _refusals(grant, ops.written_ids("write_missing_texts", kwargs),
                                  lambda i: rows[i][1])
    written: list[int] = []
    if len(allowed) == len(rows):  # nothing refused (the common case): the rows as sent
        written, failures = grant.db.write_missing_texts(rows)
    elif allowed:
        positions, refused = grant.db.write_missing_texts([rows[i] for i in allowed])
        written = [allowed[j] for j in positions]
        failures.extend(refused)
    return {"written": written, "failures": failures}


def _refusals(grant: Grant, ids: list[str | None], rev_at: Callable[[int], Any]
              ) -> tuple[list[int], list[dict[str, Any]]]:
    """``(the positions the grant may write, a forbidden failure for each other one the
    database lacks)`` for replicated revisions: ``ids[i]`` and its revision ``rev_at(i)``."""
    refused = refusals(grant, ids)
    if not refused:
        return list(range(len(ids))), []
    skip = {i for i, _why in refused}
    allowed = [i for i in range(len(ids)) if i not in skip]
    asked: dict[str, list[str]] = {}
    for i, _why in refused:
        doc_id, rev = ids[i], rev_at(i)
        if doc_id is not None and isinstance(rev, str):
            asked.setdefault(doc_id, []).append(rev)
    diff = grant.db.revs_diff(asked) if asked else {}
    failures: list[dict[str, Any]] = []
    for i, why in refused:
        doc_id, rev = ids[i], rev_at(i)
        if doc_id is not None and isinstance(rev, str) \
                and rev not in ((diff.get(doc_id) or {}).get("missing") or ()):
            continue  # already here: not missing, nothing to refuse
        failures.append({"id": doc_id, "rev": rev if isinstance(rev, str) else None,
                         "error": "forbidden", "reason": why})
    return allowed, failures


def error_json(exc: BaseException, *, what: str = "call") -> dict[str, Any]:
    """``{status, error, reason}`` for an exception raised while serving ``what``.

    CouchDB-shaped 4xx errors travel as they are; a backend that cannot be reached is
    a retryable 503; a 5xx of the backend (say ``SQLite error: ...``) and anything else
    is a 500 with a generic reason: the cause goes to the server's log, never its text
    to the client.
    """
    if isinstance(exc, (CouchError, Denied)):
        body = exc.to_json()
        status = body.get("status")
        if not isinstance(status, int) or status < 500 or status == 503:
            return body
        log.error("server error during %s: %s", what, exc, exc_info=exc)
        return {"status": status, "error": body.get("error") or "internal_server_error",
                "reason": "internal server error"}
    if isinstance(exc, TransportError):
        log.warning("database unavailable during %s: %s", what, exc)
        return {"status": 503, "error": "unavailable", "reason": "database unavailable"}
    log.error("unexpected error during %s", what, exc_info=exc)
    return {"status": 500, "error": "internal_server_error", "reason": "internal server error"}


def describe(kwargs: Mapping[str, Any]) -> str:
    """A short, credential-free description of call arguments for DEBUG logs."""
    return ",".join(sorted(kwargs))
