"""pouchsync.js through a SyncServer whose databases are on the CouchDB-protocol test
server (pouchdb-server): one-shot both ways, and a live Python <-> JS meet."""

from __future__ import annotations

import json

import pytest

import pouchsync_sync as ps
from tests.js.conftest import TOKEN, JsServer
from tests.js.test_node_sync import LIVE_PEER, ONE_SHOT, _seed, _wait_doc

pytestmark = pytest.mark.couch


@pytest.fixture
def couch_js_server(tmp_path, backend_couch):
    server = JsServer(tmp_path, make_db=backend_couch)
    try:
        yield server
    finally:
        server.close()


def test_one_shot_both_ways_on_the_couch_backend(run_js, couch_js_server):
    srv = couch_js_server.db("todos")
    srv.bulk_docs(_seed("py", 25))
    rev = srv.put({"_id": "edited", "v": 1})["rev"]
    srv.put({"_id": "edited", "_rev": rev, "v": 2})
    out = run_js(ONE_SHOT, server=couch_js_server, DIRECTION="both",
                 SEED=json.dumps(_seed("js", 25)))[0]
    assert out["result"]["push"]["docs_written"] == 25
    assert out["result"]["pull"]["docs_written"] == 26
    docs = {d["_id"]: d for d in out["docs"]}
    assert len(docs) == 51 and docs["edited"]["v"] == 2
    assert srv.info()["doc_count"] == 51


def test_live_js_to_couch_backed_server_to_python_client_and_back(start_js, couch_js_server, tmp_path):
    node = start_js(LIVE_PEER, server=couch_js_server)
    node.expect(lambda o: o.get("ready"))
    py_db = ps.LocalDatabase(tmp_path / "py.sqlite")
    client = ps.create_client()
    try:
        client.connect(couch_js_server.url)
        live = client.sync(py_db, remote_name="shared", credentials={"token": TOKEN}, live=True)
        node.send({"put": {"_id": "from-js", "title": "node via couch"}})
        node.expect(lambda o: o.get("put") == "from-js")
        _wait_doc(py_db, "from-js", timeout=30)
        assert py_db.get("from-js")["title"] == "node via couch"
        py_db.put({"_id": "from-py", "title": "python via couch"})
        node.send({"waitFor": "from-py"})
        assert node.expect(lambda o: "got" in o)["got"]["title"] == "python via couch"
        node.send({"end": True})
        node.expect(lambda o: o.get("done"))
        assert node.wait(30) == 0
        live.cancel()
    finally:
        client.close()
        py_db.close()
