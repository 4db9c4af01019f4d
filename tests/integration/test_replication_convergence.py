"""Convergence (Hypothesis): random edits on two or three stores, replicated in random
directions and orders, end identical everywhere once every direction is quiescent."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pouchsync_sync.errors import Conflict, NotFound
from pouchsync_sync.replication import replicate
from pouchsync_sync.store.local import LocalDatabase
from pouchsync_sync.testing import assert_converged
from tests.integration.test_replication_local import snapshot

DOC_IDS = ["a", "b", "c", "d"]

edit = st.tuples(st.sampled_from(["put", "put", "delete", "edit_conflict", "resolve"]),
                 st.integers(0, 2), st.sampled_from(DOC_IDS), st.integers(0, 99))
sync = st.tuples(st.just("replicate"), st.integers(0, 2), st.integers(0, 2), st.integers(1, 4),
                 st.sampled_from([1, 3]))
operations = st.lists(st.one_of(edit, edit, sync), min_size=1, max_size=30)


def apply_edit(db: LocalDatabase, kind: str, doc_id: str, value: int) -> None:
    try:
        current: Any = db.get(doc_id, conflicts=True)
    except NotFound:
        current = None
    if kind == "put":
        doc = {"_id": doc_id, "value": value}
        if current is not None:
            doc["_rev"] = current["_rev"]
        db.put(doc)
    elif kind == "delete" and current is not None:
        db.delete(doc_id, current["_rev"])
    elif kind == "edit_conflict" and current is not None and current.get("_conflicts"):
        db.put({"_id": doc_id, "_rev": current["_conflicts"][0], "value": value})
    elif kind == "resolve" and current is not None and current.get("_conflicts"):
        db.delete(doc_id, current["_conflicts"][-1])


def replicate_until_quiescent(dbs: list[LocalDatabase]) -> None:
    for _round in range(10):
        written = 0
        for src, tgt in itertools.permutations(range(len(dbs)), 2):
            result = replicate(dbs[src], dbs[tgt], batch_size=3)
            assert result.status == "complete", result.error
            assert result.doc_write_failures == 0, result.errors
            written += result.docs_written
        if written == 0:
            return
    raise AssertionError("replication did not become quiescent")


def check_convergence(count: int, ops: list[tuple]) -> None:
    dbs = [LocalDatabase(":memory:") for _ in range(count)]
    try:
        for op in ops:
            if op[0] == "replicate":
                _, src, tgt, batch, ahead = op
                src, tgt = src % count, tgt % count
                if src != tgt:
                    result = replicate(dbs[src], dbs[tgt], batch_size=batch,
                                       batches_limit=ahead)
                    assert result.status == "complete", result.error
            else:
                kind, which, doc_id, value = op
                try:
                    apply_edit(dbs[which % count], kind, doc_id, value)
                except Conflict:
                    pass
        replicate_until_quiescent(dbs)
        assert_converged(*dbs)
    finally:
        for db in dbs:
            db.close()


def converge_property(examples: int):
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])(
        given(count=st.sampled_from([2, 3, 3]), ops=operations)(check_convergence))


def test_random_edits_and_replications_converge() -> None:
    converge_property(150)()


def test_random_edits_and_replications_converge_long(full_run: bool) -> None:
    """The same property with many more examples (``--full``)."""
    if not full_run:
        pytest.skip("long run: pass --full")
    converge_property(3000)()


def test_concurrent_edits_keep_every_leaf() -> None:
    a, b, c = (LocalDatabase(":memory:") for _ in range(3))
    try:
        rev = a.put({"_id": "x", "v": 0})["rev"]
        replicate(a, b)
        replicate(a, c)
        a.put({"_id": "x", "_rev": rev, "v": "a"})
        b.put({"_id": "x", "_rev": rev, "v": "b"})
        c.delete("x", rev)
        replicate_until_quiescent([a, b, c])
        snap = snapshot(a)
        assert snap == snapshot(b) == snapshot(c)
        assert len(snap["x"]["leaves"]) == 3  # two edits and a deletion, all kept
        assert len(snap["x"]["winner"][1]) == 1  # one live conflict
    finally:
        for db in (a, b, c):
            db.close()
