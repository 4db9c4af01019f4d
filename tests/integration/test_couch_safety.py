"""A database name or document id from a remote client can only name itself.

Each case runs against the real server: a hostile value either is refused before any
request (``BadRequest``) or lands as exactly one database / document of the database
it was meant for, never addressing another resource.
"""

from __future__ import annotations

import base64

import pytest
import requests

from pouchsync_sync import BadRequest
from tests.couchserver import couch_db_name

HOSTILE_DB_NAMES = ["../_users", "_all_dbs", "_users", "_replicator", "Bad", "a b", "", "1abc",
                    "db\n", "db?x=1", "db#frag", "db%2F_all_docs", "é", "a\x00b", None, 5]

STRANGE_IDS = ["../_users", "..", ".", "a/b", "a?b=1", "a#b", "a%2Fb", "100%", "sp ace",
               "plus+sign&amp=1", "é-ünïcødé-日本", "emoji-\U0001F600", "db/_design/x/_view/v",
               "_design/x/_view/v", "_design/..", "_local/../x", "trailing/", "a\\b", "~tilde"]


@pytest.fixture
def db(backend_couch):
    return backend_couch("safety")


@pytest.fixture
def raw(couch_url):
    """Plain requests straight to the server, to look behind the backend's back."""
    with requests.Session() as session:
        session.headers["Accept"] = "application/json"

        def get(path: str):
            return session.get(couch_url + path, timeout=10)

        yield get


@pytest.mark.parametrize("name", HOSTILE_DB_NAMES)
def test_bad_database_names_are_refused_before_any_request(couch, raw, name):
    before = raw("/_all_dbs").json()
    with pytest.raises(BadRequest) as info:
        couch.database(name, create=True)
    assert info.value.error == "illegal_database_name"
    with pytest.raises(BadRequest):
        couch.create_database(name)
    with pytest.raises(BadRequest):
        couch.delete_database(name)
    assert raw("/_all_dbs").json() == before


def test_slashes_in_a_database_name_stay_inside_one_name(couch, raw):
    base = couch_db_name("slash")
    name = f"{base}/_design/x/_view/v"  # valid for CouchDB: a database with slashes in its name
    db = couch.database(name, create=True)
    try:
        db.put({"_id": "doc", "v": 1})
        assert db.get("doc")["v"] == 1
        dbs = raw("/_all_dbs").json()
        assert base not in dbs  # no database "base" was created or addressed
        # CouchDB keeps the slashes; pouchdb-server drops them from names (deviation)
        assert name in dbs or name.replace("/", "") in dbs
    finally:
        couch.delete_database(name)


@pytest.mark.parametrize("doc_id", STRANGE_IDS)
def test_strange_ids_land_as_one_doc_of_this_database(db, raw, doc_id):
    users_before = raw("/_users").json()["doc_count"]
    rev = db.put({"_id": doc_id, "v": doc_id})["rev"]
    doc = db.get(doc_id)
    assert doc == {"_id": doc_id, "_rev": rev, "v": doc_id}
    if not doc_id.startswith("_local/"):
        assert [r["id"] for r in db.all_docs()["rows"]] == [doc_id]
        assert [r["id"] for r in db.changes()["results"]] == [doc_id]
        results = db.bulk_get([{"id": doc_id, "rev": rev}])["results"]
        assert results[0]["docs"][0]["ok"]["v"] == doc_id
    assert db.get(doc_id, rev=rev)["v"] == doc_id
    second = db.put({"_id": doc_id, "_rev": rev, "v": 2})["rev"]
    db.delete(doc_id, second)
    assert raw("/_users").json()["doc_count"] == users_before
    assert raw(f"/{db.name}").json()["doc_count"] == 0


def test_ids_in_bulk_docs_and_attachment_names(db):
    ids = [i for i in STRANGE_IDS if not i.startswith(("_local/", "_design/"))]
    results = db.bulk_docs([{"_id": i, "n": n} for n, i in enumerate(ids)])
    assert [r["id"] for r in results] == ids and all(r.get("ok") for r in results)
    assert sorted(r["id"] for r in db.all_docs()["rows"]) == sorted(ids)
    names = ["../x", "..", "a/b/c.txt", "q?#%.bin", "é.txt"]
    atts = {n: {"content_type": "text/plain", "data": base64.b64encode(n.encode()).decode()}
            for n in names}
    db.put({"_id": "../_users", "_rev": results[0]["rev"], "_attachments": atts})
    for n in names:
        assert db.get_attachment("../_users", n) == n.encode()


@pytest.mark.parametrize("doc_id", ["_all_dbs", "_all_docs", "_changes", "_bulk_docs", "_users",
                                    "_design", "_design/", "_local/", "_local", "",
                                    "_session", "_config/admins/x"])
def test_reserved_ids_are_refused_before_any_request(db, doc_id):
    for call in (lambda: db.put({"_id": doc_id}), lambda: db.get(doc_id),
                 lambda: db.delete(doc_id, "1-abc"), lambda: db.get_attachment(doc_id, "a"),
                 lambda: db.bulk_get([{"id": doc_id}])):
        with pytest.raises(BadRequest):
            call()
    assert db.info()["doc_count"] == 0


class _Recorder:
    """An HTTP server that records the raw request paths and answers a canned doc result."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.paths: list[str] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                recorder.paths.append(self.path)
                payload = b'{"ok":true,"id":"x","rev":"1-a","_id":"x","_rev":"1-a"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="test-recorder",
                                       kwargs={"poll_interval": 0.05})
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def test_on_the_wire_each_id_is_one_segment_without_dot_segments():
    from urllib.parse import unquote

    from pouchsync_sync import CouchDB

    recorder = _Recorder()
    try:
        with CouchDB(recorder.url) as server:
            db = server.database("wire")
            for doc_id in STRANGE_IDS:
                recorder.paths.clear()
                db.put({"_id": doc_id})
                db.get(doc_id, rev="1-a")
                db.delete(doc_id, "1-a")
                db.get_attachment(doc_id, "../att")
                assert len(recorder.paths) == 4
                reserved = doc_id.startswith(("_design/", "_local/"))
                prefix = doc_id.split("/", 1)[0] + "/" if reserved else ""
                for n, path in enumerate(recorder.paths):
                    raw_path, _, query = path.partition("?")
                    segments = raw_path.split("/")
                    assert "." not in segments and ".." not in segments, path
                    assert "#" not in path
                    want = ["", "wire"] + ([prefix[:-1]] if prefix else [])
                    body = segments[len(want):]
                    assert segments[:len(want)] == want, path
                    expected = doc_id[len(prefix):]
                    assert unquote(body[0]) == expected, path
                    assert len(body) == (2 if n == 3 else 1), path
                    if n == 3:
                        assert unquote(body[1]) == "../att"
    finally:
        recorder.close()
