"""The operations a channel may call, and the rules for their arguments.

This allow-list is the whole remote surface of a granted database: a ``call`` names
one of these ops and gives the keyword arguments of the same ``Database`` method
(pouchsync_sync/store/base.py). Nothing else is dispatched, no name is looked up on
the database object, nothing is evaluated. ``validate_call`` checks a call's op and
arguments and returns the keyword arguments to pass; a problem raises ``BadRequest``
naming the argument, which the server sends back as the call's reply.

The argument checkers are ``protocol.fields``'. Results and the checks of a reply's
shape are ``protocol.replies``' (``encode_result``, ``decode_result``,
``reply_problem``, re-exported here). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import BadRequest
from .fields import (
    DESCRIBE,
    Check,
    is_any,
    is_bool,
    is_feed,
    is_nonneg_int,
    is_number,
    is_obj,
    is_obj_list,
    is_open_revs,
    is_revs_map,
    is_str,
    is_str_list,
    is_style,
    is_text_rows,
)
from .replies import decode_result, encode_result, reply_problem

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


#: op -> {argument: (check, required)}
OPS: dict[str, dict[str, tuple[Check, bool]]] = {
    "info": {},
    "get": {"doc_id": (is_str, True), "rev": (is_str, False), "revs": (is_bool, False),
            "revs_info": (is_bool, False), "conflicts": (is_bool, False),
            "open_revs": (is_open_revs, False), "latest": (is_bool, False),
            "attachments": (is_bool, False)},
    "put": {"doc": (is_obj, True)},
    "post": {"doc": (is_obj, True)},
    "delete": {"doc_id": (is_str, True), "rev": (is_str, True)},
    "bulk_docs": {"docs": (is_obj_list, True), "new_edits": (is_bool, False)},
    "write_missing": {"docs": (is_obj_list, True)},
    "write_missing_texts": {"rows": (is_text_rows, True)},
    "all_docs": {"include_docs": (is_bool, False), "keys": (is_str_list, False),
                 "startkey": (is_str, False), "endkey": (is_str, False),
                 "limit": (is_nonneg_int, False), "skip": (is_nonneg_int, False),
                 "descending": (is_bool, False), "conflicts": (is_bool, False)},
    "changes": {"since": (is_any, False), "limit": (is_nonneg_int, False),
                "include_docs": (is_bool, False), "conflicts": (is_bool, False),
                "style": (is_style, False), "doc_ids": (is_str_list, False),
                "selector": (is_obj, False), "descending": (is_bool, False),
                "feed": (is_feed, False), "timeout": (is_number, False),
                "attachments": (is_bool, False)},
    "changes_texts": {"since": (is_any, False), "limit": (is_nonneg_int, False),
                      "max_bytes": (is_nonneg_int, False)},
    "revs_diff": {"revs": (is_revs_map, True)},
    "bulk_get": {"docs": (is_obj_list, True), "revs": (is_bool, False),
                 "latest": (is_bool, False), "attachments": (is_bool, False)},
    "get_attachment": {"doc_id": (is_str, True), "name": (is_str, True), "rev": (is_str, False)},
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
            raise BadRequest(f"argument {name!r} of {op} must be {DESCRIBE[check]}")
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
