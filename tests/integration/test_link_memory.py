"""The real client ``Link`` against a server that is a ``protocol.Connection(Role.SERVER)``,
over the in-memory transport (tests/memtransport.py): no sockets. The script answers
each frame as it is sent; every frame it sends goes through its server machine, so the
link meets only what a conforming server may send -- except where a test sends a raw
frame on purpose (a server that breaks the rules).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any, Callable

import pytest

from pouchsync_sync.client.link import Link
from pouchsync_sync.errors import Cancelled, Denied, NotFound, ProtocolError, TransportError
from pouchsync_sync.protocol import ChannelState, Connection, Role
from pouchsync_sync.protocol import messages as m
from tests.fault.proxy import wait_until
from tests.memtransport import MemorySocket, MemoryTransport

URL = "ws://scripted.test/"
Script = Callable[["Scripted", dict[str, Any]], None]


class Scripted:
    """One server connection: ``proto`` checks every frame; ``script(self, msg)`` answers."""

    def __init__(self, end: MemorySocket, script: Script) -> None:
        self.end = end
        self.proto = Connection(Role.SERVER)
        self.script = script
        self.held: list[dict[str, Any]] = []

    def on_frame(self, data: bytes) -> None:
        msg = self.proto.receive(data.decode("utf-8"))
        if msg["type"] == "hello":
            self.send(m.welcome(1, {"max_message_size": 1 << 20}))
            return
        self.script(self, msg)

    def send(self, msg: dict[str, Any]) -> None:
        self.end.send_text(self.proto.send(msg).encode("utf-8"))

    def raw(self, msg: dict[str, Any]) -> None:
        """A frame the server machine would refuse to send (a rule-breaking server)."""
        self.end.send_text(m.encode(msg).encode("utf-8"))


def granting(server: Scripted, msg: dict[str, Any]) -> None:
    kind = msg["type"]
    if kind == "open":
        if msg["db"] == "secret":
            server.send(m.denied(msg["ch"], {"status": 403, "error": "denied", "reason": "no"}))
        else:
            server.send(m.granted(msg["ch"], msg["db"], "u-" + msg["db"]))
    elif kind == "close":
        server.send(m.closed(msg["ch"]))
    elif kind == "call":
        if msg["op"] == "hold":
            server.held.append(msg)
        else:
            server.send(m.reply_ok(msg["ch"], msg["id"], {"op": msg["op"]}))
    elif kind == "subscribe":
        server.send(m.changes(msg["ch"], msg["sub"], [{"seq": 1, "id": "a",
                                                       "changes": [{"rev": "1-a"}]}], 1,
                              pending=0))


@pytest.fixture
def serve() -> Iterator[Callable[[Script], tuple[Link, list[Scripted]]]]:
    network = MemoryTransport()
    links: list[Link] = []

    def start(script: Script) -> tuple[Link, list[Scripted]]:
        servers: list[Scripted] = []

        def accept(end: MemorySocket, headers: list[str]) -> None:
            server = Scripted(end, script)
            servers.append(server)
            end.on_frame = server.on_frame

        network.serve(URL, accept)
        link = Link.open(URL, timeout=5, transport=network)
        links.append(link)
        return link, servers

    yield start
    for link in links:
        link.close()
    network.close()
    assert not network.errors(), network.errors()


def test_hello_grant_call_subscribe_close(serve) -> None:
    link, (server,) = serve(granting)
    assert link.version == 1 and link.max_message_size == 1 << 20
    channel = link.open_channel("todos").wait_open(5)
    assert channel.state is ChannelState.OPEN and channel.uuid == "u-todos"
    assert channel.call("info", timeout=5) == {"op": "info"}
    batch = channel.wait_changes(0, {"style": "all_docs"}, timeout=5)
    assert batch is not None and batch["last_seq"] == 1
    channel.close()
    assert server.proto.channel_state(channel.ch) is ChannelState.NONE
    assert wait_until(lambda: channel.state is ChannelState.NONE, 5)  # "closed" came back
    with pytest.raises(Cancelled):
        channel.call("info", timeout=1)
    link.close()
    assert not link._reader.is_alive()


def test_denied_channel(serve) -> None:
    link, _ = serve(granting)
    channel = link.open_channel("secret")
    with pytest.raises(Denied):
        channel.wait_open(5)
    with pytest.raises(Denied):
        channel.call("info", timeout=1)
    channel.close()  # idempotent on a denied channel


def test_close_while_opening_cancels_the_wait(serve) -> None:
    def slow_grant(server: Scripted, msg: dict[str, Any]) -> None:
        if msg["type"] == "open":
            server.held.append(msg)  # answered after the close below
        elif msg["type"] == "close":
            server.send(m.closed(msg["ch"]))

    link, (server,) = serve(slow_grant)
    channel = link.open_channel("todos")
    channel.close()
    with pytest.raises(Cancelled):
        channel.wait_open(5)
    assert server.proto.channel_state(1) is ChannelState.NONE  # it answered closed
    assert wait_until(lambda: channel.state is ChannelState.NONE, 5)
    assert channel.uuid is None


def test_late_reply_after_close_is_ignored_and_error_with_id_fails_the_call(serve) -> None:
    link, (server,) = serve(granting)
    channel = link.open_channel("todos").wait_open(5)
    errors: list[BaseException] = []
    started = threading.Event()

    def caller() -> None:
        started.set()
        try:
            channel.call("hold", timeout=10)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=caller, name="caller")
    t.start()
    assert started.wait(5)
    while not server.held:  # the call is sent on the caller's thread, answered there
        t.join(0.01)
    held = server.held.pop()
    server.send(m.error(404, "not_found", "gone", ch=held["ch"], id=held["id"]))
    t.join(5)
    assert len(errors) == 1 and isinstance(errors[0], NotFound)
    # a call the server holds, then the channel closes: its reply is ignored
    other = link.open_channel("other").wait_open(5)
    t2 = threading.Thread(target=lambda: errors.append(
        pytest.raises(Cancelled, other.call, "hold", timeout=10).value), name="caller2")
    t2.start()
    while not server.held:
        t2.join(0.01)
    held = server.held.pop()
    other.close()
    t2.join(5)
    server.raw(m.reply_ok(held["ch"], held["id"], "late"))  # after closed: dropped
    assert isinstance(errors[-1], Cancelled)
    assert channel.call("info", timeout=5) == {"op": "info"}  # the link is fine


def test_a_server_that_ends_a_channel_fails_its_calls(serve) -> None:
    link, (server,) = serve(granting)
    channel = link.open_channel("todos").wait_open(5)
    server.raw(m.closed(channel.ch))
    with pytest.raises(TransportError, match="closed by the server"):
        channel.wait_open(0)
        channel.call("info", timeout=5)


def test_rule_breaking_frames_are_logged_and_dropped(serve, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="pouchsync_sync")
    link, (server,) = serve(granting)
    channel = link.open_channel("todos").wait_open(5)
    server.raw(m.granted(channel.ch, "todos", "again"))  # granted on an open channel
    server.raw(m.reply_ok(channel.ch, 99, "never called"))
    server.raw(m.changes(channel.ch, 42, [], 0))  # a sub never made: dropped quietly
    assert channel.call("info", timeout=5) == {"op": "info"}
    broken = [r.getMessage() for r in caplog.records if "breaks the protocol" in r.getMessage()]
    assert len(broken) == 2 and channel.uuid == "u-todos"


def test_a_lost_link_fails_everything_with_transport_error(serve) -> None:
    link, (server,) = serve(granting)
    channel = link.open_channel("todos").wait_open(5)
    server.end.abort()
    assert link.lost.wait(5)
    with pytest.raises(TransportError):
        channel.call("info", timeout=1)
    with pytest.raises(TransportError):
        link.open_channel("other")
    assert channel.state is ChannelState.NONE


def test_a_move_our_side_may_not_make_is_a_protocol_error(serve) -> None:
    """A bug on the client side raises at once and sends nothing."""
    link, (server,) = serve(granting)
    channel = link.open_channel("todos").wait_open(5)
    sent = len(server.end.peer.sent)  # type: ignore[union-attr]
    with pytest.raises(ProtocolError, match="cannot send 'call' on channel 9"):
        link.send(m.call(9, 1, "info"))
    with pytest.raises(ProtocolError, match="cannot send 'hello'"):
        link.send(m.hello("again/1"))
    assert len(server.end.peer.sent) == sent  # type: ignore[union-attr]
    assert channel.call("info", timeout=5) == {"op": "info"}  # and the link goes on
