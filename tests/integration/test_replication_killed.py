"""A replication killed with SIGKILL (no cleanup at all) resumes from its last checkpoint.

The child checkpoints after every batch (``checkpoint_interval=0``), so each ``on_batch``
report is a recorded checkpoint the resumed run must start from."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from pouchsync_sync.replication import replicate
from pouchsync_sync.store.local import LocalDatabase
from pouchsync_sync.testing import assert_converged
from tests.integration.test_replication_local import Wrapper

TOTAL = 8_000
REPO = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import sys
    from pouchsync_sync.replication import Replicator
    from pouchsync_sync.store.local import LocalDatabase

    def report(info):
        print(info["docs_written"], flush=True)

    source, target = LocalDatabase(sys.argv[1]), LocalDatabase(sys.argv[2])
    Replicator(source, target, batch_size=250, on_batch=report, checkpoint_interval=0).run()
    print("done", flush=True)
""")


def test_killed_replication_resumes_from_its_checkpoint(tmp_path) -> None:
    source_path, target_path = str(tmp_path / "s.sqlite"), str(tmp_path / "t.sqlite")
    source = LocalDatabase(source_path)
    for start in range(0, TOTAL, 2000):
        source.bulk_docs([{"_id": f"doc{i:06d}", "n": i} for i in range(start, start + 2000)])
    source.put({"_id": "doc000001", "_rev": source.get("doc000001")["_rev"], "n": "edited"})
    source.close()

    child = subprocess.Popen([sys.executable, "-c", CHILD, source_path, target_path],
                             cwd=REPO, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    checkpointed = 0
    watchdog = threading.Timer(120, child.kill)  # bounds the read loop below
    watchdog.start()
    try:
        assert child.stdout is not None
        for line in child.stdout:  # ends when the child exits
            if line.strip() == "done":
                break
            checkpointed = int(line)
            if checkpointed >= TOTAL // 4:
                child.send_signal(signal.SIGKILL)
                break
    finally:
        watchdog.cancel()
        child.kill()
        child.wait(30)
    assert TOTAL // 4 <= checkpointed < TOTAL, "the child finished before it could be killed"

    source, target = LocalDatabase(source_path), LocalDatabase(target_path)
    try:
        on_target = target.info()["doc_count"]
        assert on_target >= checkpointed
        rows = []

        class Counting(Wrapper):
            def changes(self, **kwargs):
                answer = super().changes(**kwargs)
                rows.append(len(answer["results"]))
                return answer

        again = replicate(Counting(source), target, batch_size=250)
        assert again.status == "complete"
        assert again.docs_read == TOTAL - on_target
        assert sum(rows) <= TOTAL - checkpointed  # resumed, not rescanned from 0
        assert_converged(source, target)
    finally:
        source.close()
        target.close()
