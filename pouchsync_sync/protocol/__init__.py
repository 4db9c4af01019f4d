"""Wire protocol v1, sans-IO: messages, operations, state machines (docs/protocol.md).

Used by both the client (``pouchsync_sync.client``) and the server
(``pouchsync_sync.server``); no sockets, threads or clocks here. Modules: ``messages``
(envelopes: validate, encode, decode; re-exports ``builders``' constructors), ``ops``
(the calls and their arguments; re-exports ``replies``' result handling), ``fields``
(the checkers both use), ``connection`` (the state machine).
"""

from __future__ import annotations

from . import messages, ops
from .connection import ChannelRecord, ChannelState, Connection, ConnState, Role
from .messages import PROTOCOL_VERSIONS, BadMessage, choose_version, decode, encode, validate
from .ops import OPS, WRITE_OPS, decode_result, encode_result, validate_call

__all__ = [
    "PROTOCOL_VERSIONS",
    "OPS",
    "WRITE_OPS",
    "BadMessage",
    "ChannelRecord",
    "ChannelState",
    "ConnState",
    "Connection",
    "Role",
    "choose_version",
    "decode",
    "decode_result",
    "encode",
    "encode_result",
    "messages",
    "ops",
    "validate",
    "validate_call",
]
