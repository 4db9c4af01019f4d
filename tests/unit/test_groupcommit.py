"""GroupCommit: writers queued behind the store's lock share one transaction."""

from __future__ import annotations

import threading
from typing import Any, Sequence

import pytest

from pouchsync_sync import LocalDatabase
from pouchsync_sync.errors import Conflict, ServerError
from pouchsync_sync.store.groupcommit import GroupCommit
from tests.fault.proxy import wait_until


def _queued_writers(gc: GroupCommit[Any], items: Sequence[Any]
                    ) -> tuple[list[threading.Thread], dict[Any, Any]]:
    """Start one writer per item (the caller holds the lock) and wait until all queue."""
    outcomes: dict[Any, Any] = {}

    def write(item: Any) -> None:
        try:
            outcomes[item] = gc.write(item)
        except BaseException as exc:  # noqa: BLE001 - recorded for the test
            outcomes[item] = exc

    threads = [threading.Thread(target=write, args=(item,), name=f"pouchsync-test-writer-{item}")
               for item in items]
    for t in threads:
        t.start()
    assert wait_until(lambda: gc.queued() == len(items), timeout=10.0, poll=0.005)
    return threads, outcomes


def test_writers_queued_behind_the_lock_share_one_batch_and_get_their_own_results() -> None:
    lock = threading.RLock()
    batches: list[list[int]] = []

    def write_batch(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        return [item * 10 for item in items]

    gc: GroupCommit[int] = GroupCommit(lock, write_batch)
    with lock:
        threads, outcomes = _queued_writers(gc, range(20))
    for t in threads:
        t.join(10)
    assert outcomes == {i: i * 10 for i in range(20)}
    assert len(batches) == 1 and sorted(batches[0]) == list(range(20))
    assert gc.write(7) == 70 and batches[-1] == [7]  # alone: a batch of one


def test_a_batch_that_fails_gives_every_writer_in_it_the_error() -> None:
    lock = threading.RLock()

    def write_batch(items: Sequence[str]) -> list[str]:
        raise ServerError("disk full")

    gc: GroupCommit[str] = GroupCommit(lock, write_batch)
    with lock:
        threads, outcomes = _queued_writers(gc, ["a", "b", "c"])
    for t in threads:
        t.join(10)
    assert all(isinstance(outcomes[k], ServerError) for k in "abc"), outcomes
    with pytest.raises(ServerError):
        gc.write("d")


def test_concurrent_checkpoints_on_a_local_database(tmp_path) -> None:
    """200 threads update their own _local doc at once, one stale: each gets its own
    answer, the stale one a conflict, and every doc holds what its writer wrote."""
    db = LocalDatabase(tmp_path / "c.sqlite")
    try:
        revs = {i: db.put({"_id": f"_local/c{i}", "n": 0})["rev"] for i in range(200)}
        barrier = threading.Barrier(200)
        answers: dict[int, Any] = {}

        def write(i: int) -> None:
            barrier.wait(10)
            rev = "0-9" if i == 13 else revs[i]
            try:
                answers[i] = db.put({"_id": f"_local/c{i}", "_rev": rev, "n": i})
            except Conflict as exc:
                answers[i] = exc

        threads = [threading.Thread(target=write, args=(i,), name=f"pouchsync-test-ckpt-{i}")
                   for i in range(200)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert isinstance(answers.pop(13), Conflict)
        assert all(a == {"ok": True, "id": f"_local/c{i}", "rev": "0-2"} for i, a in answers.items())
        assert all(db.get(f"_local/c{i}")["n"] == (0 if i == 13 else i) for i in range(200))
    finally:
        db.close()
