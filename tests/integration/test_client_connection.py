"""The client's transport against a scripted websocket server of the test's own.

The fake server speaks RFC 6455 by hand over a real socket on 127.0.0.1, so a test
controls every frame: replies out of order, silence (no pongs), a handshake that never
comes. The real server is exercised in test_sync*.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import struct
import threading
from typing import Any, Callable

import pytest

from pouchsync_sync import signals
from pouchsync_sync.client import Client
from pouchsync_sync.client.link import Link
from pouchsync_sync.errors import (
    Cancelled,
    Conflict,
    Denied,
    NotFound,
    Timeout,
    TransportError,
)

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WELCOME = {"type": "welcome", "version": 1, "limits": {"max_message_size": 1 << 20}}


class Peer:
    """One accepted socket, server side, frame by frame."""

    def __init__(self, sock: socket.socket, stop: threading.Event) -> None:
        self.sock = sock
        self.buf = b""
        self.stop = stop  # set when the fake server closes: a hung script ends

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("peer closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def handshake(self) -> None:
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("peer closed during handshake")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:"))
        accept = base64.b64encode(hashlib.sha1(key + GUID.encode()).digest())
        self.sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")

    def recv_frame(self) -> tuple[int, bytes]:
        b1, b2 = self._read(2)
        opcode, length = b1 & 0x0F, b2 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read(8))
        mask = self._read(4) if b2 & 0x80 else b"\0\0\0\0"
        data = bytes(c ^ mask[i % 4] for i, c in enumerate(self._read(length)))
        return opcode, data

    def recv(self) -> dict[str, Any]:
        """The next text message (pings answered, pongs skipped)."""
        while True:
            opcode, data = self.recv_frame()
            if opcode == 1:
                return json.loads(data)
            if opcode == 9:
                self.send_frame(10, data)
            elif opcode == 8:
                self.send_frame(8, data[:2])  # echo the close, as a server does
                raise ConnectionError("close frame")

    def send_frame(self, opcode: int, data: bytes) -> None:
        header = bytes([0x80 | opcode])
        if len(data) < 126:
            header += bytes([len(data)])
        elif len(data) < 65536:
            header += bytes([126]) + struct.pack("!H", len(data))
        else:
            header += bytes([127]) + struct.pack("!Q", len(data))
        self.sock.sendall(header + data)

    def send(self, msg: dict[str, Any]) -> None:
        self.send_frame(1, json.dumps(msg).encode())

    def welcome(self) -> dict[str, Any]:
        self.handshake()
        hello = self.recv()
        assert hello["type"] == "hello" and 1 in hello["versions"]
        self.send(WELCOME)
        return hello


class FakeServer:
    """Accepts connections and runs ``script(peer)`` for each on its own thread."""

    def __init__(self, script: Callable[[Peer], None]) -> None:
        self.script = script
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"ws://127.0.0.1:{self.listener.getsockname()[1]}/"
        self.peers: list[Peer] = []
        self.accepted = threading.Semaphore(0)
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="pouchsync-test-fake",
                                        daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            peer = Peer(sock, self._stop)
            self.peers.append(peer)
            self.accepted.release()
            thread = threading.Thread(target=self._serve, args=(peer,),
                                      name="pouchsync-test-fake-peer", daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, peer: Peer) -> None:
        try:
            self.script(peer)
        except (ConnectionError, OSError):
            pass
        except BaseException as exc:  # noqa: BLE001 - reported by close()
            self.errors.append(exc)
        finally:
            try:
                peer.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        self.listener.close()
        for peer in self.peers:
            try:
                peer.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            peer.sock.close()
        self._thread.join(5)
        for thread in self.threads:
            thread.join(5)
        assert not self.errors, self.errors


@pytest.fixture
def fake_server():
    servers: list[FakeServer] = []

    def start(script: Callable[[Peer], None]) -> FakeServer:
        server = FakeServer(script)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def granting(peer: Peer, on_call: Callable[[Peer, dict], None] | None = None) -> None:
    """Welcome, grant every open, answer each call with ``on_call`` (default: echo)."""
    peer.welcome()
    while True:
        msg = peer.recv()
        if msg["type"] == "open":
            if msg["db"] == "secret":
                peer.send({"type": "denied", "ch": msg["ch"], "status": 403,
                           "error": "denied", "reason": "no way"})
            else:
                peer.send({"type": "granted", "ch": msg["ch"], "db": msg["db"],
                           "uuid": "u-" + msg["db"], "read_only": False})
        elif msg["type"] == "close":
            peer.send({"type": "closed", "ch": msg["ch"]})
        elif msg["type"] == "call":
            if on_call is None:
                peer.send({"type": "reply", "ch": msg["ch"], "id": msg["id"],
                           "ok": {"op": msg["op"], "args": msg["args"]}})
            else:
                on_call(peer, msg)


def test_hello_welcome_and_a_call(fake_server):
    server = fake_server(granting)
    conn = Link.open(server.url, timeout=5)
    try:
        assert conn.version == 1 and conn.max_message_size == 1 << 20
        channel = conn.open_channel("todos", {"token": "t"}).wait_open(5)
        assert channel.uuid == "u-todos"
        assert channel.call("get", {"doc_id": "a"}, timeout=5) == {
            "op": "get", "args": {"doc_id": "a"}}
    finally:
        conn.close()
    assert not conn._reader.is_alive()


def test_pipelined_calls_are_matched_by_id_out_of_order(fake_server):
    held: list[dict] = []

    def on_call(peer: Peer, msg: dict) -> None:
        held.append(msg)
        if len(held) == 8:  # answer all at once, in reverse order
            for call in reversed(held):
                peer.send({"type": "reply", "ch": call["ch"], "id": call["id"],
                           "ok": call["args"]["n"]})

    server = fake_server(lambda peer: granting(peer, on_call))
    conn = Link.open(server.url, timeout=5)
    try:
        channels = [conn.open_channel(f"db{i}").wait_open(5) for i in range(2)]
        results: dict[int, Any] = {}

        def caller(n: int) -> None:
            results[n] = channels[n % 2].call("info", {"n": n}, timeout=5)

        threads = [threading.Thread(target=caller, args=(n,), name=f"caller-{n}")
                   for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert results == {n: n for n in range(8)}
    finally:
        conn.close()


def test_errors_come_back_as_the_same_class(fake_server):
    def on_call(peer: Peer, msg: dict) -> None:
        err = ({"status": 409, "error": "conflict", "reason": "Document update conflict"}
               if msg["op"] == "put" else {"status": 404, "error": "not_found",
                                           "reason": "deleted"})
        peer.send({"type": "reply", "ch": msg["ch"], "id": msg["id"], "error": err})

    server = fake_server(lambda peer: granting(peer, on_call))
    conn = Link.open(server.url, timeout=5)
    try:
        channel = conn.open_channel("todos").wait_open(5)
        with pytest.raises(Conflict):
            channel.call("put", {"doc": {"_id": "a"}}, timeout=5)
        with pytest.raises(NotFound) as info:
            channel.call("get", {"doc_id": "a"}, timeout=5)
        assert info.value.reason == "deleted"
        with pytest.raises(Denied):
            conn.open_channel("secret").wait_open(5)
    finally:
        conn.close()


def test_lost_connection_fails_in_flight_calls_with_transport_error(fake_server):
    def on_call(peer: Peer, msg: dict) -> None:
        peer.sock.shutdown(socket.SHUT_RDWR)  # die instead of answering

    server = fake_server(lambda peer: granting(peer, on_call))
    conn = Link.open(server.url, timeout=5)
    try:
        channel = conn.open_channel("todos").wait_open(5)
        with pytest.raises(TransportError) as info:
            channel.call("changes", {"feed": "longpoll"}, timeout=30)
        assert info.value.retryable and not isinstance(info.value, Timeout)
        assert conn.lost.wait(5)
        with pytest.raises(TransportError):
            conn.open_channel("other")
    finally:
        conn.close()


def test_closing_a_channel_cancels_its_calls_and_tells_the_server(fake_server):
    seen: list[dict] = []
    got_call = threading.Event()

    def on_call(peer: Peer, msg: dict) -> None:
        got_call.set()  # never answer: a longpoll that waits

    def script(peer: Peer) -> None:
        def recording_recv(orig=peer.recv):
            msg = orig()
            seen.append(msg)
            return msg
        peer.recv = recording_recv  # type: ignore[method-assign]
        granting(peer, on_call)

    server = fake_server(script)
    conn = Link.open(server.url, timeout=5)
    try:
        channel = conn.open_channel("todos").wait_open(5)
        errors: list[BaseException] = []

        def caller() -> None:
            try:
                channel.call("changes", {"feed": "longpoll"}, timeout=30)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        t = threading.Thread(target=caller, name="caller")
        t.start()
        assert got_call.wait(5)
        channel.close()
        t.join(5)
        assert len(errors) == 1 and isinstance(errors[0], Cancelled)
        with pytest.raises(Cancelled):
            channel.call("info", timeout=1)
        channel.close()  # idempotent
    finally:
        conn.close()
    assert {"type": "close", "ch": channel.ch} in seen


def test_reply_deadline_raises_timeout(fake_server):
    server = fake_server(lambda peer: granting(peer, lambda p, m: None))
    conn = Link.open(server.url, timeout=5)
    try:
        channel = conn.open_channel("todos").wait_open(5)
        with pytest.raises(Timeout):
            channel.call("info", timeout=0.2)
    finally:
        conn.close()


def test_a_server_that_refuses_our_version_is_a_failed_attempt(fake_server):
    def script(peer: Peer) -> None:
        peer.handshake()
        peer.recv()
        peer.send({"type": "error", "status": 400, "error": "unsupported_version",
                   "reason": "server speaks versions [2]"})

    server = fake_server(script)
    with pytest.raises(Exception) as info:
        Link.open(server.url, timeout=5)
    assert "unsupported_version" in str(info.value) or "versions [2]" in str(info.value)


def _recorder(signal, client):
    events: list[dict] = []
    cond = threading.Condition()

    def receiver(sender, **kwargs):
        with cond:
            events.append(kwargs)
            cond.notify_all()

    signal.connect(receiver, sender=client)
    return events, cond, receiver


def test_handshake_never_answered_means_retries_with_backoff(fake_server):
    """A TCP listener that accepts and never answers: connect timeout, then backoff."""
    server = fake_server(lambda peer: peer.sock.recv(65536) and peer.stop.wait(30))
    client = Client(initial_delay=0.01, factor=2.0, max_delay=0.05, jitter=0.0,
                    max_attempts=3, connect_timeout=0.2)
    events, cond, receiver = _recorder(signals.client_reconnect, client)
    try:
        client.connect(server.url)
        with pytest.raises(TransportError) as info:
            client.wait_connected(timeout=10)
        assert "gave up" in str(info.value)
    finally:
        client.close()
        signals.client_reconnect.disconnect(receiver)
    assert [e["attempt"] for e in events] == [1, 2]
    assert [e["delay"] for e in events] == [0.01, 0.02]
    assert server.accepted.acquire(timeout=1) and server.accepted.acquire(timeout=1)


def test_dead_server_is_detected_by_missing_pongs(fake_server):
    """Welcome, then silence: no pongs, no traffic. The client drops it and reconnects."""
    def script(peer: Peer) -> None:
        peer.welcome()
        peer.stop.wait(30)  # hung: reads nothing, answers nothing

    server = fake_server(script)
    client = Client(initial_delay=0.01, jitter=0.0, ping_interval=0.05, dead_timeout=0.3,
                    connect_timeout=2)
    lost, lost_cond, r1 = _recorder(signals.client_disconnect, client)
    try:
        client.connect(server.url)
        with lost_cond:
            assert lost_cond.wait_for(lambda: len(lost) >= 2, 10)
        assert isinstance(lost[0]["error"], Timeout)
        assert "no traffic" in str(lost[0]["error"])
    finally:
        client.close()
        signals.client_disconnect.disconnect(r1)


def test_healthy_idle_connection_is_kept_by_pongs(fake_server):
    pings = threading.Semaphore(0)

    def script(peer: Peer) -> None:
        peer.welcome()
        while True:
            opcode, data = peer.recv_frame()
            if opcode == 9:
                peer.send_frame(10, data)
                pings.release()

    server = fake_server(script)
    client = Client(ping_interval=0.05, dead_timeout=0.3)
    lost, _, r1 = _recorder(signals.client_disconnect, client)
    try:
        client.connect(server.url)
        client.wait_connected(5)
        for _ in range(15):  # > 0.7 s of pings, more than twice the dead timeout
            assert pings.acquire(timeout=5)
        assert client.connected and lost == []
    finally:
        client.close()
        signals.client_disconnect.disconnect(r1)


def test_close_interrupts_a_hanging_handshake(fake_server):
    import time

    handshake_started = threading.Event()

    def script(peer: Peer) -> None:
        peer.sock.recv(65536)
        handshake_started.set()
        peer.stop.wait(30)

    server = fake_server(script)
    client = Client(connect_timeout=30)
    client.connect(server.url)
    assert handshake_started.wait(5)
    started = time.monotonic()
    client.close()
    assert time.monotonic() - started < 3
    assert not client.connected


def test_urls_are_shown_without_credentials():
    from pouchsync_sync.client.transport import safe_url

    assert safe_url("ws://user:secret@example.com:3000/sync?x=1") == "ws://example.com:3000/sync?x=1"
    assert safe_url("wss://token@[::1]/s") == "wss://[::1]/s"
    assert safe_url("ws://127.0.0.1:5/") == "ws://127.0.0.1:5/"
    client = Client()
    try:
        client.connect("ws://user:secret@127.0.0.1:9/")  # nothing listens: retries quietly
        assert "secret" not in repr(client) and client.url == "ws://127.0.0.1:9/"
    finally:
        client.close()


def test_url_credentials_go_as_a_basic_auth_header_not_in_the_url(fake_server):
    heads: list[bytes] = []

    def script(peer: Peer) -> None:
        while b"\r\n\r\n" not in peer.buf:
            peer.buf += peer.sock.recv(65536)
        heads.append(peer.buf.split(b"\r\n\r\n", 1)[0])
        granting(peer)

    server = fake_server(script)
    url = server.url.replace("ws://", "ws://al%40ice:s3cret@")
    conn = Link.open(url, timeout=5)
    try:
        assert conn.url == url  # kept for reconnects; shown only through safe_url
    finally:
        conn.close()
    head = heads[0].decode()
    assert head.startswith("GET / HTTP/1.1")
    assert "s3cret" not in head
    assert "Authorization: Basic " + base64.b64encode(b"al@ice:s3cret").decode() in head
