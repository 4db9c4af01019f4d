"""A cancelled replication resumes from its last checkpoint; it does not start over."""

from __future__ import annotations

import threading

import pytest

from pouchsync_sync.replication import Replicator, replicate
from pouchsync_sync.store.local import LocalDatabase
from tests.integration.test_replication_local import Wrapper, snapshot

TOTAL = 20_000


@pytest.mark.parametrize("batches_limit", [1, 10], ids=["inline", "read-ahead"])
def test_cancelled_halfway_then_resumed_reads_only_the_rest(tmp_path, batches_limit) -> None:
    source = LocalDatabase(str(tmp_path / "source.sqlite"))
    target = LocalDatabase(str(tmp_path / "target.sqlite"))
    try:
        for start in range(0, TOTAL, 2000):
            source.bulk_docs([{"_id": f"doc{i:06d}", "n": i} for i in range(start, start + 2000)])
        cancel = threading.Event()

        def on_batch(info: dict) -> None:
            if info["docs_written"] >= TOTAL // 2:
                cancel.set()

        first = Replicator(source, target, batch_size=500, batches_limit=batches_limit,
                           cancel=cancel, on_batch=on_batch).run()
        assert first.status == "cancelled" and first.ok
        assert TOTAL // 2 <= first.docs_read < TOTAL

        # a fresh process would reopen the files: do the same
        source.close()
        target.close()
        source = LocalDatabase(str(tmp_path / "source.sqlite"))
        target = LocalDatabase(str(tmp_path / "target.sqlite"))

        second = replicate(source, target, batch_size=500)
        assert second.status == "complete"
        assert second.docs_read == TOTAL - first.docs_read
        assert second.docs_written == TOTAL - first.docs_written
        assert target.info()["doc_count"] == TOTAL
        assert replicate(source, target, batch_size=500).docs_read == 0
    finally:
        source.close()
        target.close()


def test_checkpoint_lost_on_the_source_means_a_full_rescan(tmp_path) -> None:
    """Both logs must agree: a source restored without its log starts over (and only
    re-reads; the target already has everything so nothing is fetched twice)."""
    source = LocalDatabase(":memory:")
    target = LocalDatabase(":memory:")
    try:
        source.bulk_docs([{"_id": f"d{i}"} for i in range(20)])
        r = Replicator(source, target, batch_size=5)
        r.run()
        log_id = f"_local/{r.replication_id}"
        source.delete(log_id, source.get(log_id)["_rev"])
        rows_read: list[int] = []

        class Counting(Wrapper):
            def changes(self, **kwargs):
                answer = super().changes(**kwargs)
                rows_read.append(len(answer["results"]))
                return answer

        again = Replicator(Counting(source), target, batch_size=5)
        result = again.run()
        assert result.status == "complete" and result.docs_read == 0
        assert sum(rows_read) == 20  # rescanned from the start
        assert source.get(log_id)["session_id"] == again.session_id
        assert snapshot(source) == snapshot(target)
    finally:
        source.close()
        target.close()
