"""Pieces of the hostile-client tests (``test_hostile_clients.py``,
``test_hostile_payloads.py``): a bystander that measures its own latency (on
``tests.rawpeer.RawPeer``, which also speaks permessage-deflate), RSS, the ``public``
grant fixture, and the steps and checks both modules share.

Everything started here is a ``pouchsync-test-...`` thread that ``stop()`` joins.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from pouchsync_sync import Grant
from tests.rawpeer import RawPeer

from .helpers import TOKEN, thread_stacks
from .proxy import wait_until

BYSTANDER_BOUND = 1.0  # seconds, generous on 2 shared cores (a call takes ~1 ms)
MB = 1024 * 1024


def session_threads() -> list[str]:
    """The server's per-session threads still alive."""
    return [t.name for t in threading.enumerate()
            if t.name.startswith(("pouchsync-server-ws", "pouchsync-server-worker",
                                  "pouchsync-server-longpoll"))]


def request_threads() -> list[threading.Thread]:
    """werkzeug's request threads still alive."""
    return [t for t in threading.enumerate() if "process_request_thread" in t.name]


@pytest.fixture
def public(hub):
    """on_request: ``public-*`` databases are granted read-only to anyone (no
    credentials); the others need the token."""
    def on_request(credentials: Any, name: str) -> Any:
        if name.startswith("public"):
            return Grant(hub.db(name), read_only=True)
        return hub.on_request(credentials, name)
    return on_request


def open_channel(peer: RawPeer, db: str, credentials: Any = TOKEN, ch: int = 1) -> None:
    peer.send({"type": "open", "ch": ch, "db": db, "credentials": credentials})
    granted, _ = peer.until(lambda m: m.get("ch") == ch)
    assert granted["type"] == "granted", granted


def call(peer: RawPeer, op: str, args: dict[str, Any], call_id: int = 1, *,
          timeout: float = 30.0) -> dict[str, Any]:
    peer.send({"type": "call", "ch": 1, "id": call_id, "op": op, "args": args})
    answer, _ = peer.until(lambda m: m.get("id") == call_id, timeout=timeout)
    assert isinstance(answer, dict), answer
    return answer


def left_cleanly(server: Any, connections: int = 0) -> None:
    """The attacker's socket, threads and held replies are gone."""
    assert wait_until(lambda: server.stats()["connections"] <= connections, timeout=20), server.stats()
    assert wait_until(lambda: server.stats()["reply_bytes_held"] == 0, timeout=10), server.stats()
    if connections == 0:
        assert wait_until(lambda: not session_threads(), timeout=10), thread_stacks(session_threads())


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
