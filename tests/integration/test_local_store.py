"""LocalDatabase specifics: files, processes, crashes, stemming, compaction."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from pouchsync_sync import LocalDatabase, NotFound, PouchSyncError

ROOT = Path(__file__).resolve().parents[2]


def _run_py(code: str, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_name_is_file_stem_and_memory(tmp_path):
    with LocalDatabase(tmp_path / "todos.sqlite") as db:
        assert db.name == "todos"
        assert db.info()["db_name"] == "todos"
    with LocalDatabase(":memory:") as mem:
        assert mem.name == "memory"
    assert LocalDatabase(":memory:", name="x").name == "x"


def test_two_objects_on_one_file_see_each_other(tmp_path):
    path = tmp_path / "shared.sqlite"
    with LocalDatabase(path) as one, LocalDatabase(path) as two:
        assert one.identity() == two.identity()
        one.put({"_id": "a", "v": 1})
        assert two.get("a")["v"] == 1
        last = two.changes()["last_seq"]
        got = {}

        def wait():
            got["r"] = two.changes(since=last, feed="longpoll", timeout=20)

        reader = threading.Thread(target=wait, name="test-reader")
        reader.start()
        one.put({"_id": "b"})
        reader.join(20)
        assert [r["id"] for r in got["r"]["results"]] == ["b"]


def test_longpoll_wakes_on_write_from_another_process(tmp_path):
    path = tmp_path / "xproc.sqlite"
    with LocalDatabase(path) as db:
        db.put({"_id": "first"})
        last = db.changes()["last_seq"]
        writer = _run_py(f"""
            import sys
            from pouchsync_sync import LocalDatabase
            sys.stdin.readline()
            LocalDatabase({str(path)!r}).put({{"_id": "from-other-process"}})
            print("written", flush=True)
        """, stdin=subprocess.PIPE)
        try:
            started = time.monotonic()
            writer.stdin.write("go\n")
            writer.stdin.flush()
            assert writer.stdout.readline().strip() == "written"
            written_at = time.monotonic()
            result = db.changes(since=last, feed="longpoll", timeout=20)
            woke_after = time.monotonic() - written_at
        finally:
            writer.wait(20)
        assert [r["id"] for r in result["results"]] == ["from-other-process"]
        assert woke_after < 1.0, f"took {woke_after:.2f}s (started {started})"


def test_process_killed_mid_write_leaves_file_consistent(tmp_path):
    path = tmp_path / "crash.sqlite"
    writer = _run_py(f"""
        from pouchsync_sync import LocalDatabase
        db = LocalDatabase({str(path)!r})
        n = 0
        while True:
            db.bulk_docs([{{"_id": f"d{{n}}-{{i}}", "blob": "x" * 2000}} for i in range(200)])
            n += 1
            if n == 3:
                print("going", flush=True)
    """)
    try:
        assert writer.stdout.readline().strip() == "going"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(20)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with LocalDatabase(path) as db:
        count = db.info()["doc_count"]
        assert count >= 600 and count % 200 == 0  # whole batches only
        rows = db.changes()["results"]
        assert len(rows) == count
        db.put({"_id": "after-crash"})


def test_revs_limit_stems_history(tmp_path):
    with LocalDatabase(tmp_path / "stem.sqlite", revs_limit=5) as db:
        rev = db.put({"_id": "a", "v": 0})["rev"]
        for i in range(1, 20):
            rev = db.put({"_id": "a", "_rev": rev, "v": i})["rev"]
        doc = db.get("a", revs=True)
        assert doc["v"] == 19 and doc["_revisions"]["start"] == 20
        assert len(doc["_revisions"]["ids"]) == 5
        with pytest.raises(NotFound):
            db.get("a", rev="1-" + "0" * 32)


def test_compact_drops_old_bodies_keeps_leaves_and_attachments(tmp_path):
    with LocalDatabase(tmp_path / "compact.sqlite") as db:
        r1 = db.put({"_id": "a", "v": 1, "_attachments": {
            "t.txt": {"content_type": "text/plain", "data": "aGVsbG8="}}})["rev"]
        stub = db.get("a")["_attachments"]["t.txt"]
        r2 = db.put({"_id": "a", "_rev": r1, "v": 2, "_attachments": {"t.txt": stub}})["rev"]
        r3 = db.put({"_id": "b", "_attachments": {
            "u.txt": {"content_type": "text/plain", "data": "d29ybGQ="}}})["rev"]
        db.delete("b", r3)
        db.compact()
        with pytest.raises(NotFound):
            db.get("a", rev=r1)
        assert db.get("a", rev=r2)["v"] == 2
        assert db.get_attachment("a", "t.txt") == b"hello"
        assert db.get("a", revs_info=True)["_revs_info"][1]["status"] == "missing"


def test_closed_database_refuses_calls(tmp_path):
    db = LocalDatabase(tmp_path / "closed.sqlite")
    db.close()
    db.close()  # idempotent
    with pytest.raises(PouchSyncError):
        db.get("a")


def test_attachment_stubs_replicated_by_digest(tmp_path):
    with LocalDatabase(":memory:") as src, LocalDatabase(":memory:") as dst:
        src.put({"_id": "a", "_attachments": {"t.txt": {"content_type": "text/plain", "data": "aGk="}}})
        full = src.bulk_get([{"id": "a"}], revs=True, attachments=True)["results"][0]["docs"][0]["ok"]
        assert dst.bulk_docs([full], new_edits=False) == []
        assert dst.get_attachment("a", "t.txt") == b"hi"
        # a second revision sent with a stub: the target already has the digest
        rev = src.get("a")["_rev"]
        stub = src.get("a")["_attachments"]["t.txt"]
        src.put({"_id": "a", "_rev": rev, "v": 2, "_attachments": {"t.txt": stub}})
        doc = src.bulk_get([{"id": "a", "atts_since": [rev]}], revs=True, attachments=True)
        second = doc["results"][0]["docs"][0]["ok"]
        assert second["_attachments"]["t.txt"].get("stub") is True
        assert dst.bulk_docs([second], new_edits=False) == []
        assert dst.get_attachment("a", "t.txt") == b"hi"
        # a stub whose digest the target lacks is refused for that doc only
        bad = dict(second, _rev="3-zz", _revisions={"start": 3, "ids": ["zz"] + second["_revisions"]["ids"]},
                   _attachments={"n.txt": {"stub": True, "digest": "md5-AAAAAAAAAAAAAAAAAAAAAA==",
                                           "revpos": 3, "content_type": "text/plain"}})
        failures = dst.bulk_docs([bad], new_edits=False)
        assert failures and failures[0]["error"] == "missing_stub"
        assert dst.get("a")["_rev"] == second["_rev"]


def test_lying_attachment_digest_is_refused():
    with LocalDatabase(":memory:") as db:
        from pouchsync_sync import BadRequest
        with pytest.raises(BadRequest):
            db.put({"_id": "a", "_attachments": {"t.txt": {"content_type": "text/plain", "data": "aGk=",
                                                            "digest": "md5-AAAAAAAAAAAAAAAAAAAAAA=="}}})
        with pytest.raises(BadRequest):
            db.put({"_id": "a", "_attachments": {"t.txt": {"content_type": "text/plain", "data": "aGk=",
                                                            "length": 99}}})
        with pytest.raises(BadRequest):
            db.put({"_id": "a", "v": float("nan")})
        with pytest.raises(NotFound):
            db.get("a")


@pytest.mark.parametrize("new_edits", [True, False])
def test_text_that_is_not_utf8_is_refused_whole(new_edits):
    from pouchsync_sync import BadRequest
    with LocalDatabase(":memory:") as db:
        good = {"_id": "good", "v": 1}
        bad = {"_id": "bad", "v": "\ud800"}
        if not new_edits:
            good.update(_rev="1-a", _revisions={"start": 1, "ids": ["a"]})
            bad.update(_rev="1-b", _revisions={"start": 1, "ids": ["b"]})
        with pytest.raises(BadRequest):
            db.bulk_docs([good, bad], new_edits=new_edits)
        with pytest.raises(BadRequest):
            db.bulk_docs([dict(good, _id="\udc00x")], new_edits=new_edits)
        assert db.info()["doc_count"] == 0


def test_replicated_write_refuses_bad_fields():
    from pouchsync_sync import BadRequest
    with LocalDatabase(":memory:") as db:
        base = {"_rev": "1-a", "_revisions": {"start": 1, "ids": ["a"]}}
        for bad in ({"_id": "x", "_bogus": 1}, {"_id": "_nope"}, {"_id": ""}, {"_id": 3},
                    {"_id": "x", "_deleted": "yes"}, {"_id": "x", 5: "int key"}):
            with pytest.raises(BadRequest):
                db.bulk_docs([{**base, **bad}], new_edits=False)
        assert db.bulk_docs([{**base, "_id": "_design/d", "views": {}}], new_edits=False) == []
        assert db.get("_design/d")["views"] == {}
