"""Contract: the changes feed, longpoll and concurrent writers on every backend."""

from __future__ import annotations

import threading
import time

import pytest

from pouchsync_sync import BadRequest


def _ids(result):
    return [row["id"] for row in result["results"]]


def test_changes_one_row_per_doc_at_latest_seq(db):
    r = db.put({"_id": "a", "v": 1})
    db.put({"_id": "b", "v": 1})
    db.put({"_id": "a", "_rev": r["rev"], "v": 2})
    result = db.changes()
    assert _ids(result) == ["b", "a"]
    assert result["results"][1]["changes"][0]["rev"].startswith("2-")
    assert "last_seq" in result


def test_changes_since_and_limit(db):
    for i in range(5):
        db.put({"_id": f"d{i}"})
    first = db.changes(limit=2)
    assert _ids(first) == ["d0", "d1"]
    rest = db.changes(since=first["last_seq"])
    assert _ids(rest) == ["d2", "d3", "d4"]
    assert _ids(db.changes(since=rest["last_seq"])) == []


def test_changes_resume_from_opaque_seq(db):
    db.put({"_id": "a"})
    seq = db.changes()["results"][0]["seq"]
    db.put({"_id": "b"})
    assert _ids(db.changes(since=seq)) == ["b"]


def test_changes_include_docs_conflicts_and_all_docs_style(db):
    db.bulk_docs([
        {"_id": "c", "_rev": "2-bbb", "_revisions": {"start": 2, "ids": ["bbb", "aaa"]}, "x": 1},
        {"_id": "c", "_rev": "2-aab", "_revisions": {"start": 2, "ids": ["aab", "aaa"]}, "x": 2},
    ], new_edits=False)
    main = db.changes(include_docs=True, conflicts=True)["results"][0]
    assert main["changes"] == [{"rev": "2-bbb"}]
    assert main["doc"]["_rev"] == "2-bbb" and main["doc"]["_conflicts"] == ["2-aab"]
    every = db.changes(style="all_docs")["results"][0]
    assert sorted(c["rev"] for c in every["changes"]) == ["2-aab", "2-bbb"]


def test_changes_doc_ids_and_selector(db):
    db.bulk_docs([{"_id": "a", "type": "todo", "n": 1}, {"_id": "b", "type": "note", "n": 2},
                  {"_id": "c", "type": "todo", "n": 3}])
    assert _ids(db.changes(doc_ids=["c", "b"])) == ["b", "c"]
    assert _ids(db.changes(selector={"type": "todo", "n": {"$gt": 1}})) == ["c"]
    with pytest.raises(BadRequest):
        db.changes(selector={"n": {"$bogus": 1}})


def test_changes_deleted_rows(db):
    rev = db.put({"_id": "a"})["rev"]
    db.delete("a", rev)
    row = db.changes(include_docs=True)["results"][0]
    assert row["deleted"] is True
    assert row["doc"]["_deleted"] is True


def test_changes_descending(db):
    for i in range(3):
        db.put({"_id": f"d{i}"})
    assert _ids(db.changes(descending=True)) == ["d2", "d1", "d0"]


def test_changes_since_now(db):
    db.put({"_id": "old"})
    assert _ids(db.changes(since="now")) == []


def test_longpoll_times_out_empty(db):
    db.put({"_id": "a"})
    last = db.changes()["last_seq"]
    started = time.monotonic()
    result = db.changes(since=last, feed="longpoll", timeout=0.5)
    assert result["results"] == []
    assert time.monotonic() - started >= 0.4


def test_longpoll_wakes_on_write_from_another_thread(db):
    last = db.changes()["last_seq"]
    got: dict = {}
    ready = threading.Event()

    def reader():
        ready.set()
        got["result"] = db.changes(since=last, feed="longpoll", timeout=20)

    thread = threading.Thread(target=reader, name="test-longpoll-reader")
    thread.start()
    ready.wait(5)
    db.put({"_id": "wake"})
    thread.join(20)
    assert not thread.is_alive()
    assert _ids(got["result"]) == ["wake"]


def test_concurrent_writers(db):
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            db.bulk_docs([{"_id": f"t{n}-{i}", "n": i} for i in range(50)])
            for i in range(5):
                db.put({"_id": f"single-{n}-{i}"})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,), name=f"test-writer-{n}") for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert db.info()["doc_count"] == 4 * 55
    assert len(db.changes()["results"]) == 4 * 55
