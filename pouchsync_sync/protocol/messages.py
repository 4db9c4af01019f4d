"""Wire messages of protocol v1: encode, decode, validate, build.

Theory of operation (docs/protocol.md is the reference): every message is one JSON
object in one WebSocket text frame, with a string ``type``. ``decode`` parses a frame
and checks the message's *envelope* against the schema of its type (required fields,
JSON types, integer ranges) for the direction it travels; it raises ``BadMessage``
(a ``ProtocolError`` carrying the ``{status, error, reason}`` to answer with and the
``ch``/``id``/``sub`` it concerns). The arguments of a ``call`` are checked later, by
``protocol.ops``, so a bad argument gets a ``reply`` with an error rather than a
connection-level error. The field checkers are ``protocol.fields``'; the constructors
(``hello``, ``call``, ``changes``, ...) are ``protocol.builders``', re-exported here.
Pure: no sockets, no clocks.

JSON goes through ``jsoncodec`` (orjson, with the stdlib only for integers beyond 64
bits, which keep their digits both ways).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import jsoncodec
from ..errors import ProtocolError
from .builders import (
    PROTOCOL_VERSIONS,
    call,
    changes,
    changes_error,
    close,
    closed,
    denied,
    error,
    granted,
    hello,
    open_channel,
    reply_error,
    reply_ok,
    subscribe,
    unsubscribe,
    welcome,
)
from .fields import (
    DESCRIBE,
    MAX_AGENT,
    MAX_DB_NAME,
    MAX_ID,
    Check,
    is_agent,
    is_any,
    is_bool,
    is_db_name,
    is_int,
    is_list,
    is_obj,
    is_pos_int,
    is_str,
    is_str_list,
    is_style,
    is_versions,
)

__all__ = [
    "PROTOCOL_VERSIONS",
    "CLIENT_TYPES",
    "SERVER_TYPES",
    "MAX_ID",
    "MAX_AGENT",
    "MAX_DB_NAME",
    "BadMessage",
    "encode",
    "encode_bytes",
    "decode",
    "decode_payload",
    "validate",
    "choose_version",
    # the constructors, from .builders
    "hello", "welcome", "error", "open_channel", "granted", "denied", "close", "closed",
    "call", "reply_ok", "reply_error", "subscribe", "unsubscribe", "changes",
    "changes_error",
]

#: message types a client sends / a server sends
CLIENT_TYPES = frozenset({"hello", "open", "close", "call", "subscribe", "unsubscribe"})
SERVER_TYPES = frozenset({"welcome", "error", "granted", "denied", "closed", "reply", "changes"})


class BadMessage(ProtocolError):
    """A message the protocol does not allow, with what to answer.

    ``status``/``error``/``reason`` is the CouchDB-shaped error to send back;
    ``ch``/``id``/``sub`` name what it concerns (``None`` when unknown); ``fatal``
    says the connection cannot go on (the server closes after answering).
    """

    def __init__(self, reason: str, *, status: int = 400, error: str = "bad_request",
                 ch: int | None = None, id: int | None = None, sub: int | None = None,
                 fatal: bool = False, close_code: int = 1002) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.error = error
        self.ch = ch
        self.id = id
        self.sub = sub
        self.fatal = fatal
        self.close_code = close_code

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "error": self.error, "reason": self.reason}

    def to_message(self) -> dict[str, Any]:
        """The connection-level ``error`` message answering this."""
        return error(self.status, self.error, self.reason, ch=self.ch, id=self.id,
                     sub=self.sub, fatal=self.fatal)


# -- JSON ------------------------------------------------------------------------------

def encode_bytes(msg: Mapping[str, Any]) -> bytes:
    """``encode`` as the UTF-8 bytes of the frame's payload."""
    return jsoncodec.dumps_bytes(msg)


def encode(msg: Mapping[str, Any]) -> str:
    """One message as the text of one frame."""
    return jsoncodec.dumps(msg)


def decode_payload(payload: bytes | bytearray | str, *, sender: str) -> dict[str, Any]:
    """``decode`` for the payload of a text frame as received: UTF-8 bytes are parsed as
    they are (orjson checks the UTF-8 itself: no copy, no str). ``BadMessage`` for bytes
    that are not UTF-8."""
    if isinstance(payload, str):
        return decode(payload, sender=sender)
    try:
        msg = jsoncodec.loads(payload)
    except (ValueError, TypeError) as exc:
        raise BadMessage(f"malformed JSON: {exc}") from exc
    return validate(msg, sender=sender)


def decode(text: str | bytes, *, sender: str) -> dict[str, Any]:
    """Parse one frame sent by ``sender`` (``"client"`` or ``"server"``) and validate it.

    Raises ``BadMessage`` for malformed JSON, a non-object, an unknown type or a
    field of the wrong shape.
    """
    if isinstance(text, (bytes, bytearray, memoryview)):
        raise BadMessage("binary frames are not used in protocol v1")
    try:
        msg = jsoncodec.loads(text)
    except (ValueError, TypeError) as exc:
        raise BadMessage(f"malformed JSON: {exc}") from exc
    return validate(msg, sender=sender)


_REQUIRED = object()

# type -> {field: (checker, default or _REQUIRED)}; a field given as null takes its
# default (checkers never see None), a required one must be there and pass its check
_SCHEMAS: dict[str, dict[str, tuple[Check, Any]]] = {
    "hello": {"versions": (is_versions, _REQUIRED), "agent": (is_agent, None)},
    "welcome": {"version": (is_int, _REQUIRED), "agent": (is_str, None),
                "limits": (is_obj, _REQUIRED)},
    "error": {"status": (is_int, _REQUIRED), "error": (is_str, _REQUIRED),
              "reason": (is_str, _REQUIRED), "ch": (is_pos_int, None),
              "id": (is_pos_int, None), "sub": (is_pos_int, None),
              "fatal": (is_bool, None)},
    "open": {"ch": (is_pos_int, _REQUIRED), "db": (is_db_name, _REQUIRED),
             "credentials": (is_any, None)},
    "granted": {"ch": (is_pos_int, _REQUIRED), "db": (is_str, _REQUIRED),
                "uuid": (is_str, _REQUIRED), "read_only": (is_bool, False)},
    "denied": {"ch": (is_pos_int, _REQUIRED), "status": (is_int, _REQUIRED),
               "error": (is_str, _REQUIRED), "reason": (is_str, _REQUIRED)},
    "close": {"ch": (is_pos_int, _REQUIRED)},
    "closed": {"ch": (is_pos_int, _REQUIRED)},
    # op and args are checked by protocol.ops, so that a bad one gets a reply
    "call": {"ch": (is_pos_int, _REQUIRED), "id": (is_pos_int, _REQUIRED),
             "op": (is_any, None), "args": (is_any, None)},
    "reply": {"ch": (is_pos_int, _REQUIRED), "id": (is_pos_int, _REQUIRED),
              "ok": (is_any, None), "error": (is_obj, None)},
    "subscribe": {"ch": (is_pos_int, _REQUIRED), "sub": (is_pos_int, _REQUIRED),
                  "since": (is_any, 0), "style": (is_style, None),
                  "include_docs": (is_bool, None), "conflicts": (is_bool, None),
                  "doc_ids": (is_str_list, None), "selector": (is_obj, None),
                  "batch": (is_pos_int, None)},
    "unsubscribe": {"ch": (is_pos_int, _REQUIRED), "sub": (is_pos_int, _REQUIRED)},
    "changes": {"ch": (is_pos_int, _REQUIRED), "sub": (is_pos_int, _REQUIRED),
                "results": (is_list, None), "last_seq": (is_any, None),
                "pending": (is_int, None), "error": (is_obj, None)},
}

#: types whose unknown fields are refused (their fields are options, like call args)
_STRICT = frozenset({"subscribe"})


def validate(msg: Any, *, sender: str) -> dict[str, Any]:
    """Check a decoded message sent by ``sender`` against its type's schema.

    Returns a new dict with defaults filled in (the input is not changed).
    """
    if not isinstance(msg, dict):
        raise BadMessage(f"a message must be a JSON object, got {type(msg).__name__}")
    kind = msg.get("type")
    if not isinstance(kind, str):
        raise BadMessage('a message needs a string "type"')
    allowed = CLIENT_TYPES if sender == "client" else SERVER_TYPES
    if kind not in allowed:
        if kind in _SCHEMAS:
            raise BadMessage(f"a {sender} does not send {kind!r} messages")
        raise BadMessage(f"unknown message type {kind[:50]!r}")
    schema = _SCHEMAS[kind]
    # what the error should point at, when those fields are usable
    ch = _usable_id(msg.get("ch"))
    ref_id = _usable_id(msg.get("id")) if kind == "call" else None
    sub = _usable_id(msg.get("sub")) if kind in ("subscribe", "unsubscribe") else None
    out: dict[str, Any] = {"type": kind}
    for field, (check, default) in schema.items():
        if field not in msg or (msg[field] is None and default is not _REQUIRED):
            if default is _REQUIRED:
                raise BadMessage(f"{kind!r} needs a {field!r} field", ch=ch, id=ref_id, sub=sub)
            out[field] = default
            continue
        value = msg[field]
        if not check(value):
            raise BadMessage(f"{kind!r} field {field!r} must be {DESCRIBE[check]}", ch=ch,
                             id=ref_id, sub=sub)
        out[field] = value
    if kind in _STRICT:
        unknown = sorted(set(msg) - set(schema) - {"type"})
        if unknown:
            raise BadMessage(f"unknown field {unknown[0][:50]!r} in {kind!r}", ch=ch, sub=sub)
    if kind in ("reply", "changes"):
        _check_outcome(kind, msg, out)
    return out


def _usable_id(value: Any) -> int | None:
    return value if type(value) is int and 1 <= value <= MAX_ID else None


def _check_outcome(kind: str, msg: Mapping[str, Any], out: dict[str, Any]) -> None:
    if kind == "reply":
        has_ok, has_error = "ok" in msg, out["error"] is not None
        if has_ok == has_error:
            raise BadMessage("a reply has exactly one of 'ok' and 'error'",
                             ch=out["ch"], id=out["id"])
        if not has_ok:
            del out["ok"]
        else:
            del out["error"]
    else:
        if (out["results"] is None) == (out["error"] is None):
            raise BadMessage("a changes message has either 'results' or 'error'",
                             ch=out["ch"], sub=out["sub"])
        if out["pending"] is None:  # optional (v1 servers before it omit it)
            del out["pending"]
        if out["error"] is None:
            del out["error"]
        else:
            del out["results"]
            del out["last_seq"]
            out.pop("pending", None)


def choose_version(offered: list[int],
                   supported: tuple[int, ...] = PROTOCOL_VERSIONS) -> int | None:
    """The highest version both sides speak, or ``None``."""
    common = set(offered) & set(supported)
    return max(common) if common else None
