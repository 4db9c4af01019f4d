"""The operations a channel may call, and the rules for their arguments.

This allow-list is the whole remote surface of a granted database: a ``call`` names
one of these ops and gives the keyword arguments of the same ``Database`` method
(pouchsync_sync/store/base.py). Nothing else is dispatched, no name is looked up on
the database object, nothing is evaluated. ``validate_call`` checks a call's op and
arguments and returns the keyword arguments to pass; a problem raises ``BadRequest``
naming the argument, which the server sends back as the call's reply.

Results are JSON except ``get_attachment``'s bytes, which travel as base64:
``encode_result`` / ``decode_result`` convert on each side. ``decode_result`` also
checks a reply's *shape* (its top-level type and the fields the replicator and users
rely on, per ``Database``'s docstrings) so a buggy or hostile server's reply becomes a
``ProtocolError`` naming the op, never an ``AttributeError`` deep in the replicator.
Pure.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Callable

from ..errors import BadRequest, ProtocolError

__all__ = [
    "OPS",
    "WRITE_OPS",
    "validate_call",
    "validate_changes_args",
    "written_ids",
    "write_missing_answer",
    "encode_result",
    "decode_result",
    "reply_problem",
]


def _str(v: Any) -> bool:
    return isinstance(v, str)


def _bool(v: Any) -> bool:
    return type(v) is bool


def _nonneg_int(v: Any) -> bool:
    return type(v) is int and v >= 0


def _number(v: Any) -> bool:
    return type(v) in (int, float) and v >= 0


def _obj(v: Any) -> bool:
    return isinstance(v, dict)


def _any(v: Any) -> bool:
    return True


def _str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _obj_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, dict) for x in v)


def _text_rows(v: Any) -> bool:
    return type(v) is list and all(type(r) is list and len(r) == 3 for r in v)


def _open_revs(v: Any) -> bool:
    return v == "all" or _str_list(v)


def _revs_map(v: Any) -> bool:
    return isinstance(v, dict) and all(_str_list(x) for x in v.values())


def _style(v: Any) -> bool:
    return v in ("main_only", "all_docs")


def _feed(v: Any) -> bool:
    return v in ("normal", "longpoll")


_Check = Callable[[Any], bool]

_DESCRIBE: dict[_Check, str] = {
    _str: "a string", _bool: "true or false", _nonneg_int: "an integer >= 0",
    _number: "a number >= 0", _obj: "an object", _any: "any JSON value",
    _str_list: "a list of strings", _obj_list: "a list of objects",
    _open_revs: 'a list of strings or "all"', _revs_map: "an object of id -> list of revs",
    _style: '"main_only" or "all_docs"', _feed: '"normal" or "longpoll"',
    _text_rows: "a list of [id, rev, text] rows",
}

#: op -> {argument: (check, required)}
OPS: dict[str, dict[str, tuple[_Check, bool]]] = {
    "info": {},
    "get": {"doc_id": (_str, True), "rev": (_str, False), "revs": (_bool, False),
            "revs_info": (_bool, False), "conflicts": (_bool, False),
            "open_revs": (_open_revs, False), "latest": (_bool, False),
            "attachments": (_bool, False)},
    "put": {"doc": (_obj, True)},
    "post": {"doc": (_obj, True)},
    "delete": {"doc_id": (_str, True), "rev": (_str, True)},
    "bulk_docs": {"docs": (_obj_list, True), "new_edits": (_bool, False)},
    "write_missing": {"docs": (_obj_list, True)},
    "write_missing_texts": {"rows": (_text_rows, True)},
    "all_docs": {"include_docs": (_bool, False), "keys": (_str_list, False),
                 "startkey": (_str, False), "endkey": (_str, False),
                 "limit": (_nonneg_int, False), "skip": (_nonneg_int, False),
                 "descending": (_bool, False), "conflicts": (_bool, False)},
    "changes": {"since": (_any, False), "limit": (_nonneg_int, False),
                "include_docs": (_bool, False), "conflicts": (_bool, False),
                "style": (_style, False), "doc_ids": (_str_list, False),
                "selector": (_obj, False), "descending": (_bool, False),
                "feed": (_feed, False), "timeout": (_number, False),
                "attachments": (_bool, False)},
    "changes_texts": {"since": (_any, False), "limit": (_nonneg_int, False),
                      "max_bytes": (_nonneg_int, False)},
    "revs_diff": {"revs": (_revs_map, True)},
    "bulk_get": {"docs": (_obj_list, True), "revs": (_bool, False),
                 "latest": (_bool, False), "attachments": (_bool, False)},
    "get_attachment": {"doc_id": (_str, True), "name": (_str, True), "rev": (_str, False)},
}

#: ops that write documents (refused on read-only grants except ``_local/`` docs)
WRITE_OPS = frozenset({"put", "post", "delete", "bulk_docs", "write_missing",
                       "write_missing_texts"})


def validate_call(op: Any, args: Any) -> dict[str, Any]:
    """The keyword arguments for ``Database.<op>``; ``BadRequest`` naming what is wrong.

    ``null`` arguments are dropped (the method's default applies).
    """
    if not isinstance(op, str):
        raise BadRequest("a call needs a string 'op'")
    spec = OPS.get(op)
    if spec is None:
        raise BadRequest(f"unknown op {op[:50]!r}")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise BadRequest(f"'args' of {op} must be an object")
    kwargs: dict[str, Any] = {}
    for name, value in args.items():
        if name not in spec:
            raise BadRequest(f"unknown argument {str(name)[:50]!r} for {op}")
        if value is None:
            continue
        check, _required = spec[name]
        if not check(value):
            raise BadRequest(f"argument {name!r} of {op} must be {_DESCRIBE[check]}")
        kwargs[name] = value
    for name, (_check, required) in spec.items():
        if required and name not in kwargs:
            raise BadRequest(f"{op} needs the argument {name!r}")
    return kwargs


def validate_changes_args(options: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``changes`` from a subscription's options (same rules)."""
    return validate_call("changes", {k: v for k, v in options.items() if v is not None})


def written_ids(op: str, kwargs: Mapping[str, Any]) -> list[str | None]:
    """The document ids a write op touches, in order (``None``: a generated id)."""
    if op in ("put", "post"):
        doc_id = kwargs["doc"].get("_id")
        return [doc_id if isinstance(doc_id, str) else None]
    if op == "delete":
        return [kwargs["doc_id"]]
    if op in ("bulk_docs", "write_missing"):
        out: list[str | None] = []
        for doc in kwargs["docs"]:
            doc_id = doc.get("_id")
            out.append(doc_id if isinstance(doc_id, str) else None)
        return out
    if op == "write_missing_texts":
        return [row[0] if isinstance(row[0], str) else None for row in kwargs["rows"]]
    return []


def write_missing_answer(docs: list[Any], written: list[Any],
                         failures: list[Any]) -> dict[str, Any]:
    """``write_missing``'s reply: ``{"written": [indexes into docs], "failures"}``.

    ``written`` holds doc objects of ``docs`` (``Database.write_missing`` answers the very
    objects it was given), so their positions are found by identity.
    """
    index = {id(doc): i for i, doc in enumerate(docs)}
    return {"written": [index[id(doc)] for doc in written], "failures": list(failures)}


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
    if type(written) is not list or not all(type(i) is int and 0 <= i < count for i in written):
        return f"'written' is not a list of indexes into the {sent} sent"
    return None


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
