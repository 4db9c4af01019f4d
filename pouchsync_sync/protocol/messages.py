"""Wire messages of protocol v1: encode, decode, validate, build.

Theory of operation (docs/protocol.md is the reference): every message is one JSON
object in one WebSocket text frame, with a string ``type``. ``decode`` parses a frame
and checks the message's *envelope* against the schema of its type (required fields,
JSON types, integer ranges) for the direction it travels; it raises ``BadMessage``
(a ``ProtocolError`` carrying the ``{status, error, reason}`` to answer with and the
``ch``/``id``/``sub`` it concerns). The arguments of a ``call`` are checked later, by
``protocol.ops``, so a bad argument gets a ``reply`` with an error rather than a
connection-level error. Pure: no sockets, no clocks.

JSON goes through ``jsoncodec`` (orjson, with the stdlib only for integers beyond 64
bits, which keep their digits both ways).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

from .. import jsoncodec
from ..errors import ProtocolError

__all__ = [
    "PROTOCOL_VERSIONS",
    "CLIENT_TYPES",
    "SERVER_TYPES",
    "MAX_ID",
    "BadMessage",
    "encode",
    "encode_bytes",
    "decode",
    "decode_payload",
    "validate",
    "choose_version",
    "hello",
    "welcome",
    "error",
    "open_channel",
    "granted",
    "denied",
    "close",
    "closed",
    "call",
    "reply_ok",
    "reply_error",
    "subscribe",
    "unsubscribe",
    "changes",
    "changes_error",
]

#: protocol versions this implementation speaks, oldest first
PROTOCOL_VERSIONS: tuple[int, ...] = (1,)
#: largest ``ch``/``id``/``sub`` (JavaScript's safe integer range)
MAX_ID = 2**53 - 1
MAX_AGENT = 200
MAX_DB_NAME = 1024

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


# -- field checkers: each returns the (possibly defaulted) value or raises ValueError --

def _pos_int(value: Any) -> int:
    if type(value) is not int or not 1 <= value <= MAX_ID:
        raise ValueError(f"must be an integer in 1..{MAX_ID}")
    return value


def _int(value: Any) -> int:
    if type(value) is not int:
        raise ValueError("must be an integer")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


def _bool(value: Any) -> bool:
    if type(value) is not bool:
        raise ValueError("must be true or false")
    return value


def _dict(value: Any) -> dict:
    if not isinstance(value, dict):
        raise ValueError("must be an object")
    return value


def _list(value: Any) -> list:
    if not isinstance(value, list):
        raise ValueError("must be a list")
    return value


def _any(value: Any) -> Any:
    return value


def _versions(value: Any) -> list[int]:
    if not isinstance(value, list) or not value or any(type(v) is not int for v in value):
        raise ValueError("must be a non-empty list of integers")
    return value


def _agent(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_AGENT:
        raise ValueError(f"must be a string of at most {MAX_AGENT} characters")
    return value


def _db_name(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_DB_NAME:
        raise ValueError(f"must be a non-empty string of at most {MAX_DB_NAME} characters")
    return value


def _str_list(value: Any) -> list[str]:
    if not isinstance(value, list) or any(not isinstance(v, str) for v in value):
        raise ValueError("must be a list of strings")
    return value


def _style(value: Any) -> str:
    if value not in ("main_only", "all_docs"):
        raise ValueError('must be "main_only" or "all_docs"')
    return value


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def checker(value: Any) -> Any:
        return None if value is None else check(value)
    return checker


_REQUIRED = object()

# type -> {field: (checker, default or _REQUIRED)}
_SCHEMAS: dict[str, dict[str, tuple[Callable[[Any], Any], Any]]] = {
    "hello": {"versions": (_versions, _REQUIRED), "agent": (_optional(_agent), None)},
    "welcome": {"version": (_int, _REQUIRED), "agent": (_optional(_str), None),
                "limits": (_dict, _REQUIRED)},
    "error": {"status": (_int, _REQUIRED), "error": (_str, _REQUIRED),
              "reason": (_str, _REQUIRED), "ch": (_optional(_pos_int), None),
              "id": (_optional(_pos_int), None), "sub": (_optional(_pos_int), None),
              "fatal": (_optional(_bool), None)},
    "open": {"ch": (_pos_int, _REQUIRED), "db": (_db_name, _REQUIRED),
             "credentials": (_any, None)},
    "granted": {"ch": (_pos_int, _REQUIRED), "db": (_str, _REQUIRED),
                "uuid": (_str, _REQUIRED), "read_only": (_bool, False)},
    "denied": {"ch": (_pos_int, _REQUIRED), "status": (_int, _REQUIRED),
               "error": (_str, _REQUIRED), "reason": (_str, _REQUIRED)},
    "close": {"ch": (_pos_int, _REQUIRED)},
    "closed": {"ch": (_pos_int, _REQUIRED)},
    # op and args are checked by protocol.ops, so that a bad one gets a reply
    "call": {"ch": (_pos_int, _REQUIRED), "id": (_pos_int, _REQUIRED),
             "op": (_any, None), "args": (_any, None)},
    "reply": {"ch": (_pos_int, _REQUIRED), "id": (_pos_int, _REQUIRED),
              "ok": (_any, None), "error": (_optional(_dict), None)},
    "subscribe": {"ch": (_pos_int, _REQUIRED), "sub": (_pos_int, _REQUIRED),
                  "since": (_any, 0), "style": (_optional(_style), None),
                  "include_docs": (_optional(_bool), None),
                  "conflicts": (_optional(_bool), None),
                  "doc_ids": (_optional(_str_list), None),
                  "selector": (_optional(_dict), None),
                  "batch": (_optional(_pos_int), None)},
    "unsubscribe": {"ch": (_pos_int, _REQUIRED), "sub": (_pos_int, _REQUIRED)},
    "changes": {"ch": (_pos_int, _REQUIRED), "sub": (_pos_int, _REQUIRED),
                "results": (_optional(_list), None), "last_seq": (_any, None),
                "pending": (_optional(_int), None), "error": (_optional(_dict), None)},
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
        try:
            out[field] = check(msg[field])
        except ValueError as exc:
            raise BadMessage(f"{kind!r} field {field!r} {exc}", ch=ch, id=ref_id,
                             sub=sub) from None
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


# -- builders: the only way messages are made, so both sides agree --------------------

def hello(agent: str | None = None,
          versions: tuple[int, ...] = PROTOCOL_VERSIONS) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": "hello", "versions": list(versions)}
    if agent is not None:
        msg["agent"] = agent
    return msg


def welcome(version: int, limits: Mapping[str, Any], agent: str | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": "welcome", "version": version, "limits": dict(limits)}
    if agent is not None:
        msg["agent"] = agent
    return msg


def error(status: int, error: str, reason: str, *, ch: int | None = None,
          id: int | None = None, sub: int | None = None, fatal: bool = False) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": "error", "status": status, "error": error, "reason": reason}
    if ch is not None:
        msg["ch"] = ch
    if id is not None:
        msg["id"] = id
    if sub is not None:
        msg["sub"] = sub
    if fatal:
        msg["fatal"] = True
    return msg


def open_channel(ch: int, db: str, credentials: Any = None) -> dict[str, Any]:
    return {"type": "open", "ch": ch, "db": db, "credentials": credentials}


def granted(ch: int, db: str, uuid: str, read_only: bool = False) -> dict[str, Any]:
    return {"type": "granted", "ch": ch, "db": db, "uuid": uuid, "read_only": read_only}


def denied(ch: int, err: Mapping[str, Any]) -> dict[str, Any]:
    """``err`` is a ``{status, error, reason}`` dict (``Denied(...).to_json()``)."""
    return {"type": "denied", "ch": ch, "status": int(err.get("status", 403)),
            "error": str(err.get("error", "denied")), "reason": str(err.get("reason", ""))}


def close(ch: int) -> dict[str, Any]:
    return {"type": "close", "ch": ch}


def closed(ch: int) -> dict[str, Any]:
    return {"type": "closed", "ch": ch}


def call(ch: int, id: int, op: str, args: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "call", "ch": ch, "id": id, "op": op, "args": dict(args or {})}


def reply_ok(ch: int, id: int, result: Any) -> dict[str, Any]:
    return {"type": "reply", "ch": ch, "id": id, "ok": result}


def reply_error(ch: int, id: int, err: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "reply", "ch": ch, "id": id, "error": dict(err)}


def subscribe(ch: int, sub: int, since: Any = 0, **options: Any) -> dict[str, Any]:
    """``options``: style, include_docs, conflicts, doc_ids, selector, batch."""
    msg: dict[str, Any] = {"type": "subscribe", "ch": ch, "sub": sub, "since": since}
    msg.update((k, v) for k, v in options.items() if v is not None)
    return msg


def unsubscribe(ch: int, sub: int) -> dict[str, Any]:
    return {"type": "unsubscribe", "ch": ch, "sub": sub}


def changes(ch: int, sub: int, results: list[Any], last_seq: Any,
            pending: int | None = None) -> dict[str, Any]:
    """A batch of live changes; ``pending`` (optional) counts the changes left after it
    (0: the subscription has caught up as of this read)."""
    msg = {"type": "changes", "ch": ch, "sub": sub, "results": results, "last_seq": last_seq}
    if type(pending) is int and pending >= 0:
        msg["pending"] = pending
    return msg


def changes_error(ch: int, sub: int, err: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "changes", "ch": ch, "sub": sub, "error": dict(err)}
