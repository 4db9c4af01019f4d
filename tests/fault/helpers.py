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
