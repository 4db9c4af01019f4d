"""The field checkers of protocol v1, shared by messages and call arguments. Pure.

Each checker says whether one JSON value has the shape a field needs (``True``/``False``,
never raises); ``DESCRIBE`` says that shape in words, for the error that names the
field: ``must be`` + ``DESCRIBE[check]``. ``protocol.messages`` checks a message's
envelope with them (raising ``BadMessage``), ``protocol.ops`` a call's arguments
(raising ``BadRequest``). ``None`` is never checked: a field given as ``null`` takes its
default (or is missing) before any checker sees it.
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = [
    "MAX_AGENT",
    "MAX_DB_NAME",
    "MAX_ID",
    "DESCRIBE",
    "Check",
    "is_agent",
    "is_any",
    "is_bool",
    "is_db_name",
    "is_feed",
    "is_int",
    "is_list",
    "is_nonneg_int",
    "is_number",
    "is_obj",
    "is_obj_list",
    "is_open_revs",
    "is_pos_int",
    "is_revs_map",
    "is_str",
    "is_str_list",
    "is_style",
    "is_text_rows",
    "is_versions",
]

#: largest ``ch``/``id``/``sub`` (JavaScript's safe integer range)
MAX_ID = 2**53 - 1
#: longest ``agent`` of a ``hello``
MAX_AGENT = 200
#: longest database name an ``open`` may ask for
MAX_DB_NAME = 1024

Check = Callable[[Any], bool]


def is_any(v: Any) -> bool:
    return True


def is_str(v: Any) -> bool:
    return isinstance(v, str)


def is_bool(v: Any) -> bool:
    return type(v) is bool


def is_int(v: Any) -> bool:
    return type(v) is int


def is_pos_int(v: Any) -> bool:
    """An id (``ch``, ``id``, ``sub``): 1..``MAX_ID``."""
    return type(v) is int and 1 <= v <= MAX_ID


def is_nonneg_int(v: Any) -> bool:
    return type(v) is int and v >= 0


def is_number(v: Any) -> bool:
    return type(v) in (int, float) and v >= 0


def is_obj(v: Any) -> bool:
    return isinstance(v, dict)


def is_list(v: Any) -> bool:
    return isinstance(v, list)


def is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def is_obj_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, dict) for x in v)


def is_text_rows(v: Any) -> bool:
    """``write_missing_texts``' rows: ``[id, rev, text]`` each."""
    return type(v) is list and all(type(r) is list and len(r) == 3 for r in v)


def is_open_revs(v: Any) -> bool:
    return v == "all" or is_str_list(v)


def is_revs_map(v: Any) -> bool:
    return isinstance(v, dict) and all(is_str_list(x) for x in v.values())


def is_style(v: Any) -> bool:
    return v in ("main_only", "all_docs")


def is_feed(v: Any) -> bool:
    return v in ("normal", "longpoll")


def is_versions(v: Any) -> bool:
    """A ``hello``'s ``versions``."""
    return isinstance(v, list) and bool(v) and all(type(x) is int for x in v)


def is_agent(v: Any) -> bool:
    return isinstance(v, str) and len(v) <= MAX_AGENT


def is_db_name(v: Any) -> bool:
    return isinstance(v, str) and bool(v) and len(v) <= MAX_DB_NAME


#: each checker's shape in words ("must be ..." in an error)
DESCRIBE: dict[Check, str] = {
    is_any: "any JSON value", is_str: "a string", is_bool: "true or false",
    is_int: "an integer", is_pos_int: f"an integer in 1..{MAX_ID}",
    is_nonneg_int: "an integer >= 0", is_number: "a number >= 0", is_obj: "an object",
    is_list: "a list", is_str_list: "a list of strings", is_obj_list: "a list of objects",
    is_text_rows: "a list of [id, rev, text] rows",
    is_open_revs: 'a list of strings or "all"', is_revs_map: "an object of id -> list of revs",
    is_style: '"main_only" or "all_docs"', is_feed: '"normal" or "longpoll"',
    is_versions: "a non-empty list of integers",
    is_agent: f"a string of at most {MAX_AGENT} characters",
    is_db_name: f"a non-empty string of at most {MAX_DB_NAME} characters",
}
