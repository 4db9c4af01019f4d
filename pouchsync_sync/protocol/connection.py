"""Connection and channel state machines of protocol v1, as transition tables.

Theory of operation (docs/protocol.md §7): a ``Connection`` is one side (client or
server) of one WebSocket. ``send(msg)`` checks that this side may send ``msg`` now,
moves the states and returns the frame's text; ``receive(text)`` decodes a frame from
the peer, checks it the same way and returns the validated message. Like h11 and
wsproto it does no I/O: the edge (``client/``, ``server/``) owns the socket, and calls
these under its per-connection lock so that the state and the order of frames agree.

An illegal move raises ``ProtocolError`` naming the state and the message. When it is
the *peer* that broke the rules (``receive``), the error is a ``BadMessage`` carrying
the answer to send and the ``ch``/``id``/``sub`` concerned; when it is this side
(``send``), it is a plain ``ProtocolError``: a bug in the caller.

Every channel record carries a ``context`` slot for the edge's own object, so the
edge can tell a channel from a later one reusing its number (``send_if_current``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, NoReturn, TypeVar, overload

from ..errors import ProtocolError
from . import messages as m
from .messages import BadMessage

__all__ = [
    "Role",
    "ConnState",
    "ChannelState",
    "ChannelRecord",
    "Connection",
    "CONNECTION_TRANSITIONS",
    "CHANNEL_TRANSITIONS",
]


class Role(str, enum.Enum):
    CLIENT = "client"
    SERVER = "server"


class ConnState(str, enum.Enum):
    IDLE = "idle"                       # client, before its hello
    HELLO_SENT = "hello_sent"           # client, waiting for the welcome
    AWAITING_HELLO = "awaiting_hello"   # server, before the hello
    HELLO_RECEIVED = "hello_received"   # server, before its welcome
    OPEN = "open"
    CLOSED = "closed"


class ChannelState(str, enum.Enum):
    NONE = "none"
    OPENING = "opening"
    OPEN = "open"
    CLOSING = "closing"


SEND, RECV = "send", "recv"
C, S = Role.CLIENT, Role.SERVER
CS = ConnState
CH = ChannelState

#: (role, state, direction, message type) -> next connection state
CONNECTION_TRANSITIONS: dict[tuple[Role, ConnState, str, str], ConnState] = {
    (C, CS.IDLE, SEND, "hello"): CS.HELLO_SENT,
    (C, CS.HELLO_SENT, RECV, "welcome"): CS.OPEN,
    (C, CS.HELLO_SENT, RECV, "error"): CS.CLOSED,
    (C, CS.OPEN, RECV, "error"): CS.OPEN,
    (S, CS.AWAITING_HELLO, RECV, "hello"): CS.HELLO_RECEIVED,
    (S, CS.AWAITING_HELLO, SEND, "error"): CS.CLOSED,
    (S, CS.HELLO_RECEIVED, SEND, "welcome"): CS.OPEN,
    (S, CS.HELLO_RECEIVED, SEND, "error"): CS.CLOSED,
    (S, CS.OPEN, SEND, "error"): CS.OPEN,
}

#: (role, channel state, direction, message type) -> next channel state; only in an
#: open connection. Messages absent here are illegal in that state.
CHANNEL_TRANSITIONS: dict[tuple[Role, ChannelState, str, str], ChannelState] = {
    # client
    (C, CH.NONE, SEND, "open"): CH.OPENING,
    (C, CH.OPENING, RECV, "granted"): CH.OPEN,
    (C, CH.OPENING, RECV, "denied"): CH.NONE,
    (C, CH.OPENING, SEND, "close"): CH.CLOSING,
    (C, CH.OPEN, SEND, "close"): CH.CLOSING,
    (C, CH.OPEN, SEND, "call"): CH.OPEN,
    (C, CH.OPEN, SEND, "subscribe"): CH.OPEN,
    (C, CH.OPEN, SEND, "unsubscribe"): CH.OPEN,
    (C, CH.OPEN, RECV, "reply"): CH.OPEN,
    (C, CH.OPEN, RECV, "changes"): CH.OPEN,
    (C, CH.CLOSING, RECV, "granted"): CH.CLOSING,
    (C, CH.CLOSING, RECV, "denied"): CH.CLOSING,
    (C, CH.CLOSING, RECV, "reply"): CH.CLOSING,
    (C, CH.CLOSING, RECV, "changes"): CH.CLOSING,
    (C, CH.CLOSING, RECV, "closed"): CH.NONE,
    (C, CH.OPENING, RECV, "closed"): CH.NONE,  # the server ended it on its own
    (C, CH.OPEN, RECV, "closed"): CH.NONE,
    # server
    (S, CH.NONE, RECV, "open"): CH.OPENING,
    (S, CH.OPENING, SEND, "granted"): CH.OPEN,
    (S, CH.OPENING, SEND, "denied"): CH.NONE,
    (S, CH.NONE, RECV, "close"): CH.CLOSING,
    (S, CH.OPENING, RECV, "close"): CH.CLOSING,
    (S, CH.OPEN, RECV, "close"): CH.CLOSING,
    (S, CH.CLOSING, SEND, "closed"): CH.NONE,
    (S, CH.OPEN, RECV, "call"): CH.OPEN,
    (S, CH.OPEN, RECV, "subscribe"): CH.OPEN,
    (S, CH.OPEN, RECV, "unsubscribe"): CH.OPEN,
    (S, CH.OPEN, SEND, "reply"): CH.OPEN,
    (S, CH.OPEN, SEND, "changes"): CH.OPEN,
}

_CONNECTION_TYPES = frozenset({"hello", "welcome"})
_Frame = TypeVar("_Frame", str, bytes)


class ChannelRecord:
    """One channel's protocol state: calls in flight and subscriptions by id."""

    __slots__ = ("ch", "state", "calls", "subs", "context")

    def __init__(self, ch: int) -> None:
        self.ch = ch
        self.state = ChannelState.NONE
        self.calls: set[int] = set()
        self.subs: set[int] = set()
        #: the edge's own object for this channel (not used here)
        self.context: Any = None

    def __repr__(self) -> str:
        return (f"<ChannelRecord {self.ch} {self.state.value} calls={len(self.calls)} "
                f"subs={len(self.subs)}>")


class Connection:
    """One side of one WebSocket. Not thread-safe: the edge calls it under one lock."""

    def __init__(self, role: Role | str) -> None:
        self.role = Role(role)
        self.state = ConnState.IDLE if self.role is Role.CLIENT else ConnState.AWAITING_HELLO
        self.version: int | None = None
        self.limits: dict[str, Any] = {}
        self.peer_agent: str | None = None
        self._channels: dict[int, ChannelRecord] = {}
        self._peer = "server" if self.role is Role.CLIENT else "client"

    # -- queries ------------------------------------------------------------------------
    def channel(self, ch: int) -> ChannelRecord | None:
        return self._channels.get(ch)

    def channel_state(self, ch: int) -> ChannelState:
        chan = self._channels.get(ch)
        return chan.state if chan is not None else ChannelState.NONE

    def channels(self) -> list[ChannelRecord]:
        return list(self._channels.values())

    def __repr__(self) -> str:
        return f"<Connection {self.role.value} {self.state.value} channels={len(self._channels)}>"

    # -- the two entry points -----------------------------------------------------------
    @overload
    def send(self, msg: Mapping[str, Any], encoded: None = None) -> str: ...

    @overload
    def send(self, msg: Mapping[str, Any], encoded: _Frame) -> _Frame: ...

    def send(self, msg: Mapping[str, Any], encoded: str | bytes | None = None) -> str | bytes:
        """Check and record that this side sends ``msg``; return the frame text.

        ``encoded``: ``encode(msg)`` (or ``encode_bytes``) made beforehand (outside the
        edge's lock): returned as it is.
        """
        m.validate(msg, sender=self.role.value)
        self._apply(msg, SEND)
        return encoded if encoded is not None else m.encode(msg)

    def send_if_current(self, msg: dict[str, Any], context: Any,
                        encoded: str | None = None) -> str | None:
        """``send`` for a message about a channel whose edge object is ``context``.

        Returns ``None`` (and changes nothing) when that channel is gone or was
        replaced, or the call / subscription the message answers is gone: a late
        reply to a closed channel is dropped, never sent to a channel reusing its
        number.
        """
        chan = self._channels.get(msg["ch"])
        if chan is None or chan.context is not context:
            return None
        kind = msg["type"]
        if kind == "reply" and (chan.state is not ChannelState.OPEN or msg["id"] not in chan.calls):
            return None
        if kind == "changes" and (chan.state is not ChannelState.OPEN
                                  or msg["sub"] not in chan.subs):
            return None
        if kind in ("granted", "denied") and chan.state is not ChannelState.OPENING:
            return None
        return self.send(msg, encoded)

    def receive(self, text: str | bytes,
                decoded: dict[str, Any] | None = None) -> dict[str, Any]:
        """Decode, check and record a frame from the peer; the validated message.

        ``decoded``: the message ``decode_payload(text)`` validated beforehand (outside
        the edge's lock; a client receives UTF-8 bytes).
        Raises ``BadMessage`` (what to answer is on it) when the peer broke the rules.
        """
        if self.state is ConnState.CLOSED:
            raise BadMessage("the connection is closed", fatal=True)
        msg = decoded if decoded is not None else m.decode(text, sender=self._peer)
        try:
            self._apply(msg, RECV)
        except BadMessage:
            raise
        except ProtocolError as exc:
            raise BadMessage(str(exc), ch=msg.get("ch"),
                             id=msg.get("id") if msg["type"] == "call" else None,
                             sub=(msg.get("sub") if msg["type"] in ("subscribe", "unsubscribe")
                                  else None),
                             fatal=self.state is not ConnState.OPEN) from None
        return msg

    def mark_closed(self) -> None:
        """The socket is gone: forget every channel; any further message is illegal."""
        self.state = ConnState.CLOSED
        self._channels.clear()

    # -- transitions --------------------------------------------------------------------
    def _apply(self, msg: Mapping[str, Any], direction: str) -> None:
        kind = msg["type"]
        if self.state is not ConnState.OPEN or kind in _CONNECTION_TYPES or kind == "error":
            self._apply_connection(msg, direction)
            return
        self._apply_channel(msg, direction)

    def _apply_connection(self, msg: Mapping[str, Any], direction: str) -> None:
        kind = msg["type"]
        key = (self.role, self.state, direction, kind)
        nxt = CONNECTION_TRANSITIONS.get(key)
        if nxt is None:
            verb = "send" if direction == SEND else "receive"
            if direction == RECV and self.state in (ConnState.AWAITING_HELLO,
                                                     ConnState.HELLO_RECEIVED):
                raise BadMessage(f"expected a hello first, got {kind!r}", fatal=True)
            raise ProtocolError(f"{self.role.value} cannot {verb} {kind!r} "
                                f"in connection state {self.state.value!r}")
        if kind == "welcome":
            self.version = msg["version"]
            self.limits = dict(msg["limits"])
            if direction == RECV:
                self.peer_agent = msg.get("agent")
        elif kind == "hello" and direction == RECV:
            self.peer_agent = msg.get("agent")
        elif kind == "error" and direction == RECV and msg.get("id") is not None:
            chan = self._channels.get(msg.get("ch"))  # type: ignore[arg-type]
            if chan is not None:  # the server refused that call: no reply will come
                chan.calls.discard(msg["id"])
        self.state = nxt

    def _apply_channel(self, msg: Mapping[str, Any], direction: str) -> None:
        kind, ch = msg["type"], msg["ch"]
        chan = self._channels.get(ch)
        state = chan.state if chan is not None else ChannelState.NONE
        nxt = CHANNEL_TRANSITIONS.get((self.role, state, direction, kind))
        if nxt is None:
            self._illegal(kind, ch, state, direction, msg)
        if chan is None:
            chan = ChannelRecord(ch)
        self._track(chan, msg, direction)
        chan.state = nxt
        if nxt is ChannelState.NONE:
            self._channels.pop(ch, None)
        else:
            self._channels[ch] = chan

    def _illegal(self, kind: str, ch: int, state: ChannelState, direction: str,
                 msg: Mapping[str, Any]) -> NoReturn:
        if direction == SEND:
            raise ProtocolError(f"{self.role.value} cannot send {kind!r} on channel {ch} "
                                f"in state {state.value!r}")
        if kind == "open":
            reason = f"channel {ch} is already in use (state: {state.value})"
        elif state is ChannelState.NONE or state is ChannelState.OPENING:
            reason = f"channel {ch} is not open (state: {state.value}), cannot {kind!r}"
        else:
            reason = f"{self._peer} cannot send {kind!r} on channel {ch} in state {state.value!r}"
        raise BadMessage(reason, ch=ch, id=msg.get("id") if kind == "call" else None,
                         sub=msg.get("sub") if kind in ("subscribe", "unsubscribe") else None)

    def _track(self, chan: ChannelRecord, msg: Mapping[str, Any], direction: str) -> None:
        """Calls in flight and subscriptions; raises before any state is changed."""
        kind = msg["type"]
        if kind == "call":
            call_id = msg["id"]
            if call_id in chan.calls:
                if direction == SEND:
                    raise ProtocolError(
                        f"call id {call_id} is already in flight on channel {chan.ch}")
                raise BadMessage(f"call id {call_id} is already in flight on channel {chan.ch}",
                                 ch=chan.ch, id=call_id)
            chan.calls.add(call_id)
        elif kind == "reply":
            call_id = msg["id"]
            if call_id in chan.calls:
                chan.calls.discard(call_id)
            elif chan.state is not ChannelState.CLOSING:
                raise ProtocolError(f"reply to call {call_id}, which is not in flight on "
                                    f"channel {chan.ch} (state {chan.state.value!r})")
        elif kind == "subscribe":
            sub = msg["sub"]
            if sub in chan.subs:
                if direction == SEND:
                    raise ProtocolError(f"subscription {sub} already exists on channel {chan.ch}")
                raise BadMessage(f"subscription {sub} already exists on channel {chan.ch}",
                                 ch=chan.ch, sub=sub)
            chan.subs.add(sub)
        elif kind == "unsubscribe":
            chan.subs.discard(msg["sub"])
        elif kind == "changes":
            sub = msg["sub"]
            if direction == SEND and sub not in chan.subs:
                raise ProtocolError(f"changes for subscription {sub}, which does not exist "
                                    f"on channel {chan.ch}")
            if "error" in msg:
                chan.subs.discard(sub)
            # a client may receive changes for a sub it just unsubscribed: the edge drops them
        elif kind in ("close", "closed", "denied"):
            chan.calls.clear()
            chan.subs.clear()
