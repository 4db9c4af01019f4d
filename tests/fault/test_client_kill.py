"""The client process is SIGKILLed mid-pull and mid-local-write: its SQLite file opens
clean (``PRAGMA integrity_check``), keeps every write that had returned, and the next
sync resumes from its checkpoint instead of starting over."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from pouchsync_sync import LocalDatabase
from pouchsync_sync.testing import assert_converged

from .helpers import REPO, TOKEN, _read_line


class ClientProcess:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.fault.client_proc", *args],
                                     cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, text=True, start_new_session=True)
        assert self.line(30) == "READY"

    def line(self, timeout: float) -> str:
        return _read_line(self.proc, timeout).strip()

    def kill(self) -> list[str]:
        """SIGKILL; returns the lines it printed that were not read yet."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        rest: list[str] = []
        if self.proc.stdout is not None:
            rest = [line.strip() for line in self.proc.stdout.read().splitlines() if line.strip()]
            self.proc.stdout.close()
        return rest


def _integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def test_client_killed_mid_pull_resumes_from_checkpoint(hub, servers, clients, tmp_path: Path,
                                                         full_run: bool) -> None:
    total, kills = (20_000, 5) if full_run else (5_000, 1)
    rng = random.Random(3)
    source = hub.db("fault")
    for start in range(0, total, 1000):
        source.bulk_docs([{"_id": f"d-{i:06d}", "i": i, "pad": "x" * 200}
                          for i in range(start, min(total, start + 1000))])
    server = servers(hub.on_request)
    path = tmp_path / "client.sqlite"
    pulled_at_kill = []
    for _ in range(kills):
        child = ClientProcess("pull", "--url", server.url, "--file", str(path))
        target = rng.randint(total // (4 * kills), total // (2 * kills))  # per run
        try:
            deadline = time.monotonic() + 60
            pulled = 0
            while pulled < target and time.monotonic() < deadline:
                line = child.line(deadline - time.monotonic())
                assert line.startswith(("PULLED", "DONE")), line
                if line.startswith("DONE"):
                    break
                pulled = int(line.split()[1])
        finally:
            child.kill()  # mid-pull: between or inside batch writes
        pulled_at_kill.append(pulled)
        assert _integrity(path) == "ok"
        if pulled >= total:
            break
    with LocalDatabase(path, name="fault") as db:
        have = db.info()["doc_count"]
        assert 0 < have < total, have
        result = clients().connect(server.url).sync(db, credentials=TOKEN, direction="pull").wait(120)
        assert result.ok, result
        assert result.pull is not None
        # resumed from the checkpoint: far fewer reads than the whole database
        assert result.pull.docs_read < total, result.pull
        assert result.pull.docs_read <= total - have + 2 * 100, (result.pull.docs_read, have)
        assert_converged(db, source)
    assert _integrity(path) == "ok"
    print(f"\nclient kill mid-pull: {kills} kills at {pulled_at_kill} of {total}, resumed reading "
          f"{result.pull.docs_read}, 0 lost")


def test_client_killed_mid_write_keeps_every_returned_write(hub, servers, clients, tmp_path: Path,
                                                            full_run: bool) -> None:
    kills = 10 if full_run else 2
    rng = random.Random(5)
    server = servers(hub.on_request)
    path = tmp_path / "writer.sqlite"
    acknowledged: list[str] = []
    for _ in range(kills):
        child = ClientProcess("write", "--file", str(path))
        target = rng.randint(20, 200)
        got = 0
        try:
            while got < target:
                line = child.line(30)
                assert line.startswith("WROTE"), line
                acknowledged.append(line.split()[1])
                got += 1
        finally:
            # it is writing the next one right now; lines printed since count as
            # acknowledged too (those writes had returned)
            acknowledged += [line.split()[1] for line in child.kill() if line.startswith("WROTE")]
        assert _integrity(path) == "ok"
    with LocalDatabase(path, name="fault") as db:
        for doc_id in acknowledged:
            assert db.get(doc_id)["_id"] == doc_id
            assert len(db.get_attachment(doc_id, "a.bin")) == 2048, doc_id
        count = db.info()["doc_count"]
        assert len(acknowledged) <= count <= len(acknowledged) + kills
        result = clients().connect(server.url).sync(db, credentials=TOKEN, direction="push").wait(60)
        assert result.ok and result.doc_write_failures == 0, result
        assert_converged(db, hub.db("fault"))
    print(f"\nclient kill mid-write: {kills} kills, {len(acknowledged)} acknowledged writes, 0 lost, "
          f"integrity ok")
