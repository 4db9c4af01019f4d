"""Checks on documents coming into a store, pure.

Every backend runs these before writing, so bad input is refused as a whole
(``BadRequest``) before anything is written. Rules follow CouchDB's
(https://docs.couchdb.org/en/stable/api/document/common.html).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import orjson as _orjson

from ..errors import BadRequest

__all__ = [
    "ALLOWED_SPECIAL",
    "exact_json_text",
    "check_doc",
    "check_doc_id",
    "split_body",
    "dump_json",
    "exact_json_texts",
    "decode_attachment",
    "md5_digest",
    "is_local_id",
    "check_bulk_docs_args",
    "check_changes_args",
    "check_count",
    "check_all_docs_args",
    "CHANGES_STYLES",
    "CHANGES_FEEDS",
]

CHANGES_STYLES = ("main_only", "all_docs")
CHANGES_FEEDS = ("normal", "longpoll")

#: top-level fields starting with "_" that a document may carry
ALLOWED_SPECIAL = frozenset({
    "_id", "_rev", "_deleted", "_attachments", "_revisions", "_revs_info",
    "_conflicts", "_deleted_conflicts", "_local_seq",
})
_RESERVED_PREFIXES = ("_design/", "_local/")


def is_local_id(doc_id: str) -> bool:
    return doc_id.startswith("_local/")


def check_doc_id(doc_id: Any) -> str:
    """A valid document id or ``BadRequest``."""
    if not isinstance(doc_id, str) or not doc_id:
        raise BadRequest("Document id must be a non-empty string")
    if doc_id.startswith("_"):
        if not any(doc_id.startswith(p) and len(doc_id) > len(p) for p in _RESERVED_PREFIXES):
            raise BadRequest("Only reserved document ids may start with underscore.")
    try:
        doc_id.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRequest("Document id is not valid UTF-8") from exc
    return doc_id


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode

#: subclasses, datetimes and dataclasses go to the stdlib encoder, which decides
_ORJSON_OPTS = (_orjson.OPT_PASSTHROUGH_SUBCLASS | _orjson.OPT_PASSTHROUGH_DATETIME
                | _orjson.OPT_PASSTHROUGH_DATACLASS)


def _refuse(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON")


def _orjson_text(value: Any) -> bytes | None:
    """orjson's text of ``value``; None when orjson refuses it (a lone surrogate, a big
    int, a non-str key, deep nesting, a subclass, a datetime...)."""
    try:
        return _orjson.dumps(value, default=_refuse, option=_ORJSON_OPTS)
    except TypeError:
        return None


def dump_json(value: Any) -> str:
    """Compact JSON text for storage; ``BadRequest`` for non-JSON values (NaN included).

    orjson's text is used when it reads back equal to ``value``: that
    rules out what orjson writes but the stdlib refuses or writes otherwise (NaN and
    infinities become ``null``, UUIDs and enums become strings, tuples become lists).
    Anything else takes the stdlib encoder, which decides. orjson is the fast path for
    the plain JSON that replication writes (``bench/bench_store.py`` measures it).
    """
    text = _orjson_text(value)
    if text is not None and _orjson.loads(text) == value:
        return text.decode("utf-8")
    try:
        return _encode(value)
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"Document is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise BadRequest("Document is nested too deeply") from exc


def exact_json_texts(values: Sequence[Any]) -> list[str | None]:
    """The compact JSON text of each value as orjson writes it, None where the stdlib
    encoder must decide (``dump_json``).

    None marks a value orjson refuses (a non-string key, a big integer, a lone
    surrogate, deep nesting, a subclass, a datetime...), one whose text holds ``null``
    and does not read back equal (orjson writes NaN and infinities as ``null``, the
    stdlib refuses them). Checking only
    texts with ``null`` keeps this at one orjson call per plain document. One leniency
    remains: ``uuid.UUID`` and ``enum.Enum`` objects, which orjson writes as their
    string or value, are stored so (they never come out of JSON text; only a Python
    caller can hand them in).
    """
    return [exact_json_text(value) for value in values]


def exact_json_text(value: Any) -> str | None:
    """``exact_json_texts`` of one value."""
    text = _orjson_text(value)
    if text is None or (b"null" in text and _orjson.loads(text) != value):
        return None
    return text.decode("utf-8")


def check_doc(doc: Any, *, require_id: bool = True) -> dict[str, Any]:
    """Shape checks shared by every write path; returns the doc as a dict (never mutated)."""
    if not isinstance(doc, Mapping):
        raise BadRequest("Document must be a JSON object")
    if doc.__class__ is not dict:
        doc = dict(doc)
    for key in doc:
        if key.__class__ is not str and not isinstance(key, str):
            raise BadRequest("Document keys must be strings")
        if key[:1] == "_" and key not in ALLOWED_SPECIAL:
            raise BadRequest(f"Bad special document member: {key}", error="doc_validation")
    if "_id" in doc or require_id:
        check_doc_id(doc.get("_id"))
    if "_rev" in doc and doc["_rev"] is not None and not isinstance(doc["_rev"], str):
        raise BadRequest("Invalid rev format")
    deleted = doc.get("_deleted", False)
    if not isinstance(deleted, bool):
        raise BadRequest("_deleted must be a boolean")
    atts = doc.get("_attachments")
    if atts is not None:
        if not isinstance(atts, Mapping):
            raise BadRequest("_attachments must be an object")
        for name, att in atts.items():
            if not isinstance(name, str) or not name or name.startswith("_"):
                raise BadRequest(f"Attachment name is invalid: {name!r}")
            if not isinstance(att, Mapping):
                raise BadRequest(f"Attachment {name!r} must be an object")
            if not att.get("stub") and "data" not in att:
                raise BadRequest(f"Attachment {name!r} has neither data nor stub")
    return doc


def split_body(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The user's part of a doc: every field but the special ones (``_attachments`` stays)."""
    return {k: v for k, v in doc.items() if k[:1] != "_" or k == "_attachments"}


def md5_digest(data: bytes) -> str:
    """CouchDB's attachment digest: ``"md5-" + base64(md5)``."""
    return "md5-" + base64.b64encode(hashlib.md5(data).digest()).decode("ascii")


def decode_attachment(name: str, att: Mapping[str, Any]) -> tuple[bytes, str]:
    """Decode inline ``data``; check any ``digest``/``length`` it claims. ``(bytes, digest)``."""
    data = att.get("data")
    if isinstance(data, (bytes, bytearray)):
        raw = bytes(data)
    elif isinstance(data, str):
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadRequest(f"Attachment {name!r} is not valid base64") from exc
    else:
        raise BadRequest(f"Attachment {name!r} data must be a base64 string")
    digest = md5_digest(raw)
    claimed = att.get("digest")
    if claimed is not None and claimed != digest:
        raise BadRequest(f"Attachment {name!r} digest does not match its data")
    length = att.get("length")
    if length is not None and length != len(raw):
        raise BadRequest(f"Attachment {name!r} length does not match its data")
    content_type = att.get("content_type", "application/octet-stream")
    if not isinstance(content_type, str):
        raise BadRequest(f"Attachment {name!r} content_type must be a string")
    return raw, digest


def check_count(name: str, value: Any) -> None:
    """``BadRequest`` unless ``value`` is None or an integer >= 0 (not a bool)."""
    if value is not None and (value.__class__ is bool or not isinstance(value, int) or value < 0):
        raise BadRequest(f"{name} must be a non-negative integer")


def check_bulk_docs_args(docs: Any, new_edits: Any) -> None:
    """The argument checks every backend's ``bulk_docs`` makes before reading a doc."""
    if not isinstance(docs, (list, tuple)):
        raise BadRequest("docs must be a list")
    if not isinstance(new_edits, bool):
        raise BadRequest("new_edits must be a boolean")


def check_changes_args(*, style: Any, feed: Any, limit: Any, timeout: Any, doc_ids: Any) -> None:
    """The argument checks every backend's ``changes`` makes before doing anything."""
    if style not in CHANGES_STYLES:
        raise BadRequest(f"style must be one of {CHANGES_STYLES}")
    if feed not in CHANGES_FEEDS:
        raise BadRequest(f"feed must be one of {CHANGES_FEEDS}")
    check_count("limit", limit)
    if timeout is not None and (timeout.__class__ is bool or not isinstance(timeout, (int, float))
                                or timeout < 0):
        raise BadRequest("timeout must be a non-negative number of seconds")
    if doc_ids is not None and (not isinstance(doc_ids, (list, tuple))
                                or not all(isinstance(i, str) for i in doc_ids)):
        raise BadRequest("doc_ids must be a list of strings")


def check_all_docs_args(*, limit: Any, skip: Any) -> None:
    """The argument checks every backend's ``all_docs`` makes."""
    check_count("limit", limit)
    if skip is None:
        raise BadRequest("skip must be a non-negative integer")
    check_count("skip", skip)
