"""JSON encode/decode with an optional fast path (orjson when installed).

Stored documents are always checked by the stdlib encoder (it refuses NaN and
non-JSON types); this module is for trusted data on hot paths.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["dumps", "loads", "FAST"]

try:  # pragma: no cover - depends on the environment
    import orjson as _orjson
except ImportError:  # pragma: no cover
    _orjson = None

FAST = _orjson is not None


def loads(text: str | bytes) -> Any:
    """Parse JSON text (str or UTF-8 bytes)."""
    if _orjson is not None:
        return _orjson.loads(text)
    return json.loads(text)


def dumps(value: Any) -> str:
    """Compact JSON text; raises ``TypeError``/``ValueError`` on non-JSON values."""
    if _orjson is not None:
        try:
            return _orjson.dumps(value).decode("utf-8")
        except TypeError:
            pass  # e.g. a non-str key or an int beyond 64 bits: let the stdlib decide
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
