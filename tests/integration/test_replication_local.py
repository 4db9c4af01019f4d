"""The replicator between embedded stores: what arrives, checkpoints, options, errors, live.

The helpers at the top (``snapshot``, ``Wrapper``) are reused by the other
``test_replication*`` modules.
"""

from __future__ import annotations

import base64
import threading
from typing import Any, Callable, Mapping, Sequence

import pytest

from pouchsync_sync import Database
from pouchsync_sync.errors import Forbidden, NotFound, TransportError
from pouchsync_sync.replication import ReplicationResult, Replicator, replicate
from pouchsync_sync.store.local import LocalDatabase


# -- helpers -----------------------------------------------------------------------------
def all_ids(db: Database) -> list[str]:
    """Every doc id, deleted ones included (from the changes feed)."""
    ids: set[str] = set()
    since: Any = 0
    while True:
        answer = db.changes(since=since, limit=1000)
        rows = answer["results"]
        ids.update(row["id"] for row in rows)
        if not rows:
            return sorted(ids)
        since = answer["last_seq"]


def snapshot(db: Database) -> dict[str, Any]:
    """Everything replication must carry: every leaf with its body and ``_revisions``,
    the winner and the conflicts, per doc id (deleted docs included)."""
    out: dict[str, Any] = {}
    for doc_id in all_ids(db):
        leaves = db.get(doc_id, open_revs="all", revs=True)
        bodies = sorted((entry["ok"] for entry in leaves if "ok" in entry),
                        key=lambda d: d["_rev"])
        try:
            winner = db.get(doc_id, conflicts=True)
            head: Any = (winner["_rev"], sorted(winner.get("_conflicts", [])))
        except NotFound:
            head = "deleted"
        out[doc_id] = {"leaves": bodies, "winner": head}
    return out


class Wrapper(Database):
    """A Database that forwards to another; tests override one method to fake a refusal
    or a failure at the Database seam."""

    def __init__(self, inner: Database) -> None:
        self.inner = inner
        self.name = inner.name

    def identity(self) -> str:
        return self.inner.identity()

    def info(self) -> dict[str, Any]:
        return self.inner.info()

    def put(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        return self.inner.put(doc)

    def post(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        return self.inner.post(doc)

    def get(self, doc_id: str, **kwargs: Any) -> Any:
        return self.inner.get(doc_id, **kwargs)

    def delete(self, doc_id: str, rev: str) -> dict[str, Any]:
        return self.inner.delete(doc_id, rev)

    def bulk_docs(self, docs: Sequence[Mapping[str, Any]], *, new_edits: bool = True) -> list:
        return self.inner.bulk_docs(docs, new_edits=new_edits)

    def all_docs(self, **kwargs: Any) -> dict[str, Any]:
        return self.inner.all_docs(**kwargs)

    def changes(self, **kwargs: Any) -> dict[str, Any]:
        return self.inner.changes(**kwargs)

    def revs_diff(self, revs: Mapping[str, Sequence[str]]) -> dict[str, Any]:
        return self.inner.revs_diff(revs)

    def bulk_get(self, docs: Sequence[Mapping[str, Any]], **kwargs: Any) -> dict[str, Any]:
        return self.inner.bulk_get(docs, **kwargs)

    def get_attachment(self, doc_id: str, name: str, rev: str | None = None) -> bytes:
        return self.inner.get_attachment(doc_id, name, rev)


def fill(db: Database, count: int, prefix: str = "doc", **extra: Any) -> None:
    db.bulk_docs([{"_id": f"{prefix}{i:06d}", "n": i, **extra} for i in range(count)])


def make_conflict(a: Database, b: Database, doc_id: str) -> None:
    """The same doc edited differently on both sides after a common first revision."""
    rev = a.put({"_id": doc_id, "v": 0})["rev"]
    replicate(a, b)
    a.put({"_id": doc_id, "_rev": rev, "v": "from a"})
    b.put({"_id": doc_id, "_rev": rev, "v": "from b"})


@pytest.fixture
def mem(backend_local_memory) -> Callable[..., LocalDatabase]:
    """Fresh in-memory stores (closed at teardown by the contract backend's factory)."""
    return lambda name="db": backend_local_memory(name)


# -- what arrives ------------------------------------------------------------------------
@pytest.mark.parametrize("batches_limit", [1, 10], ids=["inline", "read-ahead"])
def test_one_shot_carries_updates_deletions_conflicts_and_history(mem, batches_limit) -> None:
    a, b = mem("a"), mem("b")
    fill(a, 50)
    rev = a.get("doc000001")["_rev"]
    rev = a.put({"_id": "doc000001", "_rev": rev, "n": "updated"})["rev"]
    a.put({"_id": "doc000001", "_rev": rev, "n": "updated twice"})
    a.delete("doc000002", a.get("doc000002")["_rev"])
    a.put({"_id": "_local/private", "x": 1})
    make_conflict(a, b, "clash")
    replicate(b, a)

    result = replicate(a, b, batch_size=7, batches_limit=batches_limit)

    assert isinstance(result, ReplicationResult)
    assert result.ok and result.status == "complete" and result.error is None
    assert result.doc_write_failures == 0 and result.errors == []
    assert result.start_time is not None and result.end_time >= result.start_time
    assert result.last_seq is not None
    assert snapshot(a) == snapshot(b)
    winner = b.get("clash", conflicts=True)
    assert len(winner["_conflicts"]) == 1
    assert b.get("doc000001", revs=True)["_revisions"]["start"] == 3
    with pytest.raises(NotFound):
        b.get("doc000002")
    with pytest.raises(NotFound):
        b.get("_local/private")


def test_second_run_reads_nothing_and_checkpoints_are_local_docs(mem) -> None:
    a, b = mem("a"), mem("b")
    fill(a, 30)
    r = Replicator(a, b, batch_size=7)
    first = r.run()
    assert first.docs_read == 30 and first.docs_written == 30
    log_id = f"_local/{r.replication_id}"
    source_log, target_log = a.get(log_id), b.get(log_id)
    assert source_log["session_id"] == target_log["session_id"] == r.session_id
    assert source_log["source_last_seq"] == target_log["source_last_seq"] == first.last_seq
    assert source_log["history"][0]["docs_written"] == 30
    assert log_id not in all_ids(a) and log_id not in all_ids(b)

    second = replicate(a, b, batch_size=7)
    assert second.docs_read == 0 and second.docs_written == 0
    fill(a, 3, prefix="more")
    third = replicate(a, b, batch_size=7)
    assert third.docs_read == 3
    # the empty second run had nothing to checkpoint; the third added its session
    assert len(b.get(log_id)["history"]) == 2


def test_docs_already_on_target_are_not_fetched(mem) -> None:
    a, b = mem("a"), mem("b")
    fill(a, 20)
    replicate(a, b, checkpoint=False)
    again = replicate(a, b, checkpoint=False)
    assert again.docs_read == 0 and again.status == "complete"


def test_since_and_checkpoint_false(mem) -> None:
    a, b = mem("a"), mem("b")
    fill(a, 5)
    seq = a.changes(since=0)["last_seq"]
    fill(a, 4, prefix="late")
    result = replicate(a, b, since=seq, checkpoint=False)
    assert result.docs_read == 4
    assert sorted(row["id"] for row in b.all_docs()["rows"]) == [f"late{i:06d}" for i in range(4)]
    r = Replicator(a, b, checkpoint=False)
    r.run()
    with pytest.raises(NotFound):
        a.get(f"_local/{r.replication_id}")


def test_attachments_arrive_and_unchanged_ones_come_as_stubs(mem) -> None:
    a, b = mem("a"), mem("b")
    data = bytes(range(256)) * 40
    rev = a.put({"_id": "att", "v": 1, "_attachments": {"blob.bin": {
        "content_type": "application/octet-stream",
        "data": base64.b64encode(data).decode()}}})["rev"]
    replicate(a, b)
    assert b.get_attachment("att", "blob.bin") == data

    stub = a.get("att")["_attachments"]["blob.bin"]
    a.put({"_id": "att", "_rev": rev, "v": 2, "_attachments": {"blob.bin": stub}})
    seen: list[dict] = []

    class Spy(Wrapper):
        def bulk_get(self, docs, **kwargs):
            answer = super().bulk_get(docs, **kwargs)
            seen.append(answer)
            return answer

    result = replicate(Spy(a), b)
    assert result.docs_written == 1
    sent = seen[0]["results"][0]["docs"][0]["ok"]["_attachments"]["blob.bin"]
    assert sent.get("stub") is True and "data" not in sent  # reused on the target by digest
    assert b.get("att")["v"] == 2
    assert b.get_attachment("att", "blob.bin") == data
    assert snapshot(a) == snapshot(b)


# -- options -----------------------------------------------------------------------------
def test_doc_ids_selector_and_filter(mem) -> None:
    a = mem("a")
    a.bulk_docs([{"_id": f"d{i}", "kind": "even" if i % 2 == 0 else "odd", "i": i}
                 for i in range(10)])
    by_ids, by_selector, by_filter = mem("i"), mem("s"), mem("f")
    replicate(a, by_ids, doc_ids=["d1", "d2", "nosuch"])
    replicate(a, by_selector, selector={"kind": "even"})

    def only_big(doc: dict) -> bool:
        return doc.get("i", 0) >= 7

    replicate(a, by_filter, filter=only_big)
    assert [r["id"] for r in by_ids.all_docs()["rows"]] == ["d1", "d2"]
    assert [r["id"] for r in by_selector.all_docs()["rows"]] == ["d0", "d2", "d4", "d6", "d8"]
    assert [r["id"] for r in by_filter.all_docs()["rows"]] == ["d7", "d8", "d9"]
    # each filtered replication has its own checkpoint: a full run still copies all
    everything = mem("all")
    replicate(a, everything, doc_ids=["d1"])
    assert replicate(a, everything).docs_written == 9


# -- failures ----------------------------------------------------------------------------
def test_refused_docs_count_as_write_failures_and_the_rest_goes_on(mem) -> None:
    a, inner = mem("a"), mem("b")
    fill(a, 10)

    class Refusing(Wrapper):
        def bulk_docs(self, docs, *, new_edits=True):
            keep = [d for d in docs if d["_id"] != "doc000003"]
            out = list(super().bulk_docs(keep, new_edits=new_edits))
            out += [{"id": d["_id"], "rev": d["_rev"], "error": "forbidden",
                     "reason": "no threes"} for d in docs if d["_id"] == "doc000003"]
            return out

    batches: list[dict] = []
    r = Replicator(a, Refusing(inner), batch_size=4, on_batch=batches.append)
    result = r.run()
    assert result.status == "complete" and result.ok
    assert result.doc_write_failures == 1 and result.docs_written == 9
    assert result.errors == [{"id": "doc000003", "rev": a.get("doc000003")["_rev"],
                              "error": "forbidden", "reason": "no threes"}]
    assert len(inner.all_docs()["rows"]) == 9
    assert all("doc000003" not in [d["_id"] for d in b["docs"]] for b in batches)
    assert sum(len(b["docs"]) for b in batches) == 9
    assert batches[-1]["docs_written"] == 9 and batches[-1]["doc_write_failures"] == 1


def test_unreadable_revisions_are_counted_not_fatal(mem) -> None:
    a, b = mem("a"), mem("b")
    fill(a, 5)
    for row in a.all_docs(include_docs=True)["rows"]:  # second generation: fetched by bulk_get
        a.put(row["doc"])

    class Vanishing(Wrapper):
        def bulk_get(self, docs, **kwargs):
            answer = super().bulk_get(docs, **kwargs)
            for result in answer["results"]:
                if result["id"] == "doc000004":
                    result["docs"] = [{"error": {"id": "doc000004", "rev": "1-x",
                                                 "error": "not_found", "reason": "missing"}}]
            return answer

    result = replicate(Vanishing(a), b)
    assert result.status == "complete"
    assert result.docs_read == 4 and result.docs_written == 4
    assert result.doc_write_failures == 1 and result.errors[0]["id"] == "doc000004"


@pytest.mark.parametrize("batches_limit", [1, 10], ids=["inline", "read-ahead"])
def test_transport_error_ends_one_shot_with_partial_result_then_resumes(mem, batches_limit
                                                                        ) -> None:
    a, b = mem("a"), mem("b")
    fill(a, 100)

    class Flaky(Wrapper):
        calls = 0

        def changes(self, **kwargs):
            Flaky.calls += 1
            if Flaky.calls == 3:
                raise TransportError("connection reset")
            return super().changes(**kwargs)

    states: list[str] = []
    result = Replicator(Flaky(a), b, batch_size=10, batches_limit=batches_limit,
                        on_state=states.append).run()
    assert result.status == "error" and not result.ok
    assert isinstance(result.error, TransportError)
    assert result.docs_written == 20 and result.docs_read == 20
    assert states == ["active", "error"]
    assert len(b.all_docs()["rows"]) == 20

    rest = replicate(a, b, batch_size=10)
    assert rest.status == "complete" and rest.docs_read == 80
    assert snapshot(a) == snapshot(b)


def test_read_only_source_checkpoints_on_target_only(mem, caplog) -> None:
    a, b = mem("a"), mem("b")
    fill(a, 12)

    class ReadOnly(Wrapper):
        def put(self, doc):
            raise Forbidden("read-only database")

    with caplog.at_level("WARNING", logger="pouchsync_sync.replication"):
        first = replicate(ReadOnly(a), b, batch_size=5)
    assert first.status == "complete" and first.docs_written == 12
    assert sum("refuses checkpoint writes" in r.getMessage() for r in caplog.records) == 1
    fill(a, 2, prefix="new")
    second = replicate(ReadOnly(a), b, batch_size=5)
    assert second.status == "complete" and second.docs_read == 2


def test_missing_database_fails_before_writing(mem) -> None:
    a, b = mem("a"), mem("b")

    class Gone(Wrapper):
        def info(self):
            raise NotFound("Database does not exist.")

    result = replicate(a, Gone(b))
    assert result.status == "error" and isinstance(result.error, NotFound)


def test_callback_exceptions_do_not_break_replication(mem) -> None:
    a, b = mem("a"), mem("b")
    fill(a, 10)

    def boom(_: Any) -> None:
        raise RuntimeError("receiver bug")

    result = Replicator(a, b, batch_size=3, on_batch=boom, on_state=boom).run()
    assert result.status == "complete" and result.docs_written == 10


# -- byte bounds -------------------------------------------------------------------------
def test_big_docs_are_written_in_byte_bounded_chunks(mem) -> None:
    a, inner = mem("a"), mem("b")
    a.bulk_docs([{"_id": f"big{i}", "blob": "x" * 50_000} for i in range(12)])
    sizes: list[int] = []
    fetched: list[int] = []

    class Counting(Wrapper):
        def bulk_docs(self, docs, *, new_edits=True):
            sizes.append(len(docs))
            return super().bulk_docs(docs, new_edits=new_edits)

    class Source(Wrapper):
        def bulk_get(self, docs, **kwargs):
            fetched.append(len(docs))
            return super().bulk_get(docs, **kwargs)

    result = Replicator(Source(a), Counting(inner), batch_size=12,
                        max_batch_bytes=120_000).run()
    assert result.docs_written == 12
    assert max(sizes) <= 2 and sum(sizes) == 12
    # the first two (100 KB <= 120,000 bytes) came whole as text rows, the other ten fetched
    assert fetched[0] == 10 and max(fetched[1:], default=2) <= 2
    assert snapshot(a) == snapshot(inner)


# -- live --------------------------------------------------------------------------------
@pytest.mark.parametrize("batches_limit", [1, 10], ids=["inline", "read-ahead"])
def test_live_replicates_as_changes_come_and_cancels_within_one_wait(mem, batches_limit
                                                                     ) -> None:
    a, b = mem("a"), mem("b")
    fill(a, 5)
    cancel = threading.Event()
    states: list[str] = []
    batches: list[dict] = []
    r = Replicator(a, b, live=True, cancel=cancel, longpoll_timeout=0.5,
                   batches_limit=batches_limit, on_state=states.append,
                   on_batch=batches.append)
    out: list[ReplicationResult] = []
    worker = threading.Thread(target=lambda: out.append(r.run()), name="pouchsync-test-live")
    worker.start()
    try:
        assert r.wait_caught_up(10)
        assert len(b.all_docs()["rows"]) == 5
        assert r.state in ("paused", "active")
        a.put({"_id": "live1", "x": 1})
        assert r.wait_caught_up(10)
        assert b.get("live1")["x"] == 1
        a.put({"_id": "live2", "x": 2})
        assert r.wait_caught_up(10)
        assert b.get("live2")["x"] == 2
    finally:
        cancel.set()
        worker.join(5)
    assert not worker.is_alive()
    assert out[0].status == "cancelled" and out[0].ok
    assert out[0].docs_written == 7
    assert states[0] == "active" and "paused" in states and states[-1] == "cancelled"
    assert [d["_id"] for b_ in batches for d in b_["docs"]][-2:] == ["live1", "live2"]
    assert not r.wait_caught_up(0.1)


def test_wait_caught_up_on_one_shot(mem) -> None:
    a, b = mem("a"), mem("b")
    fill(a, 3)
    r = Replicator(a, b)
    assert not r.wait_caught_up(0.05)  # not started
    r.run()
    assert r.state == "complete"
    assert r.wait_caught_up(0.05)


def test_run_twice_is_refused(mem) -> None:
    r = Replicator(mem("a"), mem("b"))
    r.run()
    with pytest.raises(Exception, match="runs once"):
        r.run()


def test_new_docs_are_taken_from_changes(mem) -> None:
    a, b = mem("a"), mem("b")
    fill(a, 100)
    fetched: list[int] = []

    class Source(Wrapper):
        def bulk_get(self, docs, **kwargs):
            fetched.append(len(docs))
            return super().bulk_get(docs, **kwargs)

    result = replicate(Source(a), b, batch_size=10)
    assert result.docs_read == 100 and result.docs_written == 100
    assert fetched == []  # first-generation docs come whole, as text rows, from the start
    assert snapshot(a) == snapshot(b)
    # what the changes feed carried is exactly what bulk_get would have answered
    for doc_id in ("doc000000", "doc000050"):
        rev = a.get(doc_id)["_rev"]
        via_get = a.bulk_get([{"id": doc_id, "rev": rev}], revs=True, latest=True,
                             attachments=True)["results"][0]["docs"][0]["ok"]
        assert b.get(doc_id, revs=True) == via_get


@pytest.mark.parametrize("batches_limit", [1, 10], ids=["inline", "read-ahead"])
def test_stopping_inside_a_batch_never_checkpoints_past_unfetched_docs(mem, batches_limit
                                                                       ) -> None:
    a, b = mem("a"), mem("b")
    a.bulk_docs([{"_id": f"big{i:02d}", "blob": "y" * 40_000} for i in range(30)])
    fetches: list[int] = []  # batch 1: one bulk_get of 10; then one doc per bulk_get

    class Blip:
        """A cancel flag seen set once, by the read side, in the middle of a batch."""

        def is_set(self) -> bool:
            if len(fetches) == 2 and not getattr(self, "fired", False):
                self.fired = True
                return True
            return False

    class Source(Wrapper):
        def bulk_get(self, docs, **kwargs):
            fetches.append(len(docs))
            return super().bulk_get(docs, **kwargs)

    first = Replicator(Source(a), b, batch_size=10, batches_limit=batches_limit,
                       max_batch_bytes=50_000, cancel=Blip()).run()
    assert first.status == "cancelled"
    assert first.docs_read < 30
    second = replicate(a, b, batch_size=10)
    assert second.status == "complete"
    # everything not written arrives: nothing was skipped by a checkpoint too far ahead
    assert second.docs_read == 30 - first.docs_written
    assert snapshot(a) == snapshot(b)


def test_checkpoint_history_is_bounded_and_newest_first(mem) -> None:
    a, b = mem("a"), mem("b")
    sessions = []
    for run in range(7):
        a.put({"_id": f"run{run}"})
        r = Replicator(a, b)
        assert r.run().docs_written == 1
        sessions.append(r.session_id)
    log_doc = b.get(f"_local/{r.replication_id}")
    assert [h["session_id"] for h in log_doc["history"]] == sessions[::-1][:5]
    assert a.get(f"_local/{r.replication_id}")["history"] == log_doc["history"]


def test_live_filtered_replication_is_caught_up_after_rejected_changes(mem) -> None:
    a, b = mem("a"), mem("b")
    cancel = threading.Event()

    def wanted(doc: dict) -> bool:
        return doc.get("keep") is True

    r = Replicator(a, b, live=True, cancel=cancel, filter=wanted, longpoll_timeout=0.5)
    out: list[ReplicationResult] = []
    worker = threading.Thread(target=lambda: out.append(r.run()), name="pouchsync-test-filter")
    worker.start()
    try:
        assert r.wait_caught_up(10)
        a.put({"_id": "no", "keep": False})
        assert r.wait_caught_up(10)
        a.put({"_id": "yes", "keep": True})
        a.put({"_id": "no2"})
        assert r.wait_caught_up(10)
        assert [row["id"] for row in b.all_docs()["rows"]] == ["yes"]
    finally:
        cancel.set()
        worker.join(5)
    assert not worker.is_alive() and out[0].status == "cancelled"
    assert out[0].docs_written == 1


def test_bad_arguments_are_refused(mem) -> None:
    a, b = mem("a"), mem("b")
    for bad in (dict(batch_size=0), dict(batches_limit=0), dict(max_batch_bytes=0),
                dict(longpoll_timeout=0)):
        with pytest.raises(ValueError):
            Replicator(a, b, **bad)


@pytest.mark.parametrize("interval", [0, 600])
def test_one_shot_checkpoints_at_most_every_interval_and_at_the_end(mem, interval) -> None:
    source, target = mem("s"), mem("t")
    source.bulk_docs([{"_id": f"d{i:04d}", "n": i} for i in range(1000)])
    puts: list[str] = []

    class CountingCheckpoints(Wrapper):
        def put(self, doc: Mapping[str, Any]) -> dict[str, Any]:
            if doc["_id"].startswith("_local/"):
                puts.append(doc["_id"])
            return super().put(doc)

    result = Replicator(source, CountingCheckpoints(target), batch_size=100,
                        checkpoint_interval=interval).run()
    assert result.status == "complete" and result.docs_written == 1000
    if interval == 0:
        assert len(puts) == 10  # after every batch
    else:
        assert len(puts) == 2  # the first batch, then the end of the run
    # the end was recorded on both sides: a second run reads nothing
    again = Replicator(source, target, batch_size=100).run()
    assert again.status == "complete" and again.docs_read == 0
    assert again.last_seq == result.last_seq


def test_the_next_batch_of_changes_is_read_while_this_one_is_written(mem) -> None:
    """With read-ahead, the read of batch N+1 starts before batch N is written."""
    import threading

    a, inner = mem("a"), mem("b")
    fill(a, 50)
    reads: list[Any] = []
    second_read = threading.Event()
    overlapped: list[bool] = []

    class Source(Wrapper):
        def changes_texts(self, **kwargs: Any) -> dict[str, Any]:
            reads.append(kwargs["since"])
            if len(reads) == 2:
                second_read.set()
            return self.inner.changes_texts(**kwargs)

    class Target(Wrapper):
        def write_missing_texts(self, rows: Any) -> Any:
            if not overlapped:  # the first write waits for the second read to begin
                overlapped.append(second_read.wait(10))
            return self.inner.write_missing_texts(rows)

    result = Replicator(Source(a), Target(inner), batch_size=10, batches_limit=4,
                        checkpoint_interval=0).run()
    assert result.ok and result.docs_written == 50
    assert overlapped == [True]
    assert reads[:2] == [0, 10] and len(reads) >= 5
    assert snapshot(a) == snapshot(inner)
    # inline (batches_limit=1): no read-ahead thread, one read after the other
    reads.clear()
    assert Replicator(Source(a), mem("c"), batch_size=10, batches_limit=1).run().ok
    assert reads == [0, 10, 20, 30, 40]  # the last said nothing is pending
