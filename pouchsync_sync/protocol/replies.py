"""The results of calls on the wire: ``encode_result`` / ``decode_result`` and the checks
of a reply's shape (``reply_problem``). Pure.

Results are JSON except ``get_attachment``'s bytes, which travel as base64:
``encode_result`` (the server) and ``decode_result`` (the client) convert on each side.
``decode_result`` also checks a reply's *shape* (its top-level type and the fields the
replicator and users rely on, per ``Database``'s docstrings) so a buggy or hostile
server's reply becomes a ``ProtocolError`` naming the op, never an ``AttributeError``
deep in the replicator. ``protocol.ops`` re-exports the three.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Callable

from ..errors import ProtocolError

__all__ = ["decode_result", "encode_result", "reply_problem"]


def encode_result(op: str, result: Any) -> Any:
    """A method's result as JSON (attachment bytes become ``{"data": base64}``)."""
    if op == "get_attachment":
        return {"data": base64.b64encode(bytes(result)).decode("ascii")}
    return result


def decode_result(op: str, ok: Any, args: Mapping[str, Any] | None = None) -> Any:
    """The method's result from a reply's ``ok`` (the client side of ``encode_result``),
    after checking its shape; ``ProtocolError`` naming the op when it is wrong.

    ``args`` are the call's arguments (``get`` with ``open_revs`` answers a list).
    """
    if op == "get_attachment":
        try:
            return base64.b64decode(ok["data"], validate=True)
        except (KeyError, TypeError, binascii.Error) as exc:
            raise ProtocolError(f"get_attachment reply without valid base64 data: {exc}") from exc
    problem = reply_problem(op, ok, args)
    if problem is not None:
        raise ProtocolError(f"the server's reply to {op} is malformed ({problem}): {_short(ok)}")
    return ok


# -- reply shapes (the client side): each returns what is wrong, or None ----------------

def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"...({len(text)} chars)"


def _not_obj(v: Any, what: str) -> str | None:
    return None if isinstance(v, dict) else f"{what} is {type(v).__name__}, not an object"


def _not_list(v: Any, what: str) -> str | None:
    return None if isinstance(v, list) else f"{what} is {type(v).__name__}, not a list"


def _not_objs(v: Any, what: str) -> str | None:
    if type(v) is not list:
        return f"{what} is {type(v).__name__}, not a list"
    for item in v:
        if type(item) is not dict:
            return f"{what} holds a {type(item).__name__}, not an object"
    return None


def _not_strs(v: Any, what: str) -> str | None:
    if not isinstance(v, list):
        return f"{what} is {type(v).__name__}, not a list"
    for item in v:
        if not isinstance(item, str):
            return f"{what} holds a {type(item).__name__}, not a string"
    return None


def _info_shape(ok: Any, args: Mapping[str, Any]) -> str | None:
    return _not_obj(ok, "the answer")


def _get_shape(ok: Any, args: Mapping[str, Any]) -> str | None:
    if args.get("open_revs") is None:
        if not isinstance(ok, dict):
            return f"the answer is {type(ok).__name__}, not a document"
        return None if isinstance(ok.get("_id"), str) else "the document has no string '_id'"
    problem = _not_objs(ok, "the answer (open_revs)")
    if problem is not None:
        return problem
    for item in ok:
        if not isinstance(item.get("ok"), dict) and "missing" not in item:
            return 'an open_revs entry is neither {"ok": doc} nor {"missing": rev}'
    return None


def _write_shape(ok: Any, args: Mapping[str, Any]) -> str | None:
    problem = _not_obj(ok, "the answer")
    if problem is None and not (isinstance(ok.get("id"), str) and isinstance(ok.get("rev"), str)):
        problem = "the answer has no string 'id' and 'rev'"
    return problem


def _bulk_docs_shape(ok: Any, args: Mapping[str, Any]) -> str | None:
    return _not_objs(ok, "the answer")


def _write_missing_shape(ok: Any, args: Mapping[str, Any], sent: str = "docs") -> str | None:
    problem = _not_obj(ok, "the answer") or _not_objs(ok.get("failures"), "'failures'")
    if problem is not None:
        return problem
    written = ok.get("written")
    count = len(args.get(sent) or ())
    if type(written) is not list or not _indexes(written, count):
        return f"'written' is not a list of indexes into the {sent} sent"
    return None


def _indexes(values: list[Any], count: int) -> bool:
    """Every one of ``values`` is an int (not a bool) in ``range(count)``."""
    return not values or (set(map(type, values)) == _INT
                          and min(values) >= 0 and max(values) < count)


_INT = {int}


def _write_missing_texts_shape(ok: Any, args: Mapping[str, Any]) -> str | None:
    return _write_missing_shape(ok, args, "rows")


def _all_docs_shape(ok: Any, args: Mapping[str, Any]) -> str | None:
    return _not_obj(ok, "the answer") or _not_objs(ok.get("rows"), "'rows'")


def _feed_shape(ok: Any, row_problem: Callable[[Any], str | None]) -> str | None:
    """A changes feed answer: an object with a list ``results`` of rows that
    ``row_problem`` accepts, and an integer ``pending`` if any."""
    problem = _not_obj(ok, "the answer")
    if problem is not None:
        return problem
    results = ok.get("results")
    if type(results) is not list:
        return f"'results' is {type(results).__name__}, not a list"
    for row in results:  # on every batch: kept to a few type checks per row
        problem = row_problem(row)
        if problem is not None:
            return problem
    pending = ok.get("pending")
    if pending is not None and type(pending) is not int:
        return f"'pending' is {type(pending).__name__}, not an integer"
    return None


def _change_row_problem(row: Any) -> str | None:
    if type(row) is not dict:
        return f"'results' holds a {type(row).__name__}, not a change row"
    changes = row.get("changes")
    if type(row.get("id")) is not str or type(changes) is not list:
        return "a change row has no string 'id' and list 'changes'"
    for change in changes:
        if type(change) is not dict:
            return f"a change row's 'changes' holds a {type(change).__name__}, not an object"
    return None


def _text_row_problem(row: Any) -> str | None:
    if type(row) is not list or len(row) != 5:
        return "'results' holds a row that is not [seq, id, leaves, deleted, text]"
    _seq, doc_id, leaves, deleted, text = row
    if type(doc_id) is not str or type(leaves) is not list or type(deleted) is not bool \
            or (text is not None and type(text) is not str):
        return "a row is not [seq, string id, list of leaves, boolean, text or null]"
    for leaf in leaves:
        if type(leaf) is not str:
            return "a row's leaves hold a non-string"
    return None


def _changes_shape(ok: Any, args: Mapping[str, Any]) -> str | None:
    return _feed_shape(ok, _change_row_problem)


def _changes_texts_shape(ok: Any, args: Mapping[str, Any]) -> str | None:
    return _feed_shape(ok, _text_row_problem)


def _revs_diff_shape(ok: Any, args: Mapping[str, Any]) -> str | None:
    problem = _not_obj(ok, "the answer")
    if problem is not None:
        return problem
    for entry in ok.values():
        if not isinstance(entry, dict):
            return f"an entry is {type(entry).__name__}, not an object"
        for key in ("missing", "possible_ancestors"):
            if entry.get(key) is not None:
                problem = _not_strs(entry[key], f"an entry's {key!r}")
                if problem is not None:
                    return problem
    return None


def _bulk_get_shape(ok: Any, args: Mapping[str, Any]) -> str | None:
    problem = _not_obj(ok, "the answer") or _not_objs(ok.get("results"), "'results'")
    if problem is not None:
        return problem
    for result in ok["results"]:  # on every fetch: kept to a few type checks per doc
        problem = _not_objs(result.get("docs"), "a result's 'docs'")
        if problem is not None:
            return problem
    return None


#: op -> the check of its reply's ``ok`` (``get_attachment`` is checked while decoded)
_REPLY_SHAPES: dict[str, Callable[[Any, Mapping[str, Any]], str | None]] = {
    "info": _info_shape, "get": _get_shape, "put": _write_shape, "post": _write_shape,
    "delete": _write_shape, "bulk_docs": _bulk_docs_shape,
    "write_missing": _write_missing_shape, "all_docs": _all_docs_shape,
    "write_missing_texts": _write_missing_texts_shape, "changes_texts": _changes_texts_shape,
    "changes": _changes_shape, "revs_diff": _revs_diff_shape, "bulk_get": _bulk_get_shape,
}


def reply_problem(op: str, ok: Any, args: Mapping[str, Any] | None = None) -> str | None:
    """What is wrong with the shape of a reply's ``ok`` to ``op`` (``None``: nothing).

    Checks the top-level type and the fields callers rely on, not every value.
    """
    check = _REPLY_SHAPES.get(op)
    return None if check is None else check(ok, args or {})
