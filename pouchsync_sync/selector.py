"""Mango selectors: validate once, compile to closures, match documents (pure, no I/O).

Theory of operation
-------------------
This follows CouchDB's ``mango_selector.erl`` (selector syntax:
https://docs.couchdb.org/en/stable/api/database/find.html#selector-syntax) in three
steps done once by :func:`compile_selector`:

1. *parse*: validate every operator and make the implicit explicit: several keys in
   one object are an ``$and``; a bare value is ``$eq``; nested field objects and
   dotted names (``{"a": {"b": {"$gt": 1}}}`` == ``{"a.b": {"$gt": 1}}``) become
   one path pushed down through ``$and``/``$or``/``$not``/``$nor`` to the terminal
   condition (CouchDB's ``norm_ops`` + ``norm_fields``).
2. *negations*: ``$not`` and ``$nor`` are pushed down to the terminals as CouchDB's
   ``norm_negations`` does (De Morgan; ``$eq``<->``$ne``, ``$lt``<->``$gte``,
   ``$in``<->``$nin``, ``$exists`` flipped; other operators keep a ``$not``).
3. *compile*: every node becomes a closure; the matcher is their composition.

Missing fields (CouchDB semantics, chosen on purpose): a condition on a field that
is absent never matches, *except* ``{"$exists": false}``.  So ``{"a": {"$ne": 1}}``
and ``{"a": {"$nin": [1]}}`` do not match ``{}``.  Because of step 2 the same holds
through negation: ``{"$not": {"a": 1}}`` and ``{"$nor": [{"a": 1}]}`` become
``{"a": {"$ne": 1}}`` and so do not match a document without ``a``, while
``{"a": {"$not": {"$exists": true}}}`` does.  ``$not`` is therefore the logical
negation only for documents where the fields it names exist.
A path through a non-container (``a.b`` when ``a`` is 5) matches nothing, not even
``$exists: false``.  Numeric path segments index arrays (``"tags.0"``).
``\\.`` in a field name is a literal dot.

Values compare by CouchDB view collation (:func:`collate`), also across types, so
``{"a": {"$gt": 1}}`` matches any string.  Booleans are not numbers.
Deliberate differences from CouchDB: ``$eq``/``$ne``/``$in``/``$nin``/``$all``
compare objects ignoring member order (JSON objects are unordered and our stores
may reorder members; ordering operators keep CouchDB's member-order collation);
``$type`` with an unknown type name, ``$mod`` with a zero divisor and a condition
that needs a field but has none are rejected instead of never matching / crashing;
an empty object with no field path matches everything; ``$regex`` is the ``regex``
package's ``search`` (Python ``re`` syntax), not PCRE; ``$text`` is not supported.

``$regex`` is a client's code running on the server, so it is bounded: a pattern is at
most ``MAX_REGEX_LENGTH`` characters, and each search runs with a time budget
(``REGEX_TIMEOUT`` seconds) and without the GIL, so a pattern with
catastrophic backtracking is a :class:`BadRequest` (400) after that budget instead of
freezing every other thread (docs/reliability.md, "hostile clients").  Conditions on ``_id`` compare
strings by code point (CouchDB's raw order), not by collation.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from typing import Any, Callable, Mapping

from .collation import (
    _ARRAY,
    _FALSE,
    _NONE,
    _NUMBER,
    _OBJECT,
    _STRING,
    _TRUE,
    _equal,
    _rank,
    _raw_collate,
    _raw_equal,
    _string_key,
    collate,
)
from .errors import BadRequest

try:  # the regex package: a search can time out and runs without the GIL
    import regex as _regex
except ImportError:  # pragma: no cover - a dependency; without it $regex is refused
    _regex = None

__all__ = ["compile_selector", "matches", "validate_selector", "collate", "Matcher",
           "REGEX_TIMEOUT", "MAX_REGEX_LENGTH"]

#: seconds one ``$regex`` search may take before the selector is refused (400)
REGEX_TIMEOUT = 0.1
#: longest ``$regex`` pattern accepted, characters
MAX_REGEX_LENGTH = 1000

log = logging.getLogger(__name__)

Matcher = Callable[[Any], bool]

# --------------------------------------------------------------------------- parsing

# Nodes are tuples: ("and"|"or"|"nor", [nodes]), ("not", node),
# ("field", path, node) and ("op", "$name", argument) applied to the current value.
Node = tuple

_ALWAYS: Node = ("and", [])
_COMBINATORS = frozenset({"$and", "$or", "$nor"})
_SUB_SELECTORS = frozenset({"$elemMatch", "$allMatch", "$keyMapMatch"})
_ANY_ARGUMENT = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"})
_UNSUPPORTED = frozenset({"$text", "$default", "$where", "$geoWithin", "$geoIntersects",
                          "$near", "$nearSphere"})
_TYPE_RANKS: dict[str, frozenset[int]] = {
    "null": frozenset({_NONE}), "boolean": frozenset({_FALSE, _TRUE}),
    "number": frozenset({_NUMBER}), "string": frozenset({_STRING}),
    "array": frozenset({_ARRAY}), "object": frozenset({_OBJECT}),
}
_INDEX_RE = re.compile(r"[+-]?[0-9]+")
_UNESCAPED_DOT = re.compile(r"(?<!\\)\.")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _invalid(op: str, detail: str) -> BadRequest:
    return BadRequest(f"invalid value for {op}: {detail}")


def _is_int(value: Any) -> bool:
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


def _terminal(path: tuple[str, ...], op: str, arg: Any, in_doc: bool, *, bare: bool = False) -> Node:
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
            raise _invalid(op, f"expected a list of selectors, got {_show(arg)}")
        if not path and in_doc and not all(isinstance(a, Mapping) for a in arg):
            raise _invalid(op, f"every element must be a selector object, got {_show(arg)}")
        return (op[1:], [_parse(a, path, in_doc) for a in arg])
    if op == "$not":
        if not isinstance(arg, Mapping):
            raise _invalid(op, f"expected a selector object, got {_show(arg)}")
        return ("not", _parse(arg, path, in_doc))
    if op in _SUB_SELECTORS:
        if not isinstance(arg, Mapping):
            raise _invalid(op, f"expected a selector object, got {_show(arg)}")
        return _terminal(path, op, _parse(arg, (), False), in_doc)
    if op in _ANY_ARGUMENT:
        return _terminal(path, op, arg, in_doc)
    return _terminal(path, op, _check_argument(op, arg), in_doc)


def _check_argument(op: str, arg: Any) -> Any:
    """Validate the argument of a non-combining operator; returns what to keep."""
    if op in ("$in", "$nin", "$all"):
        if not isinstance(arg, (list, tuple)):
            raise _invalid(op, f"expected a list, got {_show(arg)}")
        return list(arg)
    if op == "$exists":
        if not isinstance(arg, bool):
            raise _invalid(op, f"expected true or false, got {_show(arg)}")
        return arg
    if op == "$type":
        if not isinstance(arg, str):
            raise _invalid(op, f"expected a type name, got {_show(arg)}")
        if arg not in _TYPE_RANKS:
            raise _invalid(op, f"unknown type {arg!r} (expected one of {', '.join(_TYPE_RANKS)})")
        return arg
    if op == "$size":
        if not _is_int(arg) or arg < 0:
            raise _invalid(op, f"expected a non-negative integer, got {_show(arg)}")
        return arg
    if op == "$mod":
        if (not isinstance(arg, (list, tuple)) or len(arg) != 2
                or not _is_int(arg[0]) or not _is_int(arg[1])):
            raise _invalid(op, f"expected [divisor, remainder] integers, got {_show(arg)}")
        if arg[0] == 0:
            raise _invalid(op, "the divisor must not be zero")
        return (arg[0], arg[1])
    if op == "$regex":
        if not isinstance(arg, str):
            raise _invalid(op, f"expected a string, got {_show(arg)}")
        if len(arg) > MAX_REGEX_LENGTH:
            raise _invalid(op, f"a pattern is at most {MAX_REGEX_LENGTH} characters, "
                               f"this one has {len(arg)}")
        if _regex is None:  # pragma: no cover
            raise BadRequest("operator '$regex' needs the 'regex' package on this side")
        try:
            return _regex.compile(arg)
        except (_regex.error, re.error, ValueError, OverflowError, RecursionError,
                MemoryError) as exc:
            raise _invalid(op, f"bad regular expression {_show(arg)}: {exc}") from exc
    if op == "$beginsWith":
        if not isinstance(arg, str):
            raise _invalid(op, f"expected a string, got {_show(arg)}")
        return arg
    if op in _UNSUPPORTED:
        raise BadRequest(f"operator '{op}' is not supported")
    raise BadRequest(f"unknown operator '{op}'")


# --------------------------------------------------------------------------- negations

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
    if node[1] in _SUB_SELECTORS:
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


# --------------------------------------------------------------------------- compiling

_MISSING = object()
_BAD_PATH = object()
_NUMBER_TYPES = (int, float)


def _always(value: Any) -> bool:
    return True


def _never(value: Any) -> bool:
    return False


def _compile(node: Node, raw: bool) -> Matcher:
    kind = node[0]
    if kind == "field":
        return _compile_field(node[1], node[2], raw)
    if kind == "op":
        return _compile_op(node[1], node[2], raw)
    if kind == "not":
        inner = _compile(node[1], raw)
        return lambda value: not inner(value)
    tests = [_compile(child, raw) for child in node[1]]
    if kind == "nor":
        return lambda value: not any(test(value) for test in tests)
    if not tests:
        return _always  # CouchDB: an empty $and and an empty $or both match
    if len(tests) == 1:
        return tests[0]
    if kind == "and":
        if len(tests) == 2:
            first, second = tests
            return lambda value: first(value) and second(value)

        def match_all(value: Any) -> bool:
            for test in tests:
                if not test(value):
                    return False
            return True
        return match_all

    def match_any(value: Any) -> bool:
        for test in tests:
            if test(value):
                return True
        return False
    return match_any


def _lookup(value: Any, steps: tuple[tuple[str, int | None], ...]) -> Any:
    for key, index in steps:
        if isinstance(value, Mapping):
            value = value.get(key, _MISSING)
            if value is _MISSING:
                return _MISSING
        elif isinstance(value, (list, tuple)):
            if index is None or index >= len(value):
                return _BAD_PATH
            value = value[index]
        else:
            return _BAD_PATH
    return value


def _compile_field(path: tuple[str, ...], cond: Node, raw: bool) -> Matcher:
    test = _compile(cond, raw or path == ("_id",))
    if_missing = cond == ("op", "$exists", False)
    steps = tuple((key, int(key) if _INDEX_RE.fullmatch(key) and int(key) >= 0 else None)
                  for key in path)
    if len(steps) == 1:
        key = path[0]

        def match_key(value: Any) -> bool:
            if type(value) is dict:
                sub = value.get(key, _MISSING)
                if sub is _MISSING:
                    return if_missing
                return test(sub)
            sub = _lookup(value, steps)
            if sub is _MISSING:
                return if_missing
            return sub is not _BAD_PATH and test(sub)
        return match_key

    def match_path(value: Any) -> bool:
        sub = _lookup(value, steps)
        if sub is _MISSING:
            return if_missing
        return sub is not _BAD_PATH and test(sub)
    return match_path


def _compile_eq(arg: Any, raw: bool) -> Matcher:
    if raw:
        return lambda value: _raw_equal(value, arg)
    if arg is None or isinstance(arg, bool):
        return lambda value: value is arg
    if type(arg) in _NUMBER_TYPES and arg == arg:
        return lambda value: value == arg if type(value) in _NUMBER_TYPES else _equal(value, arg)
    if type(arg) is str:
        if arg.isascii():
            return lambda value: value == arg or (type(value) is str and not value.isascii()
                                                  and _equal(value, arg))
        return lambda value: value == arg or (type(value) is str and _equal(value, arg))
    return lambda value: _equal(value, arg)


_ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": lambda a, b: a > b, "$gte": lambda a, b: a >= b,
    "$lt": lambda a, b: a < b, "$lte": lambda a, b: a <= b,
}


def _compile_ordering(op: str, arg: Any, raw: bool) -> Matcher:
    holds = _ORDERINGS[op]
    cmp = _raw_collate if raw else collate
    if not raw and type(arg) in _NUMBER_TYPES and arg == arg:
        return lambda value: (holds(value, arg) if type(value) in _NUMBER_TYPES and value == value
                              else holds(cmp(value, arg), 0))
    if not raw and type(arg) is str:
        key = _string_key(arg)
        return lambda value: (holds(_string_key(value), key) if type(value) is str
                              else holds(cmp(value, arg), 0))
    return lambda value: holds(cmp(value, arg), 0)


def _compile_member(args: list[Any], raw: bool) -> Matcher:
    """``value`` equals one of ``args``: hashed look-ups for strings, numbers, null and
    booleans (so a long ``$in`` of ids stays cheap), a test per argument otherwise."""
    strings: set[str] = set()
    numbers: set[Any] = set()
    singletons: set[Any] = set()
    others: list[Matcher] = []
    for arg in args:
        kind = type(arg)
        if kind is str:
            strings.add(arg if raw else unicodedata.normalize("NFD", arg))
        elif kind in _NUMBER_TYPES and arg == arg:
            numbers.add(arg)
        elif arg is None or kind is bool:
            singletons.add(arg)
        else:
            others.append(_compile_eq(arg, raw))

    def member(value: Any) -> bool:
        kind = type(value)
        if kind is str:
            key = value if raw or value.isascii() else unicodedata.normalize("NFD", value)
            if key in strings:
                return True
        elif kind is int or kind is float:
            if value in numbers:
                return True
        elif value is None or kind is bool:
            if value in singletons:
                return True
        for test in others:
            if test(value):
                return True
        return False
    return member


def _compile_in(args: list[Any], raw: bool) -> Matcher:
    if not args:
        return _never
    member = _compile_member(args, raw)

    def match_in(value: Any) -> bool:  # an array matches when one of its items does
        if isinstance(value, (list, tuple)):
            return any(member(item) for item in value)
        return member(value)
    return match_in


def _compile_op(op: str, arg: Any, raw: bool) -> Matcher:
    if op == "$eq":
        return _compile_eq(arg, raw)
    if op == "$ne":
        equal = _compile_eq(arg, raw)
        return lambda value: not equal(value)
    if op in _ORDERINGS:
        return _compile_ordering(op, arg, raw)
    if op == "$in":
        return _compile_in(arg, raw)
    if op == "$nin":
        within = _compile_in(arg, raw)
        return lambda value: not within(value)
    if op == "$exists":
        return _always if arg else _never
    if op == "$type":
        ranks = _TYPE_RANKS[arg]
        return lambda value: _rank(value) in ranks
    if op == "$size":
        return lambda value: isinstance(value, (list, tuple)) and len(value) == arg
    if op == "$mod":
        divisor, remainder = abs(arg[0]), arg[1]

        def match_mod(value: Any) -> bool:  # Erlang rem: the sign follows the dividend
            if not _is_int(value):
                return False
            return (value % divisor if value >= 0 else -(-value % divisor)) == remainder
        return match_mod
    if op == "$regex":
        return _compile_regex(arg)
    if op == "$beginsWith":
        return lambda value: isinstance(value, str) and value.startswith(arg)
    if op == "$all":
        return _compile_all(arg, raw)
    sub = _compile(arg, raw)
    if op == "$elemMatch":
        return lambda value: isinstance(value, (list, tuple)) and any(sub(v) for v in value)
    if op == "$allMatch":
        return lambda value: (isinstance(value, (list, tuple)) and len(value) > 0
                              and all(sub(v) for v in value))
    if op == "$keyMapMatch":
        return lambda value: isinstance(value, Mapping) and any(sub(k) for k in value)
    raise AssertionError(f"operator {op} passed validation but has no matcher")  # pragma: no cover


def _compile_regex(pattern: Any) -> Matcher:
    """A search bounded by ``REGEX_TIMEOUT`` and run without the GIL (``concurrent``):
    a pathological pattern costs one thread at most that long per value, then a 400."""
    search = pattern.search
    budget = REGEX_TIMEOUT

    def match_regex(value: Any) -> bool:
        if not isinstance(value, str):
            return False
        try:
            return search(value, timeout=budget, concurrent=True) is not None
        except TimeoutError as exc:
            raise BadRequest(
                f"invalid value for $regex: the pattern {_show(pattern.pattern)} took over "
                f"{budget} s on one value of {len(value)} characters (catastrophic "
                f"backtracking?); simplify it") from exc
    return match_regex


def _compile_all(args: list[Any], raw: bool) -> Matcher:
    if not args:
        return _never  # CouchDB: an empty $all matches nothing
    tests = [_compile_eq(arg, raw) for arg in args]
    whole = _compile_eq(args[0], raw) if len(args) == 1 and isinstance(args[0], list) else None

    def match_all(value: Any) -> bool:
        if not isinstance(value, (list, tuple)):
            return False
        if all(any(test(item) for item in value) for test in tests):
            return True
        return whole is not None and whole(value)
    return match_all


# --------------------------------------------------------------------------- public API

def _normalize(selector: Any) -> Node:
    if not isinstance(selector, Mapping):
        raise BadRequest(f"invalid selector: expected a JSON object, got {_show(selector)}")
    try:
        return _norm_negations(_parse(selector, (), True))
    except RecursionError as exc:
        raise BadRequest("invalid selector: nested too deeply") from exc


def validate_selector(selector: Any) -> None:
    """Raise :class:`BadRequest` naming the bad operator if ``selector`` is invalid."""
    _normalize(selector)


def compile_selector(selector: Mapping[str, Any]) -> Matcher:
    """Validate ``selector`` once and return a fast ``matcher(doc) -> bool``.

    The matcher is pure and thread-safe; it never raises on any document (a document
    nested too deeply to compare does not match).
    """
    test = _compile(_normalize(selector), False)

    def matcher(doc: Any) -> bool:
        try:
            return test(doc)
        except RecursionError:
            log.debug("selector: document nested too deeply to match; treated as no match")
            return False
    return matcher


def matches(selector: Mapping[str, Any], doc: Any) -> bool:
    """Whether ``doc`` matches ``selector`` (compiles each call; prefer
    :func:`compile_selector` when matching many documents)."""
    return compile_selector(selector)(doc)
