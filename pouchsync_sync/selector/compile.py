"""Mango selectors, step 3: a normalized selector compiled to closures (pure).

``compile_node(node, raw)`` turns each ``Node`` of ``selector.parse.normalize`` into a
closure ``matcher(value) -> bool`` and composes them; the matcher of the whole selector
runs on the document. ``raw`` compares by CouchDB's raw (Erlang term) order instead of
view collation, as CouchDB does for conditions on ``_id``. Common cases get closures of
their own (one key, ``$eq`` on a number or an ASCII string, ``$in`` by hashed look-ups),
so matching a page of the changes feed costs little per document.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any, Callable

from ..collation import collate, equal, raw_collate, raw_equal, string_key, type_rank
from ..errors import BadRequest
from .parse import TYPE_RANKS, Node, is_int, show

__all__ = ["Matcher", "REGEX_TIMEOUT", "compile_node"]

#: seconds one ``$regex`` search may take before the selector is refused (400)
REGEX_TIMEOUT = 0.1

Matcher = Callable[[Any], bool]

_INDEX_RE = re.compile(r"[+-]?[0-9]+")

_MISSING = object()
_BAD_PATH = object()
_NUMBER_TYPES = (int, float)


def _always(value: Any) -> bool:
    return True


def _never(value: Any) -> bool:
    return False


def compile_node(node: Node, raw: bool) -> Matcher:
    """The matcher of a normalized ``node``; ``raw``: compare in ``_id``'s raw order."""
    kind = node[0]
    if kind == "field":
        return _compile_field(node[1], node[2], raw)
    if kind == "op":
        return _compile_op(node[1], node[2], raw)
    if kind == "not":
        inner = compile_node(node[1], raw)
        return lambda value: not inner(value)
    tests = [compile_node(child, raw) for child in node[1]]
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
    test = compile_node(cond, raw or path == ("_id",))
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
        return lambda value: raw_equal(value, arg)
    if arg is None or isinstance(arg, bool):
        return lambda value: value is arg
    if type(arg) in _NUMBER_TYPES and arg == arg:
        return lambda value: value == arg if type(value) in _NUMBER_TYPES else equal(value, arg)
    if type(arg) is str:
        if arg.isascii():
            return lambda value: value == arg or (type(value) is str and not value.isascii()
                                                  and equal(value, arg))
        return lambda value: value == arg or (type(value) is str and equal(value, arg))
    return lambda value: equal(value, arg)


_ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": lambda a, b: a > b, "$gte": lambda a, b: a >= b,
    "$lt": lambda a, b: a < b, "$lte": lambda a, b: a <= b,
}


def _compile_ordering(op: str, arg: Any, raw: bool) -> Matcher:
    holds = _ORDERINGS[op]
    cmp = raw_collate if raw else collate
    if not raw and type(arg) in _NUMBER_TYPES and arg == arg:
        return lambda value: (holds(value, arg) if type(value) in _NUMBER_TYPES and value == value
                              else holds(cmp(value, arg), 0))
    if not raw and type(arg) is str:
        key = string_key(arg)
        return lambda value: (holds(string_key(value), key) if type(value) is str
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
        is_equal = _compile_eq(arg, raw)
        return lambda value: not is_equal(value)
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
        ranks = TYPE_RANKS[arg]
        return lambda value: type_rank(value) in ranks
    if op == "$size":
        return lambda value: isinstance(value, (list, tuple)) and len(value) == arg
    if op == "$mod":
        divisor, remainder = abs(arg[0]), arg[1]

        def match_mod(value: Any) -> bool:  # Erlang rem: the sign follows the dividend
            if not is_int(value):
                return False
            return (value % divisor if value >= 0 else -(-value % divisor)) == remainder
        return match_mod
    if op == "$regex":
        return _compile_regex(arg)
    if op == "$beginsWith":
        return lambda value: isinstance(value, str) and value.startswith(arg)
    if op == "$all":
        return _compile_all(arg, raw)
    sub = compile_node(arg, raw)
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
                f"invalid value for $regex: the pattern {show(pattern.pattern)} took over "
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
