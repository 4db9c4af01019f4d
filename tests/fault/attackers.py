"""Pieces of the hostile-client tests: a bystander that measures its own latency, a
WebSocket peer that speaks permessage-deflate (websocket-client does not), and RSS.

Everything started here is a ``pouchsync-test-...`` thread that ``stop()`` joins.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.events import (AcceptConnection, CloseConnection, Message, RejectConnection, Request,
                            TextMessage)
from wsproto.extensions import PerMessageDeflate

from .helpers import TOKEN, RawPeer


def rss_bytes() -> int:
    """This process's resident set size (the in-process server's memory)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class Bystander:
    """Another client on another database, calling ``info`` in a loop on its own
    thread while an attack runs; ``stop()`` returns ``(calls answered, worst latency
    in seconds)``. A call not answered within ``timeout`` counts as that long."""

    def __init__(self, url: str, db: str = "bystander", *, timeout: float = 10.0) -> None:
        self.peer = RawPeer(url, timeout=timeout)
        self.peer.send({"type": "open", "ch": 1, "db": db, "credentials": TOKEN})
        granted, _ = self.peer.until(lambda m: m.get("ch") == 1)
        assert granted["type"] == "granted", granted
        self.timeout = timeout
        self.calls = 0
        self.worst = 0.0
        self.failed: list[Any] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pouchsync-test-bystander", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        call_id = 0
        while not self._stop.is_set():
            call_id += 1
            started = time.monotonic()
            self.peer.send({"type": "call", "ch": 1, "id": call_id, "op": "info", "args": {}})
            try:
                answer, _ = self.peer.until(lambda m, i=call_id: m.get("id") == i, timeout=self.timeout)
            except Exception as exc:  # noqa: BLE001 - a timeout is the finding
                answer = exc
            took = time.monotonic() - started
            self.worst = max(self.worst, took)
            if not (isinstance(answer, dict) and answer.get("type") == "reply" and answer.get("ok")):
                self.failed.append(answer)
                return
            self.calls += 1
            self._stop.wait(0.02)

    def stop(self) -> tuple[int, float]:
        self._stop.set()
        self._thread.join(self.timeout + 5)
        assert not self._thread.is_alive(), "the bystander is stuck"
        self.peer.close()
        assert not self.failed, self.failed
        return self.calls, self.worst


class DeflatePeer:
    """A WebSocket client on a raw socket that negotiates permessage-deflate (wsproto
    compresses every message it sends). ``recv`` as ``RawPeer``'s."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        host, port = url.split("//", 1)[1].rstrip("/").rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(host=host, target="/", extensions=[PerMessageDeflate()])))
        self.pending: list[Any] = []
        self.closed: tuple[str, Any] | None = None
        self.accepted = self._until_event((AcceptConnection, RejectConnection))
        assert isinstance(self.accepted, AcceptConnection), self.accepted
        assert any(isinstance(e, PerMessageDeflate) for e in self.accepted.extensions), \
            "the server did not accept permessage-deflate"
        self._text: list[str] = []

    def _until_event(self, kinds: tuple[type, ...]) -> Any:
        while True:
            for event in self.ws.events():
                if isinstance(event, kinds):
                    return event
                self.pending.append(event)
            data = self.sock.recv(65536)
            if not data:
                return None
            self.ws.receive_data(data)

    def frame(self, text: str) -> bytes:
        """The bytes of ``text`` as one compressed message (send them with ``sock``)."""
        return self.ws.send(Message(data=text))

    def send_text(self, text: str) -> bool:
        try:
            self.sock.sendall(self.ws.send(Message(data=text)))
            return True
        except OSError:
            return False

    def recv(self) -> Any:
        """A message dict, ``("close", code)`` or ``("gone", None)``."""
        if self.closed is not None:
            return self.closed
        while True:
            while self.pending:
                event = self.pending.pop(0)
                if isinstance(event, CloseConnection):
                    self.closed = ("close", event.code)
                    return self.closed
                if isinstance(event, TextMessage):
                    self._text.append(event.data)
                    if event.message_finished:
                        text, self._text = "".join(self._text), []
                        return json.loads(text)
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                self.closed = ("gone", None)
                return self.closed
            self.ws.receive_data(data)
            self.pending.extend(self.ws.events())

    def close(self) -> None:
        self.sock.close()
