"""The constructors of protocol v1's messages: the only way messages are made, so both
sides agree (docs/protocol.md). Each returns the message as a dict, ready for
``messages.encode``; ``protocol.messages`` re-exports them (``messages.hello``, ...).
Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "PROTOCOL_VERSIONS",
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
