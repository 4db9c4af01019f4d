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
an empty object with no field path matches everything; ``$regex`` is Python ``re``
(``search``), not PCRE; ``$text`` is not supported.  Conditions on ``_id`` compare
strings by code point (CouchDB's raw order), not by collation.
"""

from __future__ import annotations

import functools
import logging
import re
import unicodedata
from typing import Any, Callable, Mapping

from .errors import BadRequest

__all__ = ["compile_selector", "matches", "validate_selector", "collate", "Matcher"]

log = logging.getLogger(__name__)

Matcher = Callable[[Any], bool]

# --------------------------------------------------------------------------- collation

_NONE, _FALSE, _TRUE, _NUMBER, _STRING, _ARRAY, _OBJECT, _OTHER = range(8)
_RANK_BY_TYPE: dict[type, int] = {
    type(None): _NONE, int: _NUMBER, float: _NUMBER, str: _STRING,
    list: _ARRAY, tuple: _ARRAY, dict: _OBJECT,
}


def _rank(value: Any) -> int:
    rank = _RANK_BY_TYPE.get(type(value))
    if rank is not None:
        return rank
    if value is True:
        return _TRUE
    if value is False:
        return _FALSE
    if isinstance(value, bool):  # pragma: no cover - bool cannot be subclassed
        return _TRUE if value else _FALSE
    if isinstance(value, (int, float)):
        return _NUMBER
    if isinstance(value, str):
        return _STRING
    if isinstance(value, (list, tuple)):
        return _ARRAY
    if isinstance(value, Mapping):
        return _OBJECT
    return _OTHER


# Root-locale ICU order of the printable ASCII non-alphanumerics (checked against
# ICU 78 via Node's Intl.Collator("und")), split in ICU's groups: whitespace and
# punctuation, then symbols, then currency; control whitespace sorts before space.
_ASCII_PUNCTUATION = "\t\n\x0b\x0c\r _-,;:!?.'\"()[]{}@*/\\&#%"
_ASCII_SYMBOLS = "`^+<=>|~"
# Element groups: the first character of each 2-character primary element.
(_G_PUNCT, _G_OTHER_PUNCT, _G_SYMBOL, _G_OTHER_SYMBOL, _G_CURRENCY, _G_DIGIT,
 _G_LETTER) = "\x01\x02\x03\x04\x05\x06\x07"
# Tertiary weights: plain/lowercase < other-script form < uppercase < compatibility form.
_T_PLAIN, _T_VARIANT, _T_UPPER, _T_COMPAT = "\x01", "\x02", "\x03", "\x04"
# Secondary weights of the common accents in DUCET order; other marks by code point.
_MARK_ORDER = {mark: chr(0x10 + i) for i, mark in enumerate(
    "\u0301\u0300\u0306\u0302\u030c\u030a\u0308\u030b\u0303\u0307\u0327\u0328\u0304")}
# Latin letters without a canonical decomposition that UCA sorts as another letter.
_LETTER_ALIASES = {"ø": ("o", "\u0338"), "đ": ("d", "\u0335"), "ł": ("l", "\u0337"),
                   "ı": ("i", "\u0307"), "ð": ("d", "\u0336"), "ħ": ("h", "\u0335")}
_LETTER_EXPANSIONS = {"æ": "ae", "œ": "oe", "ĳ": "ij", "þ": "th"}


def _mark_weight(mark: str) -> str:
    return _MARK_ORDER.get(mark) or chr(0x100 + ord(mark))


def _ascii_tables() -> tuple[dict[int, str | None], dict[int, str | None], dict[int, str | None]]:
    primary: dict[int, str | None] = {}
    secondary: dict[int, str | None] = {}
    tertiary: dict[int, str | None] = {}
    for code in range(128):
        char = chr(code)
        if char in _ASCII_PUNCTUATION:
            primary[code] = _G_PUNCT + chr(1 + _ASCII_PUNCTUATION.index(char))
        elif char in _ASCII_SYMBOLS:
            primary[code] = _G_SYMBOL + chr(1 + _ASCII_SYMBOLS.index(char))
        elif char == "$":
            primary[code] = _G_CURRENCY + "\x01"
        elif char.isdigit():
            primary[code] = _G_DIGIT + chr(1 + int(char))
        elif char.isalpha():
            primary[code] = _G_LETTER + char.lower()
        else:  # other control characters are completely ignorable
            primary[code] = secondary[code] = tertiary[code] = None
            continue
        secondary[code] = "\x01"
        tertiary[code] = _T_UPPER if char.isupper() else _T_PLAIN
    return primary, secondary, tertiary


_ASCII_PRIMARY, _ASCII_SECONDARY, _ASCII_TERTIARY = _ascii_tables()


def _char_elements(char: str) -> list[tuple[str, str]]:
    """Collation elements ``(primary, tertiary)`` of one non-mark character."""
    if char.isascii():
        primary = _ASCII_PRIMARY[ord(char)]
        return [] if primary is None else [(primary, _ASCII_TERTIARY[ord(char)] or _T_PLAIN)]
    category = unicodedata.category(char)
    if category[0] == "Z" or char.isspace():
        return [(_ASCII_PRIMARY[32] or "", _T_VARIANT)]
    if category in ("Cc", "Cf"):
        return []
    if category == "Nd":
        return [(_G_DIGIT + chr(1 + unicodedata.digit(char)), _T_VARIANT)]
    compat = unicodedata.normalize("NFKD", char)
    if compat != char:  # ligatures, full-width, superscripts: base letters, 4th-level tertiary
        return [(primary, _T_COMPAT) for part in compat
                if unicodedata.category(part) not in ("Mn", "Me")
                for primary, _ in _char_elements(part)]
    if category[0] == "P":  # after the ASCII ones of their group, by code point
        return [(_G_OTHER_PUNCT + char, _T_PLAIN)]
    if category == "Sc":
        return [(_G_CURRENCY + char, _T_PLAIN)]
    if category[0] != "L":
        return [(_G_OTHER_SYMBOL + char, _T_PLAIN)]
    lower = char.lower()
    upper = _T_UPPER if char != lower else _T_PLAIN
    if lower in _LETTER_EXPANSIONS:
        return [(_G_LETTER + part, _T_COMPAT) for part in _LETTER_EXPANSIONS[lower]]
    folded = lower.casefold()
    if len(folded) > 1 or folded != lower:  # ß -> ss, final sigma -> sigma
        return [(_G_LETTER + part, _T_COMPAT) for part in folded]
    return [(_G_LETTER + folded, upper)]


@functools.lru_cache(maxsize=4096)
def _unicode_key(text: str) -> tuple[str, str, str, str]:
    nfd = unicodedata.normalize("NFD", text)
    primary: list[str] = []
    secondary: list[str] = []
    tertiary: list[str] = []
    for char in nfd:
        if not char.isascii() and unicodedata.category(char) in ("Mn", "Me"):
            secondary.append(_mark_weight(char))  # accent: weighs on the preceding element
            continue
        alias = _LETTER_ALIASES.get(char.lower())
        if alias is not None:
            base, mark = alias
            primary.append(_G_LETTER + base)
            secondary.append("\x01" + _mark_weight(mark))
            tertiary.append(_T_UPPER if char != char.lower() else _T_PLAIN)
            continue
        for element, weight in _char_elements(char):
            primary.append(element)
            secondary.append("\x01")
            tertiary.append(weight)
    return "".join(primary), "".join(secondary), "".join(tertiary), nfd


def _string_key(text: str) -> tuple[str, str, str, str]:
    """Sort key approximating ICU root collation (see :func:`collate`)."""
    if text.isascii():
        return (text.translate(_ASCII_PRIMARY), text.translate(_ASCII_SECONDARY),
                text.translate(_ASCII_TERTIARY), text)
    return _unicode_key(text)


def _collate_strings(a: str, b: str) -> int:
    if a == b:
        return 0
    ka, kb = _string_key(a), _string_key(b)
    return -1 if ka < kb else (1 if ka > kb else 0)


def _collate_numbers(a: Any, b: Any) -> int:
    if a < b:
        return -1
    if a > b:
        return 1
    if a == b:
        return 0
    a_nan, b_nan = a != a, b != b  # NaN is not JSON; sort it first
    return 0 if a_nan and b_nan else (-1 if a_nan else 1)


def collate(a: Any, b: Any) -> int:
    """Compare two JSON values in CouchDB view collation order; -1, 0 or 1.

    ``null < false < true < numbers < strings < arrays < objects``
    (https://docs.couchdb.org/en/stable/ddocs/views/collation.html).  Numbers compare
    by value (``1 == 1.0``); arrays element by element, a prefix first; objects
    member by member *in their order* (key, then value), a prefix first.

    Strings approximate CouchDB's ICU root-locale Unicode Collation Algorithm with a
    three-level key over the NFD form: letters compare case- and accent-blind first,
    then by accents, then by case with lowercase first (``"a" < "A" < "á" < "aa" <
    "b"``); all punctuation and symbols sort before digits, digits before letters
    (ASCII punctuation in ICU's order, others by code point); ``ß``/``æ``/ligatures
    expand; control characters are ignored.  Letters of other scripts order by code
    point of their lowercase form, which follows UCA's script order for the common
    scripts but not within every script.  Ties are broken by code point, so only
    canonically equivalent strings (``"é"`` vs ``"e\\u0301"``) compare equal.
    """
    ra, rb = _rank(a), _rank(b)
    if ra != rb:
        return -1 if ra < rb else 1
    if ra == _NUMBER:
        return _collate_numbers(a, b)
    if ra == _STRING:
        return _collate_strings(a, b)
    if ra == _ARRAY:
        for x, y in zip(a, b):
            result = collate(x, y)
            if result:
                return result
        return (len(a) > len(b)) - (len(a) < len(b))
    if ra == _OBJECT:
        for (ka, va), (kb, vb) in zip(a.items(), b.items()):
            result = collate(ka, kb) or collate(va, vb)
            if result:
                return result
        return (len(a) > len(b)) - (len(a) < len(b))
    if ra == _OTHER:  # not JSON: order by type name, then text, never raise
        ta, tb = (type(a).__name__, repr(a)), (type(b).__name__, repr(b))
        return -1 if ta < tb else (1 if ta > tb else 0)
    return 0  # null, false, true


def _raw_collate(a: Any, b: Any) -> int:
    """Erlang term order CouchDB uses for ``_id`` conditions (``mango_json:cmp_raw``):
    number < false < null < true < object < array < string; strings by code point."""
    ra, rb = _RAW_RANK[_rank(a)], _RAW_RANK[_rank(b)]
    if ra != rb:
        return -1 if ra < rb else 1
    rank = _rank(a)
    if rank == _STRING:
        return -1 if a < b else (1 if a > b else 0)
    if rank in (_ARRAY, _OBJECT):
        xs, ys = (list(a.items()), list(b.items())) if rank == _OBJECT else (a, b)
        for x, y in zip(xs, ys):
            result = (_raw_collate(x[0], y[0]) or _raw_collate(x[1], y[1])) \
                if rank == _OBJECT else _raw_collate(x, y)
            if result:
                return result
        return (len(xs) > len(ys)) - (len(xs) < len(ys))
    return collate(a, b)  # numbers and the rest


_RAW_RANK = {_NUMBER: 0, _FALSE: 1, _NONE: 2, _TRUE: 3, _OBJECT: 4, _ARRAY: 5,
             _STRING: 6, _OTHER: 7}


def _equal(a: Any, b: Any) -> bool:
    """JSON equality under collation: ``1 == 1.0``, ``True != 1``, canonically
    equivalent strings equal, objects equal whatever their member order."""
    if a is b:
        return True
    ra = _rank(a)
    if ra != _rank(b):
        return False
    if ra == _STRING:
        return a == b or (not (a.isascii() and b.isascii())
                          and unicodedata.normalize("NFD", a) == unicodedata.normalize("NFD", b))
    if ra == _NUMBER:
        return bool(a == b) or (a != a and b != b)
    if ra == _ARRAY:
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if ra == _OBJECT:
        if len(a) != len(b):
            return False
        for key, value in a.items():
            if key not in b:
                return False
            if not _equal(value, b[key]):
                return False
        return True
    return ra != _OTHER or collate(a, b) == 0


def _raw_equal(a: Any, b: Any) -> bool:
    return _raw_collate(a, b) == 0


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
        try:
            return re.compile(arg)
        except (re.error, ValueError, OverflowError, RecursionError) as exc:
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
        search = arg.search
        return lambda value: isinstance(value, str) and search(value) is not None
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
