"""Mango selectors, steps 1 and 2: parse and validate, then push negations down (pure).

``normalize(selector)`` gives the tree of ``Node`` tuples that ``selector.compile``
turns into a matcher (the theory of operation is in ``pouchsync_sync.selector``):

1. *parse*: validate every operator and make the implicit explicit: several keys in
   one object are an ``$and``; a bare value is ``$eq``; nested field objects and
   dotted names become one path pushed down to the terminal condition (CouchDB's
   ``norm_ops`` + ``norm_fields`` in ``mango_selector.erl``).
2. *negations*: ``$not`` and ``$nor`` are pushed down to the terminals as CouchDB's
   ``norm_negations`` does.

Every refusal is a :class:`BadRequest` naming the operator and what it expected.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..collation import (
    RANK_ARRAY,
    RANK_FALSE,
    RANK_NULL,
    RANK_NUMBER,
    RANK_OBJECT,
    RANK_STRING,
    RANK_TRUE,
)
from ..errors import BadRequest

try:  # the regex package: a search can time out and runs without the GIL
    import regex as _regex
except ImportError:  # pragma: no cover - a dependency; without it $regex is refused
    _regex = None  # type: ignore[assignment]

__all__ = ["MAX_REGEX_LENGTH", "Node", "SUB_SELECTORS", "TYPE_RANKS", "is_int", "normalize", "show"]

#: longest ``$regex`` pattern accepted, characters
MAX_REGEX_LENGTH = 1000

# Nodes are tuples: ("and"|"or"|"nor", [nodes]), ("not", node),
# ("field", path, node) and ("op", "$name", argument) applied to the current value.
Node = tuple

_ALWAYS: Node = ("and", [])
_COMBINATORS = frozenset({"$and", "$or", "$nor"})
#: operators whose argument is a selector of their own (on an element or key)
SUB_SELECTORS = frozenset({"$elemMatch", "$allMatch", "$keyMapMatch"})
_ANY_ARGUMENT = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"})
_UNSUPPORTED = frozenset({"$text", "$default", "$where", "$geoWithin", "$geoIntersects",
                          "$near", "$nearSphere"})
#: the collation ranks of each ``$type`` name
TYPE_RANKS: dict[str, frozenset[int]] = {
    "null": frozenset({RANK_NULL}), "boolean": frozenset({RANK_FALSE, RANK_TRUE}),
    "number": frozenset({RANK_NUMBER}), "string": frozenset({RANK_STRING}),
    "array": frozenset({RANK_ARRAY}), "object": frozenset({RANK_OBJECT}),
}
_UNESCAPED_DOT = re.compile(r"(?<!\\)\.")


def show(value: Any) -> str:
    """A value as an error message quotes it: at most 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _invalid(op: str, detail: str) -> BadRequest:
    return BadRequest(f"invalid value for {op}: {detail}")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _split_field(name: str) -> tuple[str, ...]:
    """``"a.b\\.c"`` -> ``("a", "b.c")`` (CouchDB's ``mango_util:parse_field``)."""
    if "\\" in name:
        parts = [part.replace("\\", "") for part in _UNESCAPED_DOT.split(name)]
    else:
        parts = name.split(".")
    if "" in parts:
        raise BadRequest(f"invalid field name {name!r}: empty path segment")
    return tuple(parts)


def _terminal(path: tuple[str, ...], op: str, arg: Any, in_doc: bool, *,
              bare: bool = False) -> Node:
    if not path:
        if in_doc:
            what = "a bare value" if bare else f"operator '{op}'"
            raise BadRequest(f"invalid selector: {what} needs a field name")
        return ("op", op, arg)
    return ("field", path, ("op", op, arg))


def _parse(sel: Any, path: tuple[str, ...], in_doc: bool) -> Node:
    """Validate ``sel`` found at ``path``; ``in_doc`` is false inside sub-selectors
    of ``$elemMatch``-like operators, where an empty path means the element itself."""
    if not isinstance(sel, Mapping):
        return _terminal(path, "$eq", sel, in_doc, bare=True)
    if not sel:
        return _ALWAYS if not path else _terminal(path, "$eq", dict(sel), in_doc, bare=True)
    if len(sel) > 1:
        return ("and", [_parse_item(key, value, path, in_doc) for key, value in sel.items()])
    ((key, value),) = sel.items()
    return _parse_item(key, value, path, in_doc)


def _parse_item(key: Any, value: Any, path: tuple[str, ...], in_doc: bool) -> Node:
    if not isinstance(key, str):
        raise BadRequest(f"invalid field name {key!r}: must be a string")
    if key.startswith("$"):
        return _parse_operator(key, value, path, in_doc)
    if not key:
        raise BadRequest("invalid field name '': must not be empty")
    return _parse(value, path + _split_field(key), in_doc)


def _parse_operator(op: str, arg: Any, path: tuple[str, ...], in_doc: bool) -> Node:
    if op in _COMBINATORS:
        if not isinstance(arg, (list, tuple)):
            raise _invalid(op, f"expected a list of selectors, got {show(arg)}")
        if not path and in_doc and not all(isinstance(a, Mapping) for a in arg):
            raise _invalid(op, f"every element must be a selector object, got {show(arg)}")
        return (op[1:], [_parse(a, path, in_doc) for a in arg])
    if op == "$not":
        if not isinstance(arg, Mapping):
            raise _invalid(op, f"expected a selector object, got {show(arg)}")
        return ("not", _parse(arg, path, in_doc))
    if op in SUB_SELECTORS:
        if not isinstance(arg, Mapping):
            raise _invalid(op, f"expected a selector object, got {show(arg)}")
        return _terminal(path, op, _parse(arg, (), False), in_doc)
    if op in _ANY_ARGUMENT:
        return _terminal(path, op, arg, in_doc)
    return _terminal(path, op, _check_argument(op, arg), in_doc)


def _check_argument(op: str, arg: Any) -> Any:
    """Validate the argument of a non-combining operator; returns what to keep."""
    if op in ("$in", "$nin", "$all"):
        if not isinstance(arg, (list, tuple)):
            raise _invalid(op, f"expected a list, got {show(arg)}")
        return list(arg)
    if op == "$exists":
        if not isinstance(arg, bool):
            raise _invalid(op, f"expected true or false, got {show(arg)}")
        return arg
    if op == "$type":
        if not isinstance(arg, str):
            raise _invalid(op, f"expected a type name, got {show(arg)}")
        if arg not in TYPE_RANKS:
            raise _invalid(op, f"unknown type {arg!r} (expected one of {', '.join(TYPE_RANKS)})")
        return arg
    if op == "$size":
        if not is_int(arg) or arg < 0:
            raise _invalid(op, f"expected a non-negative integer, got {show(arg)}")
        return arg
    if op == "$mod":
        if (not isinstance(arg, (list, tuple)) or len(arg) != 2
                or not is_int(arg[0]) or not is_int(arg[1])):
            raise _invalid(op, f"expected [divisor, remainder] integers, got {show(arg)}")
        if arg[0] == 0:
            raise _invalid(op, "the divisor must not be zero")
        return (arg[0], arg[1])
    if op == "$regex":
        if not isinstance(arg, str):
            raise _invalid(op, f"expected a string, got {show(arg)}")
        if len(arg) > MAX_REGEX_LENGTH:
            raise _invalid(op, f"a pattern is at most {MAX_REGEX_LENGTH} characters, "
                               f"this one has {len(arg)}")
        if _regex is None:  # pragma: no cover
            raise BadRequest("operator '$regex' needs the 'regex' package on this side")
        try:
            return _regex.compile(arg)
        except (_regex.error, re.error, ValueError, OverflowError, RecursionError,
                MemoryError) as exc:
            raise _invalid(op, f"bad regular expression {show(arg)}: {exc}") from exc
    if op == "$beginsWith":
        if not isinstance(arg, str):
            raise _invalid(op, f"expected a string, got {show(arg)}")
        return arg
    if op in _UNSUPPORTED:
        raise BadRequest(f"operator '{op}' is not supported")
    raise BadRequest(f"unknown operator '{op}'")


# -- negations ---------------------------------------------------------------------
_NEGATED_OPS = {"$lt": "$gte", "$gte": "$lt", "$lte": "$gt", "$gt": "$lte",
                "$eq": "$ne", "$ne": "$eq", "$in": "$nin", "$nin": "$in"}


def _norm_negations(node: Node) -> Node:
    """Push ``$not``/``$nor`` down to the terminals (CouchDB's ``norm_negations``)."""
    kind = node[0]
    if kind == "not":
        return _negate(node[1])
    if kind == "nor":
        return ("and", [_negate(child) for child in node[1]])
    if kind in ("and", "or"):
        return (kind, [_norm_negations(child) for child in node[1]])
    if kind == "field":
        return ("field", node[1], _norm_negations(node[2]))
    if node[1] in SUB_SELECTORS:
        return ("op", node[1], _norm_negations(node[2]))
    return node


def _negate(node: Node) -> Node:
    kind = node[0]
    if kind == "not":
        return _norm_negations(node[1])
    if kind == "nor":
        return ("or", [_norm_negations(child) for child in node[1]])
    if kind == "and":
        return ("or", [_negate(child) for child in node[1]])
    if kind == "or":
        return ("and", [_negate(child) for child in node[1]])
    if kind == "field":
        return ("field", node[1], _negate(node[2]))
    op, arg = node[1], node[2]
    if op in _NEGATED_OPS:
        return ("op", _NEGATED_OPS[op], arg)
    if op == "$exists":
        return ("op", "$exists", not arg)
    return ("not", node)  # as CouchDB: the sub-selector of a negated $elemMatch stays as is


# -- the two steps -----------------------------------------------------------------
def normalize(selector: Any) -> Node:
    """``selector`` validated and normalized (steps 1 and 2); ``BadRequest`` if invalid."""
    if not isinstance(selector, Mapping):
        raise BadRequest(f"invalid selector: expected a JSON object, got {show(selector)}")
    try:
        return _norm_negations(_parse(selector, (), True))
    except RecursionError as exc:
        raise BadRequest("invalid selector: nested too deeply") from exc
