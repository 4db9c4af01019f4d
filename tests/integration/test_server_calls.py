"""The server's calls over real sockets, frame by frame with the raw test peer: every
allowed op, errors as ``{status, error, reason}``, the allow-list, read-only and design
grants, ``write_missing``, pipelining and the in-flight limits. Fixtures and the
connection and channel tests: ``test_server.py``."""

from __future__ import annotations

import base64
from typing import Any

import pytest

import pouchsync_sync as ps
from pouchsync_sync.protocol import messages as m
from tests.integration.test_server import (  # noqa: F401  (fixtures)
    TOKEN,
    WAIT,
    _eventually,
    clients,
    dbs,
    make_server,
    server,
)
from tests.rawpeer import RawPeer

# -- calls --------------------------------------------------------------------------------------

def test_every_allowed_op_over_the_wire(clients) -> None:
    client = clients()
    client.open(1, "todos")
    assert client.ok(1, "info")["db_name"] == "todos"
    a = client.ok(1, "put", {"doc": {"_id": "a", "n": 1}})
    assert a["ok"] is True and a["rev"].startswith("1-")
    posted = client.ok(1, "post", {"doc": {"n": 2}})
    assert posted["id"] and posted["rev"].startswith("1-")
    assert client.ok(1, "get", {"doc_id": "a", "conflicts": True})["n"] == 1
    deleted = client.ok(1, "delete", {"doc_id": posted["id"], "rev": posted["rev"]})
    assert deleted["rev"].startswith("2-")
    replicated = client.ok(1, "bulk_docs", {"new_edits": False, "docs": [
        {"_id": "b", "_rev": "1-abc", "_revisions": {"start": 1, "ids": ["abc"]}, "x": 1}]})
    assert replicated == []
    written = client.ok(1, "bulk_docs", {"docs": [{"_id": "c"}, {"_id": "a", "n": 9}]})
    assert written[0]["ok"] and written[1]["error"] == "conflict"
    rows = client.ok(1, "all_docs", {"include_docs": True})["rows"]
    assert [r["id"] for r in rows] == ["a", "b", "c"] and rows[1]["doc"]["x"] == 1
    feed = client.ok(1, "changes", {"since": 0, "style": "all_docs", "include_docs": True})
    assert {r["id"] for r in feed["results"]} >= {"a", "b", "c"}
    assert client.ok(1, "changes", {"since": feed["last_seq"]})["results"] == []
    diff = client.ok(1, "revs_diff", {"revs": {"a": [a["rev"], "2-zzz"], "q": ["1-q"]}})
    assert diff["a"]["missing"] == ["2-zzz"] and diff["q"]["missing"] == ["1-q"]
    got = client.ok(1, "bulk_get", {"docs": [{"id": "a", "rev": a["rev"]}, {"id": "b"}], "revs": True})
    assert got["results"][0]["docs"][0]["ok"]["_id"] == "a"
    assert got["results"][0]["docs"][0]["ok"]["_revisions"]["start"] == 1
    data = bytes(range(256)) * 4
    att = client.ok(1, "put", {"doc": {"_id": "att", "_attachments": {"blob.bin": {
        "content_type": "application/octet-stream", "data": base64.b64encode(data).decode()}}}})
    blob = client.ok(1, "get_attachment", {"doc_id": "att", "name": "blob.bin", "rev": att["rev"]})
    assert base64.b64decode(blob["data"]) == data
    local = client.ok(1, "put", {"doc": {"_id": "_local/cp", "last_seq": 3}})
    assert local["ok"] and client.ok(1, "get", {"doc_id": "_local/cp"})["last_seq"] == 3


def test_database_errors_travel_as_status_error_reason(clients) -> None:
    client = clients()
    client.open(1, "todos")
    assert client.error(1, "get", {"doc_id": "nope"}) == {
        "status": 404, "error": "not_found", "reason": "missing"}
    client.ok(1, "put", {"doc": {"_id": "a"}})
    conflict = client.error(1, "put", {"doc": {"_id": "a"}})
    assert (conflict["status"], conflict["error"]) == (409, "conflict")
    assert client.error(1, "get_attachment", {"doc_id": "a", "name": "x"})["status"] == 404


@pytest.mark.parametrize("op, args, reason", [
    ("destroy", {}, "unknown op 'destroy'"),
    ("compact", {}, "unknown op 'compact'"),
    ("close", {}, "unknown op 'close'"),
    ("__class__", {}, "unknown op '__class__'"),
    ("_writing", {}, "unknown op '_writing'"),
    ("get", {"doc_id": "a", "evil": "__import__('os')"}, "unknown argument 'evil' for get"),
    ("get", {"doc_id": ["a"]}, "argument 'doc_id' of get must be a string"),
    ("all_docs", {"limit": "10"}, "argument 'limit' of all_docs must be an integer >= 0"),
    ("changes", {"feed": "continuous"}, "argument 'feed' of changes must be"),
    ("put", {}, "put needs the argument 'doc'"),
])
def test_allow_list_refuses_everything_else(clients, dbs, op, args, reason) -> None:
    client = clients()
    client.open(1, "todos")
    err = client.error(1, op, args)
    assert err["status"] == 400 and err["error"] == "bad_request" and reason in err["reason"]
    assert client.ok(1, "info")["db_name"] == "todos"  # the database is untouched
    assert not dbs.dbs["todos"]._closed


def test_read_only_grant_refuses_writes_except_local_docs(clients, dbs) -> None:
    dbs.read_only.add("ro")
    dbs.db("ro").put({"_id": "existing"})
    client = clients()
    assert client.open(1, "ro")["read_only"] is True
    for op, args in [("put", {"doc": {"_id": "x"}}), ("post", {"doc": {}}),
                     ("delete", {"doc_id": "existing", "rev": "1-x"})]:
        err = client.error(1, op, args)
        assert (err["status"], err["error"]) == (403, "forbidden"), op
        assert "read-only" in err["reason"]
    assert client.ok(1, "put", {"doc": {"_id": "_local/checkpoint", "seq": 1}})["ok"]
    results = client.ok(1, "bulk_docs", {"docs": [{"_id": "_local/c2"}, {"_id": "y"}]})
    assert results[0]["ok"] and results[1] == {
        "id": "y", "error": "forbidden", "reason": "this database is granted read-only"}
    assert client.ok(1, "get", {"doc_id": "existing"})["_id"] == "existing"
    assert dbs.db("ro").all_docs()["total_rows"] == 1


def test_design_writes_refused_unless_granted(clients, dbs) -> None:
    dbs.design.add("designable")
    client = clients()
    client.open(1, "todos")
    client.open(2, "designable")
    design = {"_id": "_design/app", "views": {}}
    err = client.error(1, "put", {"doc": design})
    assert (err["status"], err["reason"]) == (403, "writes to design documents are not allowed")
    replicated = client.ok(1, "bulk_docs", {"new_edits": False, "docs": [
        {"_id": "_design/x", "_rev": "1-a", "_revisions": {"start": 1, "ids": ["a"]}},
        {"_id": "plain", "_rev": "1-b", "_revisions": {"start": 1, "ids": ["b"]}}]})
    assert replicated == [{"id": "_design/x", "rev": "1-a", "error": "forbidden",
                           "reason": "writes to design documents are not allowed"}]
    assert client.ok(1, "get", {"doc_id": "plain"})["_rev"] == "1-b"
    assert client.ok(2, "put", {"doc": design})["ok"]


def _replicated(doc_id: str, h: str) -> dict[str, Any]:
    return {"_id": doc_id, "_rev": f"1-{h}", "_revisions": {"start": 1, "ids": [h]}, "v": h}


def test_write_missing_answers_positions_and_refusals(clients, dbs) -> None:
    dbs.read_only.add("ro")
    dbs.db("todos").bulk_docs([_replicated("had", "a")], new_edits=False)
    client = clients()
    client.open(1, "todos")
    client.open(2, "ro")
    docs = [_replicated("had", "a"), _replicated("new", "b"), _replicated("had", "c"),
            _replicated("_design/d", "e")]
    answer = client.ok(1, "write_missing", {"docs": docs})
    assert answer == {"written": [1, 2], "failures": [
        {"id": "_design/d", "rev": "1-e", "error": "forbidden",
         "reason": "writes to design documents are not allowed"}]}
    assert dbs.db("todos").get("had", conflicts=True)["_conflicts"] == ["1-a"]
    assert client.ok(1, "write_missing", {"docs": docs[:3]}) == {"written": [], "failures": []}
    # read-only: every doc it lacks refused but _local ones, nothing written; one it
    # has already (e.g. pulled from it) is just not missing
    dbs.db("ro").bulk_docs([_replicated("there", "h")], new_edits=False)
    answer = client.ok(2, "write_missing", {"docs": [_replicated("x", "f"),
                                                     {"_id": "_local/cp", "seq": 1},
                                                     _replicated("there", "h")]})
    assert answer["written"] == [1]
    assert [(f["id"], f["error"]) for f in answer["failures"]] == [("x", "forbidden")]
    assert dbs.db("ro").info()["doc_count"] == 1
    # bad input: the whole call is refused, nothing written
    err = client.error(1, "write_missing", {"docs": [_replicated("ok", "g"), {"_id": "norev"}]})
    assert (err["status"], err["error"]) == (400, "bad_request")
    err = client.error(1, "write_missing", {"docs": "nope"})
    assert err["status"] == 400 and "docs" in err["reason"]
    assert dbs.db("todos").revs_diff({"ok": ["1-g"]}) == {"ok": {"missing": ["1-g"]}}


def test_write_missing_texts_answers_positions_and_refusals(clients, dbs) -> None:
    dbs.read_only.add("ro")
    dbs.db("todos").bulk_docs([_replicated("had", "a")], new_edits=False)
    client = clients()
    client.open(1, "todos")
    client.open(2, "ro")
    rows = [["had", "1-a", '{"v":"a"}'], ["new", "1-b", '{"v":"b"}'],
            ["had", "1-c", '{"v":"c"}'], ["_design/d", "1-e", "{}"]]
    answer = client.ok(1, "write_missing_texts", {"rows": rows})
    assert answer == {"written": [1, 2], "failures": [
        {"id": "_design/d", "rev": "1-e", "error": "forbidden",
         "reason": "writes to design documents are not allowed"}]}
    assert dbs.db("todos").get("had", conflicts=True)["_conflicts"] == ["1-a"]
    assert dbs.db("todos").get("new")["v"] == "b"
    # without a design doc nothing is refused: the rows go to the store as they are
    assert client.ok(1, "write_missing_texts", {"rows": rows[:3]}) == {"written": [],
                                                                        "failures": []}
    # read-only: every revision it lacks refused, nothing written; one it has is not missing
    dbs.db("ro").bulk_docs([_replicated("there", "h")], new_edits=False)
    answer = client.ok(2, "write_missing_texts", {"rows": [["x", "1-f", "{}"],
                                                           ["there", "1-h", '{"v":"h"}']]})
    assert answer["written"] == []
    assert [(f["id"], f["error"]) for f in answer["failures"]] == [("x", "forbidden")]
    assert dbs.db("ro").info()["doc_count"] == 1
    # bad input: the whole call is refused, nothing written
    err = client.error(1, "write_missing_texts", {"rows": [["ok", "1-g", "{}"], ["bad", "2-x", "{}"]]})
    assert (err["status"], err["error"]) == (400, "bad_request") and "row 1" in err["reason"]
    err = client.error(1, "write_missing_texts", {"rows": [["ok", "1-g", '{"_x": 1}']]})
    assert err["status"] == 400 and "_x" in err["reason"]
    err = client.error(1, "write_missing_texts", {"rows": "nope"})
    assert err["status"] == 400 and "rows" in err["reason"]
    assert dbs.db("todos").revs_diff({"ok": ["1-g"]}) == {"ok": {"missing": ["1-g"]}}
    # and the read: texts for the first-generation docs, leaves for the others
    answer = client.ok(1, "changes_texts", {"since": 0, "max_bytes": 1000})
    assert [(row[1], row[4]) for row in answer["results"]] == [("new", '{"v":"b"}'),
                                                               ("had", None)]
    assert client.error(1, "changes_texts", {"max_bytes": -1})["status"] == 400


def test_unexpected_database_error_is_a_generic_500(clients, dbs, caplog) -> None:
    class Exploding(ps.LocalDatabase):
        def info(self) -> dict[str, Any]:
            raise RuntimeError("secret internal detail")

    dbs.dbs["exploding"] = Exploding(":memory:", name="exploding")
    client = clients()
    client.open(1, "exploding")
    with caplog.at_level("ERROR", logger="pouchsync_sync.server"):
        err = client.error(1, "info")
    assert err == {"status": 500, "error": "internal_server_error", "reason": "internal server error"}
    assert any("secret internal detail" in (r.exc_text or "") or r.exc_info for r in caplog.records)
    assert client.ok(1, "all_docs")["total_rows"] == 0


def test_pipelined_calls_on_several_channels(clients) -> None:
    client = clients()
    client.open(1, "a")
    client.open(2, "b")
    ids = {}
    for i in range(20):
        ch = 1 + i % 2
        ids[client.start_call(ch, "put", {"doc": {"_id": f"d{i}"}})] = ch
    for call_id, ch in ids.items():
        reply = client.expect(type="reply", id=call_id)
        assert reply["ch"] == ch and reply["ok"]["ok"]
    assert client.ok(1, "info")["doc_count"] == 10 and client.ok(2, "info")["doc_count"] == 10


def test_reused_call_id_in_flight_is_an_error(clients) -> None:
    client = clients()
    client.open(1, "todos")
    client.send(m.call(1, 500, "changes", {"feed": "longpoll", "since": "now", "timeout": 5}))
    client.send(m.call(1, 500, "info"))
    err = client.expect(type="error")
    assert (err["ch"], err["id"]) == (1, 500) and "already in flight" in err["reason"]


def test_max_calls_in_flight(make_server) -> None:
    server = make_server(max_calls=2)
    client = RawPeer(server.url, credentials=TOKEN)
    try:
        client.open(1, "todos")
        for call_id in (1, 2):
            client.send(m.call(1, call_id, "changes", {"feed": "longpoll", "since": "now", "timeout": 30}))
        client.send(m.call(1, 3, "info"))
        err = client.expect(type="reply", id=3)["error"]
        assert (err["status"], err["error"]) == (429, "too_many_requests")
        client.send(m.close(1))
        client.expect(type="closed", ch=1)
        client.open(2, "todos")
        assert _eventually(lambda: server.stats()["calls_in_flight"] == 0)
        assert client.ok(2, "info")["db_name"] == "todos"
    finally:
        client.close()
