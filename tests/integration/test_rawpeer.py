"""The raw test peer (``tests/rawpeer.py``) reads results by one rule: these tests pin it
against a scripted WebSocket server on 127.0.0.1 that writes exactly the bytes a test
gives it (frames a real server would not send on cue: a close without a code, half a
frame, bytes after a close frame) and reports what the peer sent back."""

from __future__ import annotations

import queue
import socket
import threading
from typing import Any

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Ping, Pong, Request, TextMessage

from tests.rawpeer import BINARY, CLOSE, PING, TEXT, RawPeer

WAIT = 10.0


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    """One unmasked server frame (payloads under 126 bytes)."""
    assert len(payload) < 126
    return bytes([(0x80 if fin else 0) | opcode, len(payload)]) + payload


class Scripted:
    """One connection: answers the upgrade, then writes each chunk given to ``write``;
    ``finish()`` half-closes, reads what the peer sent until it closes, and returns
    those events (as wsproto's server side parses them)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(WAIT)
        self.url = f"ws://127.0.0.1:{self.listener.getsockname()[1]}/path"
        self.chunks: queue.Queue[bytes | None] = queue.Queue()
        self.events: list[Any] = []
        self.target = ""
        self.thread = threading.Thread(target=self._run, name="pouchsync-test-scripted")
        self.thread.start()

    def _run(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(WAIT)
            ws = WSConnection(ConnectionType.SERVER)
            while not self.target:
                ws.receive_data(conn.recv(65536))
                for event in ws.events():
                    if isinstance(event, Request):
                        self.target = event.target
            conn.sendall(ws.send(AcceptConnection()))
            while (chunk := self.chunks.get(timeout=WAIT)) is not None:
                conn.sendall(chunk)
            conn.shutdown(socket.SHUT_WR)
            while data := conn.recv(65536):
                ws.receive_data(data)
                self.events.extend(ws.events())

    def write(self, data: bytes) -> None:
        self.chunks.put(data)

    def finish(self) -> None:
        self.chunks.put(None)

    def sent_back(self) -> list[Any]:
        self.thread.join(WAIT)
        assert not self.thread.is_alive()
        self.listener.close()
        return self.events


@pytest.fixture
def scripted():
    made: list[Scripted] = []

    def make() -> Scripted:
        made.append(Scripted())
        return made[-1]

    yield make
    for server in made:
        server.finish()
        server.thread.join(WAIT)
        server.listener.close()


def test_a_close_frame_is_answered_sticky_and_nothing_after_it_is_read(scripted) -> None:
    server = scripted()
    peer = RawPeer(server.url, hello=False)
    server.write(frame(TEXT, b'{"a": 1}') + frame(CLOSE, (1008).to_bytes(2, "big") + b"bye")
                 + b"HTTP/1.1 400 Bad request\r\n")
    server.finish()
    assert peer.recv() == {"a": 1}
    assert peer.recv() == ("close", 1008) and peer.closed == ("close", 1008)
    assert (peer.close_code, peer.close_reason) == (1008, "bye")
    assert peer.recv() == ("close", 1008)  # sticky
    peer.sock.settimeout(WAIT)
    assert peer.sock.recv(100) == b"HTTP/1.1 400 Bad request\r\n"  # left in the socket
    peer.close()
    closes = [e for e in server.sent_back() if isinstance(e, CloseConnection)]
    assert [c.code for c in closes] == [1008]  # the close was answered, once
    assert server.target == "/path"


def test_a_close_without_a_code_and_a_socket_without_a_close(scripted) -> None:
    server = scripted()
    peer = RawPeer(server.url, hello=False)
    server.write(frame(CLOSE))
    assert peer.until(lambda m: False) == (("close", None), [])
    assert peer.close_code is None
    peer.close()
    server = scripted()
    peer = RawPeer(server.url, hello=False)
    server.write(frame(TEXT, b'{"a": 1}') + frame(TEXT, b'{"b"')[:4])  # then FIN mid-frame
    server.finish()
    assert peer.expect_close() == [{"a": 1}]
    assert peer.closed == ("gone", None) and peer.close_code is None
    peer.close()


def test_pings_are_answered_binary_and_pongs_skipped_fragments_joined(scripted) -> None:
    server = scripted()
    peer = RawPeer(server.url, hello=False)
    server.write(frame(PING, b"hi") + frame(BINARY, b"\x00") + frame(0xA, b"pong")
                 + frame(TEXT, b'{"par', fin=False) + frame(PING, b"mid")
                 + frame(0x0, b't": 2}'))
    assert peer.recv() == {"part": 2}
    assert peer.ping(b"mine")
    server.finish()
    assert peer.recv() == ("gone", None)
    peer.close()
    events = server.sent_back()
    assert [e.payload for e in events if isinstance(e, Pong)] == [b"hi", b"mid"]
    assert [e.payload for e in events if isinstance(e, Ping)] == [b"mine"]


def test_a_read_that_times_out_mid_frame_keeps_what_came(scripted) -> None:
    server = scripted()
    peer = RawPeer(server.url, hello=False)
    whole = frame(TEXT, b'{"n": 1}')
    server.write(whole[:5])
    with pytest.raises(TimeoutError):
        peer.recv(timeout=0.2)
    server.write(whole[5:])
    assert peer.recv() == {"n": 1}
    peer.close()


def test_expect_keeps_what_it_skips_until_consumes_it(scripted) -> None:
    server = scripted()
    peer = RawPeer(server.url, hello=False)
    server.write(b"".join(frame(TEXT, b'{"id": %d}' % i) for i in (1, 2, 3, 4)))
    assert peer.expect(id=3) == {"id": 3}
    assert peer.pending == [{"id": 1}, {"id": 2}]
    assert peer.expect(id=2) == {"id": 2} and peer.pending == [{"id": 1}]
    assert peer.until(lambda m: m["id"] == 4) == ({"id": 4}, [{"id": 1}])
    assert peer.pending == []
    server.finish()
    with pytest.raises(AssertionError, match="gone"):
        peer.expect(id=5)
    peer.close()


def test_frames_the_peer_writes(scripted) -> None:
    server = scripted()
    peer = RawPeer(server.url, hello=False)
    assert peer.send({"type": "x"}) and peer.send("plain")
    assert peer.send(b"\xff\xfe", opcode=TEXT)  # invalid UTF-8: the server's wsproto refuses it
    server.finish()
    assert peer.recv() == ("gone", None)
    peer.close()
    events = server.sent_back()
    texts = [e.data for e in events if isinstance(e, TextMessage)]
    assert texts == ['{"type": "x"}', "plain"]
    assert isinstance(events[-1], CloseConnection) and events[-1].code == 1007
