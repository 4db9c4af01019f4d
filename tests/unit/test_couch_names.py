"""Pure parts of the CouchDB backend: URL building, credentials, answer shapes."""

from __future__ import annotations

import pytest

from pouchsync_sync import BadRequest
from pouchsync_sync.store.couch_names import (attachment_path, check_db_name, db_path, doc_path,
                                              query_string, split_credentials)
from pouchsync_sync.store.couch_shapes import bulk_get_results, strip_null_docs


@pytest.mark.parametrize("name", ["a", "todos", "a/b", "db$(x)+y-z_1", "a" * 238])
def test_valid_db_names(name):
    assert check_db_name(name) == name


@pytest.mark.parametrize("name", ["", "_users", "A", "1a", "a b", "a.b", "a?b", "é", "a" * 239,
                                  None, 3, "../x", "a\n"])
def test_invalid_db_names(name):
    with pytest.raises(BadRequest) as info:
        check_db_name(name)
    assert info.value.error == "illegal_database_name"


def test_paths_are_single_encoded_segments():
    assert db_path("a/b") == "/a%2Fb"
    assert doc_path("plain") == "plain"
    assert doc_path("a/b?c#d%e f") == "a%2Fb%3Fc%23d%25e%20f"
    assert doc_path("..") == "%2E%2E" and doc_path(".") == "%2E"
    assert doc_path("../_users") == "..%2F_users"
    assert doc_path("_design/x/_view/v") == "_design/x%2F_view%2Fv"
    assert doc_path("_local/..") == "_local/%2E%2E"
    assert doc_path("é") == "%C3%A9"
    assert attachment_path("d", "../a.txt") == "d/..%2Fa.txt"
    for bad in ("_all_docs", "", "_design/", "_local/", "_design", 7, None):
        with pytest.raises(BadRequest):
            doc_path(bad)
    with pytest.raises(BadRequest):
        attachment_path("d", "")


def test_query_string():
    assert query_string({}) == ""
    assert query_string({"a": None}) == ""
    assert query_string({"rev": "1-a", "revs": True, "limit": 5, "since": "12-g1A/x=",
                         "open_revs": ["1-a", "2-b"], "startkey": '"b"'}) == (
        "?rev=1-a&revs=true&limit=5&since=12-g1A%2Fx%3D"
        "&open_revs=%5B%221-a%22%2C%222-b%22%5D&startkey=%22b%22")
    assert query_string({"descending": False}) == "?descending=false"


def test_split_credentials():
    base, creds = split_credentials("http://us%40er:p%3Ass@host:5984/prefix/?x=1#f")
    assert base == "http://host:5984/prefix"
    assert creds is not None and creds.user == "us@er" and creds.password == "p:ss"
    assert "p:ss" not in repr(creds) and "p:ss" not in str(creds)
    assert split_credentials("https://[::1]:6984") == ("https://[::1]:6984", None)
    for bad in ("ftp://h/x", "host:5984", "http://", "http://h:99999", 5):
        with pytest.raises(BadRequest):
            split_credentials(bad)  # type: ignore[arg-type]


def _ok(doc_id, rev, **extra):
    return {"ok": {"_id": doc_id, "_rev": rev, **extra}}


def test_bulk_get_couchdb3_shape_passes_through():
    reqs = [{"id": "a", "rev": "1-a"}, {"id": "b", "rev": "1-b"}]
    answer = {"results": [
        {"id": "a", "docs": [_ok("a", "1-a")]},
        {"id": "b", "docs": [{"error": {"id": "b", "rev": "1-b", "error": "not_found",
                                        "reason": "missing"}}]}]}
    assert bulk_get_results(reqs, answer) == answer["results"]


def test_bulk_get_grouped_answer_back_in_request_order():
    reqs = [{"id": "c", "rev": "3-c"}, {"id": "a"}, {"id": "c", "rev": "2-d"},
            {"id": "n", "rev": "1-x"}, {"id": "c", "rev": "9-z"}]
    answer = {"results": [  # pouchdb-server: grouped by id, {"missing": rev}
        {"id": "c", "docs": [_ok("c", "3-c")]}, {"id": "c", "docs": [_ok("c", "2-d")]},
        {"id": "c", "docs": [{"missing": "9-z"}]}, {"id": "a", "docs": [_ok("a", "1-a")]},
        {"id": "n", "docs": [{"missing": "1-x"}]}]}
    got = bulk_get_results(reqs, answer)
    assert [r["id"] for r in got] == ["c", "a", "c", "n", "c"]
    assert got[0]["docs"][0]["ok"]["_rev"] == "3-c"
    assert got[2]["docs"][0]["ok"]["_rev"] == "2-d"
    assert got[3]["docs"] == [{"error": {"id": "n", "rev": "1-x", "error": "not_found",
                                         "reason": "missing"}}]
    assert got[4]["docs"][0]["error"]["rev"] == "9-z"


def test_bulk_get_unusable_entries_are_left_for_the_caller():
    reqs = [{"id": "gone"}, {"id": "c"}, {"id": "c", "rev": "2-d"}]
    answer = {"results": [{"id": "gone", "docs": [{}]}, {"id": "c", "docs": [_ok("c", "2-d")]}]}
    got = bulk_get_results(reqs, answer)
    assert got[0] is None  # {}: deleted or unknown, fetch it alone
    assert got[1] is None  # dropped by the server
    assert got[2]["docs"][0]["ok"]["_rev"] == "2-d"
    assert bulk_get_results(reqs, {"nonsense": 1}) == [None, None, None]


def test_strip_null_docs():
    answer = {"rows": [{"id": "a", "value": {"rev": "1-a"}, "doc": None},
                       {"id": "b", "value": {"rev": "1-b"}}]}
    assert strip_null_docs(answer)["rows"] == [{"id": "a", "value": {"rev": "1-a"}},
                                               {"id": "b", "value": {"rev": "1-b"}}]
