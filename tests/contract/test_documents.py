"""Contract: documents, revisions, conflicts, local docs and errors on every backend."""

from __future__ import annotations

import base64

import pytest

from pouchsync_sync import BadRequest, Conflict, NotFound


def test_put_then_get_roundtrip(db):
    result = db.put({"_id": "a", "title": "x", "n": 1, "nested": {"k": [1, 2, None]}})
    assert result["ok"] is True and result["id"] == "a" and result["rev"].startswith("1-")
    doc = db.get("a")
    assert doc == {"_id": "a", "_rev": result["rev"], "title": "x", "n": 1, "nested": {"k": [1, 2, None]}}


def test_update_needs_current_rev(db):
    first = db.put({"_id": "a", "v": 1})
    second = db.put({"_id": "a", "_rev": first["rev"], "v": 2})
    assert second["rev"].startswith("2-")
    with pytest.raises(Conflict) as info:
        db.put({"_id": "a", "_rev": first["rev"], "v": 3})
    assert info.value.status == 409
    with pytest.raises(Conflict):
        db.put({"_id": "a", "v": 4})
    assert db.get("a")["v"] == 2


def test_put_with_rev_on_missing_doc_conflicts(db):
    with pytest.raises(Conflict):
        db.put({"_id": "ghost", "_rev": "1-abc", "v": 1})


def test_post_generates_id(db):
    result = db.post({"v": 1})
    assert result["ok"] and result["id"]
    assert db.get(result["id"])["v"] == 1


def test_get_missing_and_deleted(db):
    with pytest.raises(NotFound) as info:
        db.get("nope")
    assert info.value.status == 404 and info.value.reason == "missing"
    rev = db.put({"_id": "a", "v": 1})["rev"]
    deleted = db.delete("a", rev)
    assert deleted["ok"] and deleted["rev"].startswith("2-")
    with pytest.raises(NotFound) as info:
        db.get("a")
    assert info.value.reason == "deleted"
    tomb = db.get("a", rev=deleted["rev"])
    assert tomb["_deleted"] is True


def test_recreate_after_delete(db):
    rev = db.put({"_id": "a", "v": 1})["rev"]
    db.delete("a", rev)
    again = db.put({"_id": "a", "v": 2})
    assert again["rev"].startswith("3-")
    assert db.get("a")["v"] == 2


def test_get_old_rev_and_revs(db):
    r1 = db.put({"_id": "a", "v": 1})["rev"]
    r2 = db.put({"_id": "a", "_rev": r1, "v": 2})["rev"]
    assert db.get("a", rev=r1)["v"] == 1
    doc = db.get("a", revs=True)
    assert doc["_revisions"] == {"start": 2, "ids": [r2.split("-", 1)[1], r1.split("-", 1)[1]]}
    info = db.get("a", revs_info=True)["_revs_info"]
    assert [i["rev"] for i in info] == [r2, r1]
    assert info[0]["status"] == "available"


def test_bad_input_is_bad_request(db):
    for bad in ({"_id": "_bogus"}, {"_id": ""}, {"_id": 5}, {"_id": "a", "_rev": "nonsense"},
                {"_id": "a", "_unknown": 1}):
        with pytest.raises(BadRequest):
            db.put(bad)
    with pytest.raises(BadRequest):
        db.put(["not", "a", "dict"])
    with pytest.raises((BadRequest, NotFound)):
        db.get("a", rev="garbage")


def test_bulk_docs_per_doc_results(db):
    rev = db.put({"_id": "taken", "v": 1})["rev"]
    results = db.bulk_docs([{"_id": "x", "v": 1}, {"_id": "taken", "v": 2}, {"v": 3},
                            {"_id": "taken", "_rev": rev, "v": 4}])
    assert results[0]["ok"] and results[0]["id"] == "x"
    assert results[1]["error"] == "conflict" and results[1]["id"] == "taken"
    assert results[2]["ok"] and results[2]["id"]
    assert results[3]["ok"]
    assert db.get("taken")["v"] == 4


def _history(rev_hashes):
    """``_revisions`` for a linear history given oldest first."""
    return {"start": len(rev_hashes), "ids": list(reversed(rev_hashes))}


def test_new_edits_false_builds_conflicts(db):
    assert db.bulk_docs([
        {"_id": "c", "_rev": "3-ccc", "_revisions": _history(["aaa", "bbb", "ccc"]), "x": "winner"},
        {"_id": "c", "_rev": "2-ddd", "_revisions": _history(["aaa", "ddd"]), "x": "loser"},
    ], new_edits=False) == []
    doc = db.get("c", conflicts=True)
    assert doc["_rev"] == "3-ccc" and doc["x"] == "winner"
    assert doc["_conflicts"] == ["2-ddd"]
    assert db.get("c", rev="2-ddd")["x"] == "loser"
    assert db.get("c", revs=True)["_revisions"] == {"start": 3, "ids": ["ccc", "bbb", "aaa"]}
    # replaying is idempotent
    assert db.bulk_docs([{"_id": "c", "_rev": "3-ccc", "_revisions": _history(["aaa", "bbb", "ccc"]),
                          "x": "winner"}], new_edits=False) == []
    assert db.get("c", conflicts=True)["_conflicts"] == ["2-ddd"]


def test_winner_rules(db):
    # higher pos wins; between equal pos the higher hash; a live leaf beats a deleted one
    db.bulk_docs([
        {"_id": "w", "_rev": "2-aaa", "_revisions": _history(["root", "aaa"])},
        {"_id": "w", "_rev": "2-bbb", "_revisions": _history(["root", "bbb"])},
    ], new_edits=False)
    assert db.get("w")["_rev"] == "2-bbb"
    db.bulk_docs([{"_id": "w", "_rev": "3-zzz", "_deleted": True,
                   "_revisions": _history(["root", "bbb", "zzz"])}], new_edits=False)
    assert db.get("w")["_rev"] == "2-aaa"
    db.bulk_docs([{"_id": "w", "_rev": "3-yyy", "_deleted": True,
                   "_revisions": _history(["root", "aaa", "yyy"])}], new_edits=False)
    with pytest.raises(NotFound):
        db.get("w")


def test_open_revs_and_latest(db):
    db.bulk_docs([
        {"_id": "c", "_rev": "3-ccc", "_revisions": _history(["aaa", "bbb", "ccc"]), "x": 3},
        {"_id": "c", "_rev": "2-ddd", "_revisions": _history(["aaa", "ddd"]), "x": 2},
    ], new_edits=False)
    all_leaves = db.get("c", open_revs="all", revs=True)
    got = sorted(entry["ok"]["_rev"] for entry in all_leaves)
    assert got == ["2-ddd", "3-ccc"]
    assert all("_revisions" in entry["ok"] for entry in all_leaves)
    some = db.get("c", open_revs=["3-ccc", "9-zzz"])
    assert {"ok"} == set(some[0]) and some[0]["ok"]["x"] == 3
    assert some[1] == {"missing": "9-zzz"}
    latest = db.get("c", open_revs=["3-ccc"], latest=True)
    assert latest[0]["ok"]["_rev"] == "3-ccc"


def test_delete_creates_tombstone_in_changes(db):
    rev = db.put({"_id": "gone", "v": 1})["rev"]
    db.delete("gone", rev)
    rows = db.changes()["results"]
    row = [r for r in rows if r["id"] == "gone"][0]
    assert row.get("deleted") is True


def test_local_docs(db):
    with pytest.raises(NotFound):
        db.get("_local/cp")
    first = db.put({"_id": "_local/cp", "seq": 1})
    assert first["ok"] and first["rev"].startswith("0-")
    doc = db.get("_local/cp")
    assert doc["seq"] == 1 and doc["_rev"] == first["rev"]
    with pytest.raises(Conflict):
        db.put({"_id": "_local/cp", "seq": 2})
    second = db.put({"_id": "_local/cp", "_rev": first["rev"], "seq": 2})
    assert second["rev"] != first["rev"]
    assert db.get("_local/cp")["seq"] == 2
    # never in changes or all_docs
    assert all(not r["id"].startswith("_local/") for r in db.changes()["results"])
    assert all(not r["id"].startswith("_local/") for r in db.all_docs()["rows"])
    db.delete("_local/cp", second["rev"])
    with pytest.raises(NotFound):
        db.get("_local/cp")


def test_all_docs_options(db):
    for name in "abcde":
        db.put({"_id": name, "v": name})
    rev = db.put({"_id": "f", "v": "f"})["rev"]
    db.delete("f", rev)
    everything = db.all_docs()
    assert [r["id"] for r in everything["rows"]] == list("abcde")
    assert everything["total_rows"] == 5
    page = db.all_docs(startkey="b", endkey="d", include_docs=True)
    assert [r["id"] for r in page["rows"]] == ["b", "c", "d"]
    assert page["rows"][0]["doc"]["v"] == "b"
    assert [r["id"] for r in db.all_docs(limit=2, skip=1)["rows"]] == ["b", "c"]
    assert [r["id"] for r in db.all_docs(descending=True, limit=2)["rows"]] == ["e", "d"]
    keyed = db.all_docs(keys=["c", "nope", "f"], include_docs=True)["rows"]
    assert keyed[0]["id"] == "c" and keyed[0]["doc"]["v"] == "c"
    assert keyed[1] == {"key": "nope", "error": "not_found"}
    assert keyed[2]["value"]["deleted"] is True


def test_info_counts(db):
    rev = db.put({"_id": "a"})["rev"]
    db.put({"_id": "b"})
    db.delete("a", rev)
    info = db.info()
    assert info["doc_count"] == 1
    # allowance (issue 3): pouchdb-server, the couch backend's test server, has no doc_del_count
    if not (type(db).__name__ == "CouchDatabase" and not db.server.is_couchdb()):
        assert info["doc_del_count"] == 1
    assert "update_seq" in info and "db_name" in info


def test_attachments_roundtrip(db):
    data = bytes(range(256)) * 4
    encoded = base64.b64encode(data).decode()
    result = db.put({"_id": "att", "_attachments": {
        "blob.bin": {"content_type": "application/octet-stream", "data": encoded}}})
    stub = db.get("att")["_attachments"]["blob.bin"]
    assert stub["stub"] is True and stub["length"] == len(data) and stub["digest"].startswith("md5-")
    assert stub["revpos"] == 1
    assert db.get_attachment("att", "blob.bin") == data
    inline = db.get("att", attachments=True)["_attachments"]["blob.bin"]
    assert base64.b64decode(inline["data"]) == data
    # a stub on update keeps the attachment
    updated = db.put({"_id": "att", "_rev": result["rev"], "v": 2,
                      "_attachments": {"blob.bin": dict(stub)}})
    assert db.get_attachment("att", "blob.bin", rev=updated["rev"]) == data
    with pytest.raises(NotFound):
        db.get_attachment("att", "nope.txt")


def test_bad_attachment_is_refused_whole(db):
    with pytest.raises(BadRequest):
        db.bulk_docs([{"_id": "ok1", "v": 1},
                      {"_id": "bad", "_attachments": {"x": {"content_type": "text/plain",
                                                            "data": "!!!not base64"}}}])
    with pytest.raises(NotFound):
        db.get("ok1")


def test_revs_diff(db):
    db.bulk_docs([{"_id": "c", "_rev": "2-bbb", "_revisions": _history(["aaa", "bbb"])}],
                 new_edits=False)
    diff = db.revs_diff({"c": ["2-bbb", "3-ccc"], "nosuch": ["1-x"]})
    assert diff["c"]["missing"] == ["3-ccc"]
    assert diff["nosuch"]["missing"] == ["1-x"]
    assert db.revs_diff({"c": ["2-bbb"]}) == {}


def test_write_missing_writes_what_the_database_lacks(db):
    db.bulk_docs([{"_id": "had", "_rev": "1-aaa", "_revisions": _history(["aaa"]), "v": 0}],
                 new_edits=False)
    docs = [
        {"_id": "had", "_rev": "1-aaa", "_revisions": _history(["aaa"]), "v": 0},
        {"_id": "had", "_rev": "1-bbb", "_revisions": _history(["bbb"]), "v": 1},  # a conflict
        {"_id": "new", "_rev": "1-ccc", "_revisions": _history(["ccc"]), "v": 2},
        {"_id": "deep", "_rev": "3-fff", "_revisions": _history(["ddd", "eee", "fff"]), "v": 3},
    ]
    written, failures = db.write_missing(docs)
    assert failures == []
    assert [(d["_id"], d["_rev"]) for d in written] == [("had", "1-bbb"), ("new", "1-ccc"),
                                                        ("deep", "3-fff")]
    assert db.get("had", conflicts=True)["_conflicts"] == ["1-aaa"]
    assert db.get("new")["v"] == 2
    assert db.get("deep", revs=True)["_revisions"] == {"start": 3, "ids": ["fff", "eee", "ddd"]}
    assert db.write_missing(docs) == ([], [])  # replaying writes nothing


def test_write_missing_with_one_doc_several_times_in_a_batch(db):
    docs = [{"_id": "a", "_rev": "1-x", "_revisions": _history(["x"]), "v": 1},
            {"_id": "a", "_rev": "2-y", "_revisions": _history(["x", "y"]), "v": 2},
            {"_id": "a", "_rev": "1-z", "_revisions": _history(["z"]), "v": 3},
            {"_id": "b", "_rev": "1-q", "_revisions": _history(["q"]), "v": 4},
            {"_id": "b", "_rev": "1-q", "_revisions": _history(["q"]), "v": 4}]
    written, failures = db.write_missing(docs)
    assert failures == []
    assert sorted((d["_id"], d["_rev"]) for d in written) == [
        ("a", "1-x"), ("a", "1-z"), ("a", "2-y"), ("b", "1-q")]
    assert db.get("a", conflicts=True)["_conflicts"] == ["1-z"]
    assert db.get("a")["v"] == 2 and db.get("b")["v"] == 4
    rows = {row["id"]: sorted(c["rev"] for c in row["changes"])
            for row in db.changes(style="all_docs")["results"]}
    assert rows == {"a": ["1-z", "2-y"], "b": ["1-q"]}


def test_write_missing_refuses_bad_docs_before_writing(db):
    good = {"_id": "good", "_rev": "1-aaa", "_revisions": _history(["aaa"])}
    for bad in ({"_id": "norev"}, {"_rev": "1-x"}, "not a doc",
                {"_id": "x", "_rev": "2-b", "_revisions": "nope"}):
        with pytest.raises(BadRequest):
            db.write_missing([good, bad])
    assert db.revs_diff({"good": ["1-aaa"]}) == {"good": {"missing": ["1-aaa"]}}


def test_bulk_get_shapes(db):
    db.bulk_docs([
        {"_id": "c", "_rev": "3-ccc", "_revisions": _history(["aaa", "bbb", "ccc"]), "x": 3},
        {"_id": "c", "_rev": "2-ddd", "_revisions": _history(["aaa", "ddd"]), "x": 2},
    ], new_edits=False)
    db.put({"_id": "plain", "v": 1})
    out = db.bulk_get([{"id": "c", "rev": "2-ddd"}, {"id": "plain"}, {"id": "nosuch", "rev": "1-x"},
                       {"id": "c", "rev": "9-zzz"}], revs=True)
    results = out["results"]
    assert [r["id"] for r in results] == ["c", "plain", "nosuch", "c"]
    assert results[0]["docs"][0]["ok"]["x"] == 2
    assert results[0]["docs"][0]["ok"]["_revisions"] == {"start": 2, "ids": ["ddd", "aaa"]}
    assert results[1]["docs"][0]["ok"]["v"] == 1
    assert "error" in results[2]["docs"][0]
    assert results[2]["docs"][0]["error"]["id"] == "nosuch"
    assert "error" in results[3]["docs"][0]


def test_design_docs_are_ordinary_docs(db):
    result = db.put({"_id": "_design/app", "views": {}})
    assert db.get("_design/app")["_rev"] == result["rev"]


def test_special_ids(db):
    for doc_id in ["with/slash", "q?uery", "hash#tag", "per%cent", "ünïcødé", "sp ace", "../_users"]:
        db.put({"_id": doc_id, "v": doc_id})
        assert db.get(doc_id)["v"] == doc_id


def test_replicated_writes_refuse_bad_revisions_whole(db):
    good = {"_id": "fine", "_rev": "1-aaa", "_revisions": {"start": 1, "ids": ["aaa"]}}
    for bad in ({"_id": "x"},  # no _rev
                {"_id": "x", "_rev": "junk"},
                {"_id": "x", "_rev": "2-b", "_revisions": {"start": 3, "ids": ["b", "a"]}},
                {"_id": "x", "_rev": "2-b", "_revisions": {"start": 2, "ids": ["c", "a"]}},
                {"_id": "x", "_rev": "2-b", "_revisions": "nope"}):
        with pytest.raises(BadRequest):
            db.bulk_docs([good, bad], new_edits=False)
    with pytest.raises(NotFound):
        db.get("fine")
