"""The sync server process is SIGKILLed and restarted (same port) at random moments of
a two-way live sync while three sides write at once: client A, client B, and the
server's own database file (written by this test process, as another app would).

Every round ends with the same documents, winners, conflicts and ``_revisions`` on all
three sides, and every revision any side wrote is present everywhere.

Short run: 2,000 docs over 2 rounds. ``--full``: 20,000 docs over 20 rounds.
"""

from __future__ import annotations

import base64
import contextlib
import random
import sqlite3
import threading

from pathlib import Path
from typing import Any

import pytest

from pouchsync_sync import Client, Conflict, LocalDatabase
from pouchsync_sync.client import SyncState

from .helpers import TOKEN, ServerProcess, missing_writes, snapshot, wait_converged

DB = "fault"


class Writer:
    """Writes its share of docs in small batches on one side, and edits a few docs the
    others wrote too (conflicts). Records every revision it wrote."""

    def __init__(self, name: str, db: LocalDatabase, rng: random.Random) -> None:
        self.name = name
        self.db = db
        self.rng = rng
        self.written: list[tuple[str, str]] = []
        self.error: BaseException | None = None
        self.counter = 0

    def run(self, count: int, shared: list[str], stop: threading.Event) -> None:
        try:
            while count > 0 and not stop.is_set():
                n = min(count, self.rng.randint(1, 25))
                docs: list[dict[str, Any]] = []
                for _ in range(n):
                    self.counter += 1
                    doc: dict[str, Any] = {"_id": f"{self.name}-{self.counter:06d}",
                                           "by": self.name, "n": self.counter}
                    if self.counter % 10 == 0:  # some carry an attachment
                        data = base64.b64encode(self.rng.randbytes(self.rng.randint(1, 4096)))
                        doc["_attachments"] = {"a.bin": {"content_type": "application/octet-stream",
                                                         "data": data.decode()}}
                    docs.append(doc)
                for result in self.db.bulk_docs(docs):
                    assert result.get("ok"), result
                    self.written.append((result["id"], result["rev"]))
                count -= n
                if shared and self.rng.random() < 0.5:  # edit a hot doc: conflicts
                    doc_id = self.rng.choice(shared)
                    try:
                        doc = self.db.get(doc_id)
                    except Exception:  # noqa: BLE001 - not here yet
                        continue
                    doc["edited_by"] = self.name
                    doc["edit"] = self.counter
                    try:
                        result = self.db.put(doc)
                    except Conflict:  # the sync brought a newer rev meanwhile: fine
                        continue
                    self.written.append((result["id"], result["rev"]))
                stop.wait(self.rng.uniform(0.0, 0.12))  # pace: spread writes over the kills
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def test_server_sigkill_mid_sync_converges_and_loses_nothing(tmp_path: Path, full_run: bool) -> None:
    total, rounds = (20_000, 20) if full_run else (2_000, 2)
    rng = random.Random(7)
    server = ServerProcess(tmp_path / "server")
    url = server.start()
    server_db = LocalDatabase(tmp_path / "server" / f"{DB}.sqlite", name=DB)
    a = LocalDatabase(tmp_path / "a.sqlite", name=DB)
    b = LocalDatabase(tmp_path / "b.sqlite", name=DB)
    sides = {"server": server_db, "a": a, "b": b}
    clients = [Client(initial_delay=0.02, max_delay=0.25, jitter=0.0, ping_interval=1.0,
                      connect_timeout=5.0, call_timeout=20.0) for _ in range(2)]
    writers = [Writer(name, db, random.Random(rng.random())) for name, db in sides.items()]
    kills_per_round = []
    try:
        syncs = [clients[0].connect(url).sync(a, credentials=TOKEN, live=True, batch_size=50),
                 clients[1].connect(url).sync(b, credentials=TOKEN, live=True, batch_size=50)]
        per_writer = total // rounds // len(writers)
        hot = [f"hot-{i:02d}" for i in range(20)]
        for result in server_db.bulk_docs([{"_id": doc_id} for doc_id in hot]):
            writers[0].written.append((result["id"], result["rev"]))
        wait_converged(sides, syncs, timeout=30)
        for round_no in range(rounds):
            shared = hot
            stop = threading.Event()
            threads = [threading.Thread(target=w.run, args=(per_writer, shared, stop),
                                        name=f"fault-writer-{w.name}") for w in writers]
            for t in threads:
                t.start()
            kills = 0
            try:
                # kill at random moments while the writers run (and once more after)
                while any(t.is_alive() for t in threads) or kills == 0:
                    threads[0].join(rng.uniform(0.05, 0.6))
                    server.kill()
                    kills += 1
                    # sometimes stay down a little, so clients go offline and back off
                    if rng.random() < 0.5:
                        stop.wait(rng.uniform(0.0, 0.5))
                    server.start()
            finally:
                stop.set()
                for t in threads:
                    t.join(60)
            for w in writers:
                assert w.error is None, f"writer {w.name} failed: {w.error!r}"
            kills_per_round.append(kills)
            wait_converged(sides, syncs, timeout=120 if full_run else 60)
            written = [item for w in writers for item in w.written]
            for name, db in sides.items():
                lost = missing_writes(db, written)
                assert not lost, f"round {round_no}: {name} lost {len(lost)} writes, e.g. {list(lost.items())[:3]}"
            for sync in syncs:
                assert sync.state in (SyncState.ACTIVE, SyncState.PAUSED), sync
            with contextlib.closing(sqlite3.connect(tmp_path / "server" / f"{DB}.sqlite")) as check:
                assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert sum(len(w.written) for w in writers) >= total - rounds * len(writers)
        conflicts = sum(1 for doc in snapshot(a).values() if len(doc["leaves"]) > 1)
        print(f"\nserver kill: {rounds} rounds survived, {server.kills} SIGKILLs, "
              f"{sum(len(w.written) for w in writers)} writes, {len(snapshot(a))} docs, "
              f"{conflicts} conflicted, 0 lost")
    finally:
        for client in clients:
            client.close()
        server.stop()
        for db in sides.values():
            db.close()
