"""Protocol v1 state machines, paired in memory (client <-> server), no sockets."""

from __future__ import annotations

import pytest

from pouchsync_sync.errors import ProtocolError
from pouchsync_sync.protocol import (
    BadMessage,
    ChannelState,
    Connection,
    ConnState,
    choose_version,
)
from pouchsync_sync.protocol import messages as m
from pouchsync_sync.protocol.connection import CHANNEL_TRANSITIONS, Role

LIMITS = {"max_message_size": 1024, "max_channels": 10}


def pair() -> tuple[Connection, Connection]:
    """A client and a server connection that have said hello and welcome."""
    client, server = Connection("client"), Connection("server")
    hello = server.receive(client.send(m.hello("test/1")))
    assert hello["versions"] == [1]
    welcome = client.receive(server.send(m.welcome(1, LIMITS, agent="srv/1")))
    assert welcome["version"] == 1
    return client, server


def open_channel(client: Connection, server: Connection, ch: int = 1) -> None:
    server.receive(client.send(m.open_channel(ch, "todos", {"token": "t"})))
    client.receive(server.send(m.granted(ch, "todos", "uuid-1")))


def test_handshake_states_and_limits() -> None:
    client, server = Connection("client"), Connection("server")
    assert client.state is ConnState.IDLE and server.state is ConnState.AWAITING_HELLO
    server.receive(client.send(m.hello("agent-x")))
    assert client.state is ConnState.HELLO_SENT
    assert server.state is ConnState.HELLO_RECEIVED and server.peer_agent == "agent-x"
    client.receive(server.send(m.welcome(1, LIMITS, agent="srv")))
    assert client.state is ConnState.OPEN and server.state is ConnState.OPEN
    assert client.version == 1 and client.limits == LIMITS and client.peer_agent == "srv"


def test_version_refusal_closes_both_sides() -> None:
    client, server = Connection("client"), Connection("server")
    hello = server.receive(client.send(m.hello(versions=(2, 3))))
    assert choose_version(hello["versions"]) is None
    client.receive(server.send(m.error(400, "unsupported_version", "server speaks [1]", fatal=True)))
    assert client.state is ConnState.CLOSED and server.state is ConnState.CLOSED
    with pytest.raises(BadMessage):
        client.receive(m.encode(m.welcome(1, {})))


def test_choose_version_picks_highest_common() -> None:
    assert choose_version([1], (1,)) == 1
    assert choose_version([1, 2, 3], (1, 2)) == 2
    assert choose_version([4], (1, 2)) is None


def test_anything_before_hello_is_fatal_and_names_it() -> None:
    server = Connection("server")
    with pytest.raises(BadMessage) as info:
        server.receive(m.encode(m.open_channel(1, "db")))
    assert info.value.fatal and "expected a hello first" in info.value.reason
    assert "'open'" in info.value.reason


def test_client_cannot_open_before_welcome() -> None:
    client = Connection("client")
    client.send(m.hello())
    with pytest.raises(ProtocolError, match="hello_sent"):
        client.send(m.open_channel(1, "db"))


def test_second_hello_after_welcome_is_refused() -> None:
    client, server = pair()
    with pytest.raises(BadMessage):
        server.receive(m.encode(m.hello()))
    assert server.state is ConnState.OPEN


def test_open_granted_call_reply_close() -> None:
    client, server = pair()
    open_channel(client, server)
    assert client.channel_state(1) is ChannelState.OPEN
    assert server.channel_state(1) is ChannelState.OPEN
    call = server.receive(client.send(m.call(1, 7, "get", {"doc_id": "a"})))
    assert call["op"] == "get" and call["args"] == {"doc_id": "a"}
    assert server.channel(1).calls == {7}
    reply = client.receive(server.send(m.reply_ok(1, 7, {"_id": "a"})))
    assert reply["ok"] == {"_id": "a"} and "error" not in reply
    assert client.channel(1).calls == set() and server.channel(1).calls == set()
    server.receive(client.send(m.close(1)))
    assert client.channel_state(1) is ChannelState.CLOSING
    assert server.channel_state(1) is ChannelState.CLOSING
    client.receive(server.send(m.closed(1)))
    assert client.channel(1) is None and server.channel(1) is None


def test_denied_frees_the_channel_number() -> None:
    client, server = pair()
    server.receive(client.send(m.open_channel(1, "secret")))
    denied = client.receive(server.send(m.denied(1, {"status": 403, "error": "denied",
                                                     "reason": "no"})))
    assert denied["reason"] == "no"
    assert client.channel(1) is None and server.channel(1) is None
    open_channel(client, server, 1)  # reusable at once


def test_pipelined_calls_reply_out_of_order() -> None:
    client, server = pair()
    open_channel(client, server)
    for i in (1, 2, 3):
        server.receive(client.send(m.call(1, i, "info")))
    for i in (3, 1, 2):
        client.receive(server.send(m.reply_error(1, i, {"status": 404, "error": "not_found",
                                                        "reason": "missing"})))
    assert server.channel(1).calls == set()


def test_reused_call_id_in_flight_is_a_bad_message_naming_it() -> None:
    client, server = pair()
    open_channel(client, server)
    server.receive(client.send(m.call(1, 5, "info")))
    with pytest.raises(BadMessage) as info:
        server.receive(m.encode(m.call(1, 5, "info")))
    assert (info.value.ch, info.value.id) == (1, 5) and "already in flight" in info.value.reason
    with pytest.raises(ProtocolError, match="already in flight"):
        client.send(m.call(1, 5, "info"))
    client.receive(server.send(m.reply_ok(1, 5, {})))
    server.receive(client.send(m.call(1, 5, "info")))  # reusable after its reply


def test_call_on_never_opened_or_opening_channel() -> None:
    client, server = pair()
    with pytest.raises(BadMessage) as info:
        server.receive(m.encode(m.call(9, 1, "info")))
    assert info.value.ch == 9 and info.value.id == 1 and not info.value.fatal
    assert "state: none" in info.value.reason
    server.receive(client.send(m.open_channel(2, "db")))
    with pytest.raises(BadMessage, match="opening"):
        server.receive(m.encode(m.call(2, 1, "info")))
    with pytest.raises(ProtocolError, match="opening"):
        client.send(m.call(2, 1, "info"))


def test_open_twice_is_refused() -> None:
    client, server = pair()
    open_channel(client, server)
    with pytest.raises(BadMessage, match="already in use"):
        server.receive(m.encode(m.open_channel(1, "other")))
    with pytest.raises(ProtocolError, match="cannot send 'open'"):
        client.send(m.open_channel(1, "other"))


def test_close_while_opening_and_late_grant() -> None:
    client, server = pair()
    server.receive(client.send(m.open_channel(1, "db")))
    server_chan = server.channel(1)
    server_chan.context = object()
    token = server_chan.context
    # the client gives up before the grant: close crosses the grant on the wire
    close_text = client.send(m.close(1))
    assert client.channel_state(1) is ChannelState.CLOSING
    # the server answered the close first, the (late) grant is then dropped
    server.receive(close_text)
    client.receive(server.send(m.closed(1)))
    assert server.send_if_current(m.granted(1, "db", "u"), token) is None
    assert client.channel(1) is None
    # a client in CLOSING ignores a grant that was already on its way
    server.receive(client.send(m.open_channel(3, "db")))
    client.send(m.close(3))
    client.receive(server.send(m.granted(3, "db", "u")))
    assert client.channel_state(3) is ChannelState.CLOSING


def test_close_of_unknown_channel_is_answered_closed() -> None:
    client, server = pair()
    server.receive(m.encode(m.close(42)))
    assert server.channel_state(42) is ChannelState.CLOSING
    server.send(m.closed(42))
    assert server.channel(42) is None


def test_send_if_current_drops_replies_of_a_replaced_channel() -> None:
    client, server = pair()
    open_channel(client, server)
    first = object()
    server.channel(1).context = first
    server.receive(client.send(m.call(1, 1, "info")))
    server.receive(client.send(m.close(1)))
    client.receive(server.send(m.closed(1)))
    # the number is reused, with a call of the same id in flight
    server.receive(client.send(m.open_channel(1, "db")))
    second = object()
    server.channel(1).context = second
    client.receive(server.send(m.granted(1, "db", "u")))
    server.receive(client.send(m.call(1, 1, "info")))
    assert server.send_if_current(m.reply_ok(1, 1, {"old": True}), first) is None
    text = server.send_if_current(m.reply_ok(1, 1, {"new": True}), second)
    assert client.receive(text)["ok"] == {"new": True}


def test_reply_without_call_is_illegal_on_both_sides() -> None:
    client, server = pair()
    open_channel(client, server)
    with pytest.raises(ProtocolError, match="not in flight"):
        server.send(m.reply_ok(1, 99, {}))
    with pytest.raises(BadMessage, match="not in flight"):
        client.receive(m.encode(m.reply_ok(1, 99, {})))


def test_subscribe_changes_unsubscribe() -> None:
    client, server = pair()
    open_channel(client, server)
    sub = server.receive(client.send(m.subscribe(1, 3, since=5, style="all_docs",
                                                 include_docs=True)))
    assert sub["since"] == 5 and sub["include_docs"] is True and sub["doc_ids"] is None
    batch = client.receive(server.send(m.changes(1, 3, [{"seq": 6, "id": "a"}], 6)))
    assert batch["last_seq"] == 6
    with pytest.raises(BadMessage, match="already exists"):
        server.receive(m.encode(m.subscribe(1, 3)))
    server.receive(client.send(m.unsubscribe(1, 3)))
    assert server.channel(1).subs == set()
    with pytest.raises(ProtocolError, match="does not exist"):
        server.send(m.changes(1, 3, [], 7))
    # a batch already on its way after unsubscribe is accepted (the edge drops it)
    assert client.receive(m.encode(m.changes(1, 3, [], 7)))["sub"] == 3
    server.receive(client.send(m.unsubscribe(1, 3)))  # idempotent


def test_changes_error_ends_the_subscription() -> None:
    client, server = pair()
    open_channel(client, server)
    server.receive(client.send(m.subscribe(1, 1)))
    err = {"status": 503, "error": "unavailable", "reason": "down"}
    msg = client.receive(server.send(m.changes_error(1, 1, err)))
    assert msg["error"] == err and "results" not in msg
    assert client.channel(1).subs == set() and server.channel(1).subs == set()
    server.receive(client.send(m.subscribe(1, 1)))  # may subscribe again


def test_close_drops_calls_and_subscriptions() -> None:
    client, server = pair()
    open_channel(client, server)
    server.receive(client.send(m.call(1, 1, "info")))
    server.receive(client.send(m.subscribe(1, 1)))
    server.receive(client.send(m.close(1)))
    assert server.channel(1).calls == set() and server.channel(1).subs == set()
    # a reply already on its way when the client closed is accepted and ignored
    client.receive(m.encode(m.reply_ok(1, 1, {})))
    client.receive(server.send(m.closed(1)))
    assert client.channel(1) is None


def test_channels_are_independent() -> None:
    client, server = pair()
    open_channel(client, server, 1)
    open_channel(client, server, 2)
    server.receive(client.send(m.call(1, 1, "info")))
    server.receive(client.send(m.call(2, 1, "info")))
    server.receive(client.send(m.close(1)))
    client.receive(server.send(m.closed(1)))
    client.receive(server.send(m.reply_ok(2, 1, {})))
    assert [c.ch for c in server.channels()] == [2]


def test_server_cannot_send_client_messages_and_vice_versa() -> None:
    client, server = pair()
    with pytest.raises(BadMessage, match="does not send 'open'"):
        server.send(m.open_channel(1, "db"))
    with pytest.raises(BadMessage, match="does not send 'granted'"):
        server.receive(m.encode(m.granted(1, "db", "u")))


def test_mark_closed_refuses_everything() -> None:
    client, server = pair()
    open_channel(client, server)
    server.mark_closed()
    assert server.channels() == []
    with pytest.raises(BadMessage):
        server.receive(m.encode(m.close(1)))


def test_transition_table_only_names_known_types() -> None:
    for role, _state, direction, kind in CHANNEL_TRANSITIONS:
        sender = role.value if direction == "send" else ("server" if role is Role.CLIENT else "client")
        allowed = m.CLIENT_TYPES if sender == "client" else m.SERVER_TYPES
        assert kind in allowed, (role, direction, kind)
