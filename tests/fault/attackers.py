"""Pieces of the hostile-client tests: a bystander that measures its own latency (on
``tests.rawpeer.RawPeer``, which also speaks permessage-deflate), and RSS.

Everything started here is a ``pouchsync-test-...`` thread that ``stop()`` joins.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from tests.rawpeer import RawPeer

from .helpers import TOKEN


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
