"""Every transition of docs/protocol.md §7, walked by a client machine and a server
machine talking to each other in memory (as h11 tests itself): each frame one side
sends is the frame the other receives. A last test fails when a row of
``CONNECTION_TRANSITIONS`` or ``CHANNEL_TRANSITIONS`` is never applied by these walks.
(tests/integration/test_link_memory.py plays the real client ``Link`` against a
server machine the same way, over the in-memory transport.)
"""

from __future__ import annotations

from typing import Any, Callable

import pytest

from pouchsync_sync import jsoncodec
from pouchsync_sync.protocol import BadMessage, ChannelState, Connection, ConnState, Role
from pouchsync_sync.protocol import messages as m
from pouchsync_sync.protocol.connection import CHANNEL_TRANSITIONS, CONNECTION_TRANSITIONS

LIMITS = {"max_message_size": 1024}
CH = ChannelState
Key = tuple[Role, Any, str, str]


class Wire:
    """A client and a server machine, and the table keys their moves applied."""

    def __init__(self) -> None:
        self.client = Connection(Role.CLIENT)
        self.server = Connection(Role.SERVER)
        self.applied: set[Key] = set()

    @staticmethod
    def _key(conn: Connection, msg: dict[str, Any], direction: str) -> Key:
        kind = msg["type"]
        if conn.state is not ConnState.OPEN or kind in ("hello", "welcome", "error"):
            return (conn.role, conn.state, direction, kind)
        return (conn.role, conn.channel_state(msg["ch"]), direction, kind)

    def send(self, conn: Connection, msg: dict[str, Any]) -> str:
        key = self._key(conn, msg, "send")
        text = conn.send(msg)
        self.applied.add(key)
        return text

    def receive(self, conn: Connection, text: str) -> dict[str, Any]:
        key = self._key(conn, jsoncodec.loads(text), "recv")
        msg = conn.receive(text)
        self.applied.add(key)
        return msg

    def c2s(self, msg: dict[str, Any]) -> dict[str, Any]:
        return self.receive(self.server, self.send(self.client, msg))

    def s2c(self, msg: dict[str, Any]) -> dict[str, Any]:
        return self.receive(self.client, self.send(self.server, msg))

    def hello(self) -> None:
        self.c2s(m.hello("test/1"))
        self.s2c(m.welcome(1, LIMITS))
        assert self.client.state is ConnState.OPEN and self.server.state is ConnState.OPEN

    def opened(self, ch: int = 1) -> None:
        self.c2s(m.open_channel(ch, "todos"))
        self.s2c(m.granted(ch, "todos", "u"))
        assert self.client.channel_state(ch) is CH.OPEN
        assert self.server.channel_state(ch) is CH.OPEN

    def both(self, ch: int) -> tuple[ChannelState, ChannelState]:
        return self.client.channel_state(ch), self.server.channel_state(ch)


# -- the walks: each a function of a fresh Wire ---------------------------------------

def walk_handshake(w: Wire) -> None:
    w.hello()
    w.s2c(m.error(500, "oops", "a connection-level error, the connection goes on"))
    assert w.client.state is ConnState.OPEN and w.server.state is ConnState.OPEN


def walk_handshake_refused(w: Wire) -> None:
    w.c2s(m.hello(versions=(9,)))
    w.s2c(m.error(400, "unsupported_version", "server speaks [1]", fatal=True))
    assert w.client.state is ConnState.CLOSED and w.server.state is ConnState.CLOSED


def walk_first_frame_not_hello(w: Wire) -> None:
    with pytest.raises(BadMessage, match="hello first"):
        w.receive(w.server, m.encode(m.open_channel(1, "todos")))
    w.send(w.server, m.error(400, "bad_request", "expected a hello first", fatal=True))
    assert w.server.state is ConnState.CLOSED


def walk_grant_call_subscribe_close(w: Wire) -> None:
    w.hello()
    w.opened()
    w.c2s(m.call(1, 1, "info"))
    w.s2c(m.reply_ok(1, 1, {"db_name": "todos"}))
    w.c2s(m.subscribe(1, 1, 0))
    w.s2c(m.changes(1, 1, [], 0, pending=0))
    w.c2s(m.unsubscribe(1, 1))
    w.c2s(m.close(1))
    assert w.both(1) == (CH.CLOSING, CH.CLOSING)
    w.s2c(m.closed(1))
    assert w.both(1) == (CH.NONE, CH.NONE)


def walk_denied(w: Wire) -> None:
    w.hello()
    w.c2s(m.open_channel(1, "secret"))
    w.s2c(m.denied(1, {"status": 403, "error": "denied", "reason": "no"}))
    assert w.both(1) == (CH.NONE, CH.NONE)


def walk_close_while_opening(w: Wire) -> None:
    w.hello()
    w.c2s(m.open_channel(1, "todos"))
    w.c2s(m.close(1))  # before any answer: the server answers closed, no grant
    w.s2c(m.closed(1))
    assert w.both(1) == (CH.NONE, CH.NONE)


def walk_grant_crosses_close(w: Wire) -> None:
    w.hello()
    w.receive(w.server, w.send(w.client, m.open_channel(1, "todos")))
    granted = w.send(w.server, m.granted(1, "todos", "u"))
    close = w.send(w.client, m.close(1))
    w.receive(w.client, granted)  # ignored by a closing client
    w.receive(w.server, close)
    w.s2c(m.closed(1))
    assert w.both(1) == (CH.NONE, CH.NONE)


def walk_denial_crosses_close(w: Wire) -> None:
    w.hello()
    w.c2s(m.open_channel(1, "todos"))
    denied = w.send(w.server, m.denied(1, {"status": 503, "error": "shutting_down",
                                           "reason": "bye"}))
    close = w.send(w.client, m.close(1))
    w.receive(w.client, denied)
    assert w.server.channel_state(1) is CH.NONE
    w.receive(w.server, close)  # a close for a channel the server forgot: closed anyway
    w.s2c(m.closed(1))
    assert w.both(1) == (CH.NONE, CH.NONE)


def walk_reply_and_changes_cross_close(w: Wire) -> None:
    w.hello()
    w.opened()
    w.c2s(m.call(1, 1, "changes", {"feed": "longpoll"}))
    w.c2s(m.subscribe(1, 2, 0))
    reply = w.send(w.server, m.reply_ok(1, 1, {"results": []}))
    changes = w.send(w.server, m.changes(1, 2, [], 0, pending=0))
    close = w.send(w.client, m.close(1))
    w.receive(w.client, reply)  # late: accepted and ignored
    w.receive(w.client, changes)
    w.receive(w.server, close)
    w.s2c(m.closed(1))
    assert w.both(1) == (CH.NONE, CH.NONE)


def walk_server_ends_channels(w: Wire) -> None:
    """A server that ends a channel on its own (the client accepts ``closed`` for an
    opening or open channel; the server's table never sends it: a raw frame here)."""
    w.hello()
    w.opened(1)
    w.receive(w.client, m.encode(m.closed(1)))
    w.c2s(m.open_channel(2, "todos"))
    w.receive(w.client, m.encode(m.closed(2)))
    assert w.client.channel_state(1) is CH.NONE and w.client.channel_state(2) is CH.NONE


WALKS: list[Callable[[Wire], None]] = [
    walk_handshake, walk_handshake_refused, walk_first_frame_not_hello,
    walk_grant_call_subscribe_close, walk_denied, walk_close_while_opening,
    walk_grant_crosses_close, walk_denial_crosses_close, walk_reply_and_changes_cross_close,
    walk_server_ends_channels,
]


@pytest.mark.parametrize("walk", WALKS, ids=[w.__name__ for w in WALKS])
def test_walk(walk: Callable[[Wire], None]) -> None:
    walk(Wire())


def test_an_error_about_a_call_ends_that_call_on_the_client() -> None:
    w = Wire()
    w.hello()
    w.opened()
    w.send(w.client, m.call(1, 7, "info"))  # lost on its way, say: the server refuses it
    w.receive(w.client, w.send(w.server, m.error(400, "bad_request", "no", ch=1, id=7)))
    assert w.client.channel(1).calls == set()  # type: ignore[union-attr]


def test_every_table_row_is_walked() -> None:
    applied: set[Key] = set()
    for walk in WALKS:
        w = Wire()
        walk(w)
        applied |= w.applied
    rows = set(CONNECTION_TRANSITIONS) | set(CHANNEL_TRANSITIONS)
    missing = sorted(rows - applied, key=repr)
    assert not missing, f"rows no walk applies: {missing}"
