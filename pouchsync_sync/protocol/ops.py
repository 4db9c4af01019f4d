"""The operations a channel may call, and the rules for their arguments.

This allow-list is the whole remote surface of a granted database: a ``call`` names
one of these ops and gives the keyword arguments of the same ``Database`` method
(pouchsync_sync/store/base.py). Nothing else is dispatched, no name is looked up on
the database object, nothing is evaluated. ``validate_call`` checks a call's op and
arguments and returns the keyword arguments to pass; a problem raises ``BadRequest``
naming the argument, which the server sends back as the call's reply.

Results are JSON except ``get_attachment``'s bytes, which travel as base64:
``encode_result`` / ``decode_result`` convert on each side. Pure.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Callable, Mapping

from ..errors import BadRequest, ProtocolError

__all__ = [
    "OPS",
    "WRITE_OPS",
    "validate_call",
    "validate_changes_args",
    "written_ids",
    "encode_result",
    "decode_result",
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
    "revs_diff": {"revs": (_revs_map, True)},
    "bulk_get": {"docs": (_obj_list, True), "revs": (_bool, False),
                 "latest": (_bool, False), "attachments": (_bool, False)},
    "get_attachment": {"doc_id": (_str, True), "name": (_str, True), "rev": (_str, False)},
}

#: ops that write documents (refused on read-only grants except ``_local/`` docs)
WRITE_OPS = frozenset({"put", "post", "delete", "bulk_docs"})


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
    if op == "bulk_docs":
        out: list[str | None] = []
        for doc in kwargs["docs"]:
            doc_id = doc.get("_id")
            out.append(doc_id if isinstance(doc_id, str) else None)
        return out
    return []


def encode_result(op: str, result: Any) -> Any:
    """A method's result as JSON (attachment bytes become ``{"data": base64}``)."""
    if op == "get_attachment":
        return {"data": base64.b64encode(bytes(result)).decode("ascii")}
    return result


def decode_result(op: str, ok: Any) -> Any:
    """The method's result from a reply's ``ok`` (the client side of ``encode_result``)."""
    if op == "get_attachment":
        try:
            return base64.b64decode(ok["data"], validate=True)
        except (KeyError, TypeError, binascii.Error) as exc:
            raise ProtocolError(f"get_attachment reply without valid base64 data: {exc}") from exc
    return ok
