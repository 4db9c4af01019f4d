"""JSON text in and out, through orjson, exact for every integer.

orjson (a required dependency) reads and writes JSON 5-20x faster than the stdlib, but
it only knows 64-bit integers: it refuses to write a larger one (``TypeError``) and,
worse, reads one silently as a float (``18446744073709551617`` becomes
``1.8446744073709552e19``). One small fallback keeps such integers exact both ways:

- ``dumps`` hands what orjson refuses to the stdlib encoder, which writes big integers
  exactly (and refuses NaN and what is not JSON);
- ``loads`` reads with orjson and, when the value holds a container or a float, looks
  for a number token of 19 digits or more in the text (one ``bytes.translate`` and two
  substring searches, about 40 % of orjson's own read); only text that has one is read
  again, by the stdlib, which keeps every digit.

Stored documents are checked by ``store.validate`` (it refuses NaN and non-JSON types);
this module is for the hot paths.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["dumps", "dumps_bytes", "loads", "may_hold_big_int"]

#: digits become "0", the bytes after which a number token may start ("[", ":", ",")
#: become "c", every other byte "x"; spaces are dropped. A number token of 19 digits or
#: more (the shortest integer orjson may read as a float is 19 digits, below -2**63)
#: then shows as "c" followed by 19 zeros, with or without a "-". Text inside a string
#: that looks so only costs a second, exact read.
_TABLE = bytes(ord("0") if chr(b).isdigit() and b < 128 else
               ord("c") if b in b"[:," else ord("-") if b == ord("-") else ord("x")
               for b in range(256))
_SPACES = b" \t\r\n"
_TOKEN = b"c" + b"0" * 19
_NEGATIVE_TOKEN = b"c-" + b"0" * 19


#: the values orjson reads that may hold a float it made of a big integer
_MAY_HOLD = (dict, list, float)


def may_hold_big_int(data: str | bytes | bytearray | memoryview) -> bool:
    """True when ``data`` holds a number token of 19 digits or more: orjson may have
    read an integer beyond 64 bits in it as a float."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    marked = b"c" + raw.translate(_TABLE, _SPACES)
    return _TOKEN in marked or _NEGATIVE_TOKEN in marked


def loads(data: str | bytes | bytearray | memoryview) -> Any:
    """Parse JSON text (str or UTF-8 bytes); ``ValueError`` for what is not JSON.

    Integers beyond 64 bits keep their digits (see the module's docstring)."""
    value = orjson.loads(data)
    if value.__class__ in _MAY_HOLD and may_hold_big_int(data):
        try:
            return json.loads(bytes(data) if isinstance(data, memoryview) else data)
        except RecursionError as exc:
            raise ValueError("JSON nested too deeply") from exc
    return value


def dumps_bytes(value: Any) -> bytes:
    """Compact JSON as UTF-8 bytes; ``TypeError``/``ValueError`` for non-JSON values."""
    try:
        return orjson.dumps(value)
    except TypeError:
        pass  # an int beyond 64 bits or a non-str key: the stdlib writes or refuses it
    return _stdlib_dumps(value).encode("utf-8")


def dumps(value: Any) -> str:
    """Compact JSON text; ``TypeError``/``ValueError`` for non-JSON values."""
    try:
        return orjson.dumps(value).decode("utf-8")
    except TypeError:
        pass  # an int beyond 64 bits or a non-str key: the stdlib writes or refuses it
    return _stdlib_dumps(value)


def _stdlib_dumps(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc
