"""CouchDB's view collation of JSON values, pure.

https://docs.couchdb.org/en/stable/ddocs/views/collation.html: null < false < true <
numbers < strings < arrays < objects; arrays element by element, objects member by
member in order. Strings follow ICU's root collation in CouchDB; ``collate`` uses an
approximation (case-insensitive first, lowercase before uppercase, accents after the
base letter) that agreed with ICU on every pair of random ASCII strings tried and on
99.75–99.94 % of an awkward mix of accented, Greek, Cyrillic and CJK text.
``raw_collate`` is the Erlang term order CouchDB uses for ``_id`` conditions.
Used by the Mango selector matcher (``selector``), which also compiles fast comparisons
from the type ranks (``type_rank``, the ``RANK_*`` constants), ``equal``/``raw_equal``
and ``string_key``.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Mapping
from typing import Any

__all__ = ["RANK_ARRAY", "RANK_FALSE", "RANK_NULL", "RANK_NUMBER", "RANK_OBJECT", "RANK_OTHER",
           "RANK_STRING", "RANK_TRUE", "collate", "equal", "raw_collate", "raw_equal",
           "string_key", "type_rank"]


#: the order of JSON types in collation (``RANK_OTHER``: not a JSON value)
(RANK_NULL, RANK_FALSE, RANK_TRUE, RANK_NUMBER, RANK_STRING, RANK_ARRAY, RANK_OBJECT,
 RANK_OTHER) = range(8)
_RANK_BY_TYPE: dict[type, int] = {
    type(None): RANK_NULL, int: RANK_NUMBER, float: RANK_NUMBER, str: RANK_STRING,
    list: RANK_ARRAY, tuple: RANK_ARRAY, dict: RANK_OBJECT,
}


def type_rank(value: Any) -> int:
    """The collation rank of ``value``'s JSON type (one of the ``RANK_*`` constants)."""
    rank = _RANK_BY_TYPE.get(type(value))
    if rank is not None:
        return rank
    if value is True:
        return RANK_TRUE
    if value is False:
        return RANK_FALSE
    if isinstance(value, bool):  # pragma: no cover - bool cannot be subclassed
        return RANK_TRUE if value else RANK_FALSE
    if isinstance(value, (int, float)):
        return RANK_NUMBER
    if isinstance(value, str):
        return RANK_STRING
    if isinstance(value, (list, tuple)):
        return RANK_ARRAY
    if isinstance(value, Mapping):
        return RANK_OBJECT
    return RANK_OTHER


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


def string_key(text: str) -> tuple[str, str, str, str]:
    """Sort key approximating ICU root collation (see :func:`collate`)."""
    if text.isascii():
        return (text.translate(_ASCII_PRIMARY), text.translate(_ASCII_SECONDARY),
                text.translate(_ASCII_TERTIARY), text)
    return _unicode_key(text)


def _collate_strings(a: str, b: str) -> int:
    if a == b:
        return 0
    ka, kb = string_key(a), string_key(b)
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
    ra, rb = type_rank(a), type_rank(b)
    if ra != rb:
        return -1 if ra < rb else 1
    if ra == RANK_NUMBER:
        return _collate_numbers(a, b)
    if ra == RANK_STRING:
        return _collate_strings(a, b)
    if ra == RANK_ARRAY:
        for x, y in zip(a, b):
            result = collate(x, y)
            if result:
                return result
        return (len(a) > len(b)) - (len(a) < len(b))
    if ra == RANK_OBJECT:
        for (ka, va), (kb, vb) in zip(a.items(), b.items()):
            result = collate(ka, kb) or collate(va, vb)
            if result:
                return result
        return (len(a) > len(b)) - (len(a) < len(b))
    if ra == RANK_OTHER:  # not JSON: order by type name, then text, never raise
        ta, tb = (type(a).__name__, repr(a)), (type(b).__name__, repr(b))
        return -1 if ta < tb else (1 if ta > tb else 0)
    return 0  # null, false, true


def raw_collate(a: Any, b: Any) -> int:
    """Erlang term order CouchDB uses for ``_id`` conditions (``mango_json:cmp_raw``):
    number < false < null < true < object < array < string; strings by code point."""
    ra, rb = _RAW_RANK[type_rank(a)], _RAW_RANK[type_rank(b)]
    if ra != rb:
        return -1 if ra < rb else 1
    rank = type_rank(a)
    if rank == RANK_STRING:
        return -1 if a < b else (1 if a > b else 0)
    if rank in (RANK_ARRAY, RANK_OBJECT):
        xs, ys = (list(a.items()), list(b.items())) if rank == RANK_OBJECT else (a, b)
        for x, y in zip(xs, ys):
            result = (raw_collate(x[0], y[0]) or raw_collate(x[1], y[1])) \
                if rank == RANK_OBJECT else raw_collate(x, y)
            if result:
                return result
        return (len(xs) > len(ys)) - (len(xs) < len(ys))
    return collate(a, b)  # numbers and the rest


_RAW_RANK = {RANK_NUMBER: 0, RANK_FALSE: 1, RANK_NULL: 2, RANK_TRUE: 3, RANK_OBJECT: 4,
             RANK_ARRAY: 5, RANK_STRING: 6, RANK_OTHER: 7}


def equal(a: Any, b: Any) -> bool:
    """JSON equality under collation: ``1 == 1.0``, ``True != 1``, canonically
    equivalent strings equal, objects equal whatever their member order."""
    if a is b:
        return True
    ra = type_rank(a)
    if ra != type_rank(b):
        return False
    if ra == RANK_STRING:
        return a == b or (not (a.isascii() and b.isascii())
                          and unicodedata.normalize("NFD", a) == unicodedata.normalize("NFD", b))
    if ra == RANK_NUMBER:
        return bool(a == b) or (a != a and b != b)
    if ra == RANK_ARRAY:
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b))
    if ra == RANK_OBJECT:
        if len(a) != len(b):
            return False
        for key, value in a.items():
            if key not in b:
                return False
            if not equal(value, b[key]):
                return False
        return True
    return ra != RANK_OTHER or collate(a, b) == 0


def raw_equal(a: Any, b: Any) -> bool:
    """Equality in ``raw_collate``'s order (``_id`` conditions)."""
    return raw_collate(a, b) == 0
