"""Shared pieces of the fault tests: a sync server in a killable process, database
snapshots (``pouchsync_sync.testing.snapshot``: every leaf with its ``_revisions``) and
the "nothing lost" check."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import pytest

from pouchsync_sync.store.base import Database
from pouchsync_sync.testing.converge import differences, snapshot

REPO = Path(__file__).resolve().parents[2]
TOKEN = {"token": "fault-token"}


class ServerProcess:
    """``tests/fault/serve.py`` in a subprocess; ``kill()`` is SIGKILL, ``start()``
    again reuses the same port."""

    def __init__(self, data_dir: Path, *, ping_interval: float | None = None,
                 extra_args: Iterable[str] = ()) -> None:
        self.data_dir = Path(data_dir)
        self.extra_args = list(extra_args)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.ping_interval = ping_interval
        self.port = 0
        self.url: str | None = None
        self.proc: subprocess.Popen[str] | None = None
        self.starts = 0
        self.kills = 0

    def start(self, timeout: float = 20.0) -> str:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        cmd = [sys.executable, "-m", "tests.fault.serve", "--port", str(self.port),
               "--dir", str(self.data_dir)]
        if self.ping_interval is not None:
            cmd += ["--ping-interval", str(self.ping_interval)]
        cmd += self.extra_args
        deadline = time.monotonic() + timeout
        while True:
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                    stdin=subprocess.DEVNULL, text=True, start_new_session=True)
            line = _read_line(proc, deadline - time.monotonic())
            if line.startswith("READY "):
                break
            # the old listener's port may not be free yet: try again until the deadline
            _kill(proc)
            if time.monotonic() >= deadline:
                raise RuntimeError(f"sync server process did not start: {line!r}")
        self.proc = proc
        self.url = line.split(" ", 1)[1].strip()
        self.port = int(self.url.rstrip("/").rsplit(":", 1)[1])
        self.starts += 1
        return self.url

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            _kill(self.proc)
            self.kills += 1

    def stop(self) -> None:
        if self.proc is not None:
            _kill(self.proc)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.proc = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(max(0.0, timeout)):
            return ""
    return proc.stdout.readline()


def _kill(proc: subprocess.Popen[Any]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10.0)


def missing_writes(db: Database, written: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The revisions in ``written`` that ``db`` does not have (in any leaf's history)."""
    wanted: dict[str, list[str]] = {}
    for doc_id, rev in written:
        wanted.setdefault(doc_id, []).append(rev)
    missing: dict[str, Any] = {}
    items = list(wanted.items())
    for start in range(0, len(items), 1000):
        missing.update(db.revs_diff(dict(items[start:start + 1000])))
    return missing


def wait_converged(sides: dict[str, Database], syncs: list[Any], timeout: float) -> dict[str, Any]:
    """Wait until every side has the same snapshot; return it (or fail with a diff)."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while True:
        for sync in syncs:
            sync.wait_in_sync(timeout=max(1.0, deadline - time.monotonic()))
        last = {name: snapshot(db) for name, db in sides.items()}
        first = next(iter(last.values()))
        if all(s == first for s in last.values()):
            return first
        if time.monotonic() > deadline:
            names = list(last)
            problems = {f"{names[0]} vs {n}": differences(last[names[0]], last[n], (names[0], n))
                        for n in names[1:]}
            pytest.fail(f"sides did not converge within {timeout}s: {problems}")


class RawPeer:
    """A protocol v1 peer on websocket-client, one frame at a time (no library client).

    ``recv`` returns a message dict, ``("close", code)`` when the server closed, or
    ``("gone", None)`` when the socket died without a close frame.
    """

    def __init__(self, url: str, *, hello: bool = True, timeout: float = 10.0) -> None:
        import websocket

        self._websocket = websocket
        self.ws = websocket.create_connection(url, skip_utf8_validation=True, timeout=timeout)
        self.timeout = timeout
        self.closed: tuple[str, Any] | None = None
        self.welcome: dict[str, Any] | None = None
        if hello:
            self.send({"type": "hello", "versions": [1], "agent": "fault-peer"})
            msg = self.recv()
            assert isinstance(msg, dict) and msg["type"] == "welcome", msg
            self.welcome = msg

    def send(self, msg: Any, *, opcode: int | None = None) -> bool:
        """Send a dict (as JSON), a str (text frame) or bytes (binary frame, or raw
        bytes in a text frame with ``opcode=1``); False when the socket is gone."""
        import json

        ws = self._websocket
        try:
            if isinstance(msg, (dict, list)):
                self.ws.send(json.dumps(msg))
            elif isinstance(msg, str):
                self.ws.send(msg)
            else:
                self.ws.send(bytes(msg), opcode=opcode or ws.ABNF.OPCODE_BINARY)
            return True
        except (ws.WebSocketException, OSError):
            return False

    def recv(self, timeout: float | None = None) -> Any:
        import json

        ws = self._websocket
        if self.closed is not None:
            return self.closed
        self.ws.settimeout(self.timeout if timeout is None else timeout)
        try:
            opcode, data = self.ws.recv_data(control_frame=True)
            while opcode not in (ws.ABNF.OPCODE_TEXT, ws.ABNF.OPCODE_CLOSE):
                opcode, data = self.ws.recv_data(control_frame=True)
        except ws.WebSocketTimeoutException:
            raise
        except (ws.WebSocketException, OSError):
            self.closed = ("gone", None)
            return self.closed
        if opcode == ws.ABNF.OPCODE_CLOSE:
            code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
            self.closed = ("close", code)
            return self.closed
        return json.loads(data)

    def until(self, predicate: Any, timeout: float | None = None) -> tuple[Any, list[Any]]:
        """Read until ``predicate(msg)`` or the socket ends; (that message or the close
        tuple, the messages read before it)."""
        seen = []
        while True:
            msg = self.recv(timeout)
            if isinstance(msg, tuple) or predicate(msg):
                return msg, seen
            seen.append(msg)

    def probe(self, ch: int = 9_000_000_000) -> tuple[Any, list[Any]]:
        """Send a ``close`` for a channel never opened (always answered ``closed``) and
        read up to its answer: proves the server still serves this socket."""
        self.send({"type": "close", "ch": ch})
        return self.until(lambda m: m.get("type") == "closed" and m.get("ch") == ch)

    def close(self) -> None:
        try:
            self.ws.close(timeout=1.0)
        except Exception:  # noqa: BLE001 - best effort
            pass


def thread_stacks(names: Iterable[str]) -> str:
    """The current stacks of the named threads (for a leak's failure message)."""
    import sys
    import threading
    import traceback

    wanted = set(names)
    frames = sys._current_frames()
    out = []
    for thread in threading.enumerate():
        if thread.name in wanted and thread.ident in frames:
            out.append(f"--- {thread.name}\n" + "".join(traceback.format_stack(frames[thread.ident])[-8:]))
    return "\n".join(out)
