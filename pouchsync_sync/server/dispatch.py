"""Run one allow-listed call on a granted database, and turn failures into wire errors.

The op names map to explicit functions (``_METHODS``), never to ``getattr`` on the
database: the allow-list in ``protocol.ops`` is the whole surface. Write policy comes
from ``grant.refusal``; in ``bulk_docs`` and ``write_missing`` refusals are per document,
in CouchDB's shape, and the other documents are written.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

from ..errors import CouchError, Denied, Forbidden, TransportError
from ..protocol import ops
from ..store.base import Database
from .grant import Grant, refusal

__all__ = ["execute", "error_json"]

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
        return _write_missing(grant, kwargs["docs"])
    if op == "write_missing_texts":
        return _write_missing_texts(grant, kwargs["rows"])
    if op in ops.WRITE_OPS:
        why = refusal(grant, ops.written_ids(op, kwargs)[0])
        if why is not None:
            raise Forbidden(why)
    return ops.encode_result(op, _METHODS[op](grant.db, kwargs))


def _bulk_docs(grant: Grant, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    docs = kwargs["docs"]
    new_edits = kwargs.get("new_edits", True)
    refused: dict[int, dict[str, Any]] = {}
    for i, doc_id in enumerate(ops.written_ids("bulk_docs", kwargs)):
        why = refusal(grant, doc_id)
        if why is not None:
            row: dict[str, Any] = {"id": doc_id, "error": "forbidden", "reason": why}
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


def _write_missing(grant: Grant, docs: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"written": [indexes into docs], "failures": [...]}``. A doc the grant may not
    write is a ``forbidden`` failure only when the database lacks its revision (one it
    has, e.g. a doc the client pulled from here, is simply not missing)."""
    allowed, failures = _refusals(grant, [(doc.get("_id"), doc.get("_rev")) for doc in docs])
    written: list[dict[str, Any]] = []
    if allowed:
        written, refused = grant.db.write_missing([docs[i] for i in allowed])
        failures.extend(refused)
    return ops.write_missing_answer(docs, written, failures)


def _write_missing_texts(grant: Grant, rows: list[list[Any]]) -> dict[str, Any]:
    """``write_missing`` for text rows: the same answer and the same refusals."""
    if not grant.read_only and (grant.allow_design or not any(
            row[0].__class__ is str and row[0][:8] == "_design/" for row in rows)):
        # nothing refused (the common case): no refusal call per row
        written, failures = grant.db.write_missing_texts(rows)
        return {"written": written, "failures": failures}
    allowed, failures = _refusals(grant, [(row[0], row[1]) for row in rows])
    written: list[int] = []
    if allowed:
        positions, refused = grant.db.write_missing_texts([rows[i] for i in allowed])
        written = [allowed[j] for j in positions]
        failures.extend(refused)
    return {"written": written, "failures": failures}


def _refusals(grant: Grant, revisions: list[tuple[Any, Any]]
              ) -> tuple[list[int], list[dict[str, Any]]]:
    """``(the positions the grant may write, a forbidden failure for each other one the
    database lacks)`` for replicated ``(id, rev)`` pairs."""
    allowed: list[int] = []
    refused: list[tuple[int, str]] = []
    for i, (doc_id, _rev) in enumerate(revisions):
        why = refusal(grant, doc_id if isinstance(doc_id, str) else None)
        if why is None:
            allowed.append(i)
        else:
            refused.append((i, why))
    failures: list[dict[str, Any]] = []
    if refused:
        asked: dict[str, list[str]] = {}
        for i, _why in refused:
            doc_id, rev = revisions[i]
            if isinstance(doc_id, str) and isinstance(rev, str):
                asked.setdefault(doc_id, []).append(rev)
        diff = grant.db.revs_diff(asked) if asked else {}
        for i, why in refused:
            doc_id, rev = revisions[i]
            if isinstance(doc_id, str) and isinstance(rev, str) \
                    and rev not in ((diff.get(doc_id) or {}).get("missing") or ()):
                continue  # already here: not missing, nothing to refuse
            failures.append({"id": doc_id, "rev": rev if isinstance(rev, str) else None,
                             "error": "forbidden", "reason": why})
    return allowed, failures


def error_json(exc: BaseException, *, what: str = "call") -> dict[str, Any]:
    """``{status, error, reason}`` for an exception raised while serving ``what``.

    CouchDB-shaped errors travel as they are; a backend that cannot be reached is a
    retryable 503; anything else is a 500 with a generic reason (the traceback goes to
    the server's log, never to the client).
    """
    if isinstance(exc, (CouchError, Denied)):
        return exc.to_json()
    if isinstance(exc, TransportError):
        log.warning("database unavailable during %s: %s", what, exc)
        return {"status": 503, "error": "unavailable", "reason": "database unavailable"}
    log.error("unexpected error during %s", what, exc_info=exc)
    return {"status": 500, "error": "internal_server_error", "reason": "internal server error"}


def describe(kwargs: Mapping[str, Any]) -> str:
    """A short, credential-free description of call arguments for DEBUG logs."""
    return ",".join(sorted(kwargs))
