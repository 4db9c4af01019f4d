"""CouchDatabase against the real CouchDB-protocol server (pouchdb-server or COUCHDB_URL).

The contract suite (tests/contract) covers the shared behaviour; these tests cover what
is particular to the HTTP backend: the server handle, shapes normalised from the test
server's deviations, the _bulk_get fallback, open_database, opaque sequences.
"""

from __future__ import annotations

import base64
import http.server
import threading

import pytest
import requests

import pouchsync_sync as ps
from pouchsync_sync import BadRequest, NotFound, PreconditionFailed
from pouchsync_sync.store.couch_http import NO_DB_REASON
from tests.couchserver import couch_db_name


def _history(hashes):
    return {"start": len(hashes), "ids": list(reversed(hashes))}


@pytest.fixture
def db(backend_couch):
    return backend_couch("backend")


@pytest.fixture
def conflicted(db):
    db.bulk_docs([
        {"_id": "c", "_rev": "3-ccc", "_revisions": _history(["aaa", "bbb", "ccc"]), "x": "winner"},
        {"_id": "c", "_rev": "2-ddd", "_revisions": _history(["aaa", "ddd"]), "x": "loser"},
    ], new_edits=False)
    return db


# -- server handle ------------------------------------------------------------------------

def test_server_handle_create_list_delete(couch):
    name = couch_db_name("handle")
    db = couch.create_database(name)
    try:
        assert isinstance(db, ps.CouchDatabase) and db.name == name
        assert name in couch.all_dbs()
        with pytest.raises(PreconditionFailed):
            couch.create_database(name)
        assert couch.database(name, create=True).info()["db_name"] == name  # exists: fine
        assert "version" in couch.info()
    finally:
        couch.delete_database(name)
    assert name not in couch.all_dbs()


def test_missing_database_is_distinguishable(couch):
    db = couch.database(couch_db_name("never-created"))
    with pytest.raises(NotFound) as info:
        db.info()
    assert info.value.reason == NO_DB_REASON
    with pytest.raises(NotFound) as info:
        db.get("some-doc")
    assert info.value.reason == NO_DB_REASON
    with pytest.raises(NotFound) as info:
        db.bulk_get([{"id": "x", "rev": "1-a"}])
    assert info.value.reason == NO_DB_REASON


def test_identity_and_repr(couch, db, couch_url):
    assert db.identity() == couch.url + "/" + db.name
    assert db.identity().startswith("http")
    assert repr(db) == f"<CouchDatabase {db.identity()!r}>"
    assert couch.database(db.name).identity() == db.identity()


def test_info(db):
    db.put({"_id": "a"})
    info = db.info()
    assert info["db_name"] == db.name and info["doc_count"] == 1
    assert "update_seq" in info


# -- documents -----------------------------------------------------------------------------

def test_get_options(conflicted):
    db = conflicted
    doc = db.get("c", conflicts=True, revs=True, revs_info=True)
    assert doc["_rev"] == "3-ccc" and doc["_conflicts"] == ["2-ddd"]
    assert doc["_revisions"] == {"start": 3, "ids": ["ccc", "bbb", "aaa"]}
    assert [i["rev"] for i in doc["_revs_info"]] == ["3-ccc", "2-bbb", "1-aaa"]
    assert db.get("c", rev="2-ddd")["x"] == "loser"
    # latest=true on a non-leaf gives the leaf above it
    assert db.get("c", rev="2-bbb", latest=True)["_rev"] == "3-ccc"
    leaves = db.get("c", open_revs="all")
    assert sorted(e["ok"]["_rev"] for e in leaves) == ["2-ddd", "3-ccc"]


def test_latest_with_unknown_rev_is_missing(conflicted):
    # this request kills a bare pouchdb-server; the guard makes it CouchDB's answer
    db = conflicted
    assert db.get("c", open_revs=["9-zzz"], latest=True) == [{"missing": "9-zzz"}]
    with pytest.raises(NotFound):
        db.get("c", rev="9-zzz", latest=True)
    assert db.info()["doc_count"] == 1  # the server is still alive


def test_deleted_doc_reason(db):
    rev = db.put({"_id": "a"})["rev"]
    db.delete("a", rev)
    with pytest.raises(NotFound) as info:
        db.get("a")
    assert info.value.reason == "deleted"
    with pytest.raises(NotFound) as info:
        db.get("never")
    assert info.value.reason == "missing"


def test_local_docs_roundtrip(db):
    first = db.put({"_id": "_local/checkpoint", "history": [{"seq": 1}]})
    assert first["rev"] == "0-1"
    second = db.put({"_id": "_local/checkpoint", "_rev": first["rev"], "history": []})
    assert db.get("_local/checkpoint") == {"_id": "_local/checkpoint", "_rev": second["rev"],
                                           "history": []}
    db.delete("_local/checkpoint", second["rev"])
    with pytest.raises(NotFound):
        db.get("_local/checkpoint")


def test_attachments_inline_and_raw(db):
    data = bytes(range(256))
    names = ["plain.txt", "dir/inner.bin", "sp ace?#%.bin", "é.bin"]
    atts = {n: {"content_type": "application/octet-stream",
                "data": base64.b64encode(data + n.encode()).decode()} for n in names}
    rev = db.put({"_id": "att", "_attachments": atts})["rev"]
    for n in names:
        assert db.get_attachment("att", n) == data + n.encode()
        assert db.get_attachment("att", n, rev=rev) == data + n.encode()
    inline = db.get("att", attachments=True)["_attachments"]
    assert base64.b64decode(inline["plain.txt"]["data"]) == data + b"plain.txt"
    stubs = db.get("att")["_attachments"]
    assert stubs["plain.txt"]["stub"] is True and "data" not in stubs["plain.txt"]
    # an update keeping the stubs as GET returned them keeps the attachments
    doc = db.get("att")
    doc["v"] = 2
    rev2 = db.put(doc)["rev"]
    assert db.get_attachment("att", "plain.txt", rev=rev2) == data + b"plain.txt"
    with pytest.raises(NotFound):
        db.get_attachment("att", "nope.txt")


def test_all_docs_keys_without_docs_has_no_doc_member(db):
    rev = db.put({"_id": "d"})["rev"]
    db.delete("d", rev)
    db.put({"_id": "a"})
    rows = db.all_docs(keys=["a", "d", "zz"])["rows"]
    assert rows[0]["id"] == "a" and "doc" not in rows[0]
    assert rows[1]["value"]["deleted"] is True and "doc" not in rows[1]
    assert rows[2] == {"key": "zz", "error": "not_found"}


def test_compact_and_close_are_harmless(db):
    db.put({"_id": "a"})
    db.compact()
    db.close()
    db.close()


# -- bulk_get ----------------------------------------------------------------------------------

def test_bulk_get_request_order_and_missing_shape(conflicted):
    db = conflicted
    db.put({"_id": "a", "v": 1})
    reqs = [{"id": "c", "rev": "3-ccc"}, {"id": "a"}, {"id": "c", "rev": "2-ddd"},
            {"id": "nosuch", "rev": "1-x"}, {"id": "c", "rev": "9-zzz"}]
    results = db.bulk_get(reqs, revs=True)["results"]
    assert [r["id"] for r in results] == ["c", "a", "c", "nosuch", "c"]
    assert results[0]["docs"][0]["ok"]["_rev"] == "3-ccc"
    assert results[0]["docs"][0]["ok"]["_revisions"]["ids"] == ["ccc", "bbb", "aaa"]
    assert results[1]["docs"][0]["ok"]["v"] == 1
    assert results[2]["docs"][0]["ok"]["x"] == "loser"
    assert results[3]["docs"] == [{"error": {"id": "nosuch", "rev": "1-x", "error": "not_found",
                                             "reason": "missing"}}]
    assert results[4]["docs"][0]["error"]["rev"] == "9-zzz"


def test_bulk_get_latest_and_revless_deleted(conflicted):
    db = conflicted
    rev = db.put({"_id": "gone"})["rev"]
    db.delete("gone", rev)
    results = db.bulk_get([{"id": "c", "rev": "2-bbb"}, {"id": "gone"}, {"id": "never"},
                           {"id": "c", "rev": "9-zzz"}], latest=True)["results"]
    assert results[0]["docs"][0]["ok"]["_rev"] == "3-ccc"
    assert results[1]["docs"][0]["error"]["reason"] == "deleted"
    assert results[2]["docs"][0]["error"]["reason"] == "missing"
    assert results[3]["docs"][0]["error"]["rev"] == "9-zzz"


def test_bulk_get_same_id_with_and_without_rev(conflicted):
    # pouchdb-server drops the rev-less request when the same id is also asked with a rev
    results = conflicted.bulk_get([{"id": "c"}, {"id": "c", "rev": "2-ddd"}])["results"]
    assert results[0]["docs"][0]["ok"]["_rev"] == "3-ccc"
    assert results[1]["docs"][0]["ok"]["_rev"] == "2-ddd"


class _NoBulkGetProxy:
    """A tiny HTTP proxy to the test server that answers 404 to ``_bulk_get``, like a
    CouchDB 1.x. Counts the requests it forwards."""

    def __init__(self, target: str) -> None:
        self.paths: list[str] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                proxy.paths.append(self.path)
                if "/_bulk_get" in self.path:
                    status, payload = 404, b'{"error":"not_found","reason":"missing"}'
                else:
                    resp = requests.request(self.command, target + self.path, data=body,
                                            headers={"Content-Type": "application/json",
                                                     "Accept": "application/json"}, timeout=10)
                    status, payload = resp.status_code, resp.content
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = _forward

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="test-proxy",
                                       kwargs={"poll_interval": 0.05})

    def __enter__(self) -> "_NoBulkGetProxy":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def test_bulk_get_falls_back_to_open_revs(conflicted, couch_url):
    if "@" in couch_url:
        pytest.skip("the proxy does not forward credentials")
    with _NoBulkGetProxy(couch_url) as proxy, ps.CouchDB(proxy.url) as server:
        db = server.database(conflicted.name)
        reqs = [{"id": "c", "rev": "2-ddd"}, {"id": "c"}, {"id": "nosuch", "rev": "1-x"}]
        results = db.bulk_get(reqs, revs=True)["results"]
        assert results[0]["docs"][0]["ok"]["x"] == "loser"
        assert results[0]["docs"][0]["ok"]["_revisions"]["ids"] == ["ddd", "aaa"]
        assert results[1]["docs"][0]["ok"]["_rev"] == "3-ccc"
        assert results[2]["docs"][0]["error"]["reason"] == "missing"
        assert sum("/_bulk_get" in p for p in proxy.paths) == 1
        db.bulk_get([{"id": "c", "rev": "3-ccc"}])  # remembered: no second _bulk_get try
        assert sum("/_bulk_get" in p for p in proxy.paths) == 1


# -- changes ------------------------------------------------------------------------------------

def test_seqs_are_passed_back_as_received(db):
    db.put({"_id": "a"})
    first = db.changes()
    seq = first["results"][0]["seq"]
    db.put({"_id": "b"})
    assert [r["id"] for r in db.changes(since=seq)["results"]] == ["b"]
    last = db.changes()["last_seq"]
    # the longpoll timeout answer hands back exactly the since it was given
    empty = db.changes(since=last, feed="longpoll", timeout=0.3)
    assert empty == {"results": [], "last_seq": last}
    assert empty["last_seq"] is last


def test_changes_doc_ids_and_include_docs(db):
    db.bulk_docs([{"_id": i, "n": n} for n, i in enumerate("abcd")])
    result = db.changes(doc_ids=["d", "b"], include_docs=True)
    assert [r["id"] for r in result["results"]] == ["b", "d"]
    assert result["results"][1]["doc"]["n"] == 3
    assert db.changes(doc_ids=[])["results"] == []


def test_changes_selector_pages_and_limit(db):
    docs = [{"_id": f"d{i:04d}", "even": i % 2 == 0, "i": i} for i in range(640)]
    db.bulk_docs(docs)  # more than one page (500) of changes
    evens = db.changes(selector={"even": True})
    assert len(evens["results"]) == 320 and "doc" not in evens["results"][0]
    top = db.changes(selector={"i": {"$gte": 630}}, include_docs=True)
    assert [r["doc"]["i"] for r in top["results"]] == list(range(630, 640))
    limited = db.changes(selector={"even": False}, limit=3)
    assert [r["id"] for r in limited["results"]] == ["d0001", "d0003", "d0005"]
    rest = db.changes(selector={"even": False}, since=limited["last_seq"], limit=2)
    assert [r["id"] for r in rest["results"]] == ["d0007", "d0009"]


def test_selector_longpoll_waits_for_a_match(db):
    last = db.changes()["last_seq"]
    got: dict = {}
    started = threading.Event()

    def reader() -> None:
        started.set()
        got["result"] = db.changes(since=last, feed="longpoll", timeout=20,
                                   selector={"type": "wanted"})

    thread = threading.Thread(target=reader, name="test-selector-longpoll")
    thread.start()
    started.wait(5)
    db.put({"_id": "other", "type": "noise"})
    db.put({"_id": "hit", "type": "wanted"})
    thread.join(25)
    assert not thread.is_alive()
    assert [r["id"] for r in got["result"]["results"]] == ["hit"]


def test_bad_arguments_are_refused_before_any_request(db):
    with pytest.raises(BadRequest):
        db.changes(feed="continuous")
    with pytest.raises(BadRequest):
        db.get("a", rev="../_users")
    with pytest.raises(BadRequest):
        db.delete("a", "nonsense")
    with pytest.raises(BadRequest):
        db.bulk_docs([{"_id": "a"}], new_edits=False)  # no _rev


# -- open_database ------------------------------------------------------------------------------

def test_open_database_url_creates_and_owns_its_handle(couch, couch_url):
    name = couch_db_name("opened")
    db = ps.open_database(f"{couch_url}/{name}")
    try:
        assert isinstance(db, ps.CouchDatabase) and db.name == name
        db.put({"_id": "x"})
        assert couch.database(name).get("x")["_id"] == "x"
    finally:
        db.close()
        couch.delete_database(name)
    with pytest.raises(ps.TransportError) as info:
        db.info()
    assert info.value.retryable is False


def test_open_database_local(tmp_path):
    with ps.open_database(":memory:") as mem:
        assert isinstance(mem, ps.LocalDatabase)
    path = tmp_path / "todos.sqlite"
    with ps.open_database(str(path)) as local:
        assert isinstance(local, ps.LocalDatabase) and local.name == "todos"
    with pytest.raises(BadRequest):
        ps.open_database("ftp://example.com/db")
    with pytest.raises(BadRequest):
        ps.open_database("http://127.0.0.1:1/Bad_Name")
