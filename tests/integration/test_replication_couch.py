"""The replicator against the CouchDB-protocol test server (tests/couchserver.py):
local → CouchDB and CouchDB → local converge, conflicts, deletions and attachments
included, and the checkpoints are ordinary CouchDB ``_local`` docs."""

from __future__ import annotations

import base64
import threading

import pytest
import requests

from pouchsync_sync.replication import ReplicationResult, Replicator, replicate
from tests.integration.test_replication_local import snapshot

pytestmark = pytest.mark.couch


@pytest.fixture
def local(backend_local_memory):
    """Fresh in-memory stores (closed at teardown by the contract backend's factory)."""
    return lambda: backend_local_memory("local")


def seed(db) -> None:
    db.bulk_docs([{"_id": f"doc{i:03d}", "n": i, "nested": {"list": [i, str(i)]}}
                  for i in range(40)])
    rev = db.get("doc001")["_rev"]
    db.put({"_id": "doc001", "_rev": rev, "n": "edited"})
    db.delete("doc002", db.get("doc002")["_rev"])
    db.put({"_id": "att", "_attachments": {"hello.txt": {
        "content_type": "text/plain", "data": base64.b64encode(b"hello couch").decode()}}})


def test_local_to_couch_and_back_converge_with_conflicts(local, backend_couch) -> None:
    mine, couch = local(), backend_couch("repl")
    seed(mine)
    pushed = replicate(mine, couch, batch_size=16)
    assert pushed.status == "complete", pushed.error
    assert pushed.docs_written == 41 and pushed.doc_write_failures == 0
    assert snapshot(mine) == snapshot(couch)
    assert couch.get_attachment("att", "hello.txt") == b"hello couch"

    # concurrent edits on both sides: a conflict, then replicate both ways
    rev = couch.get("doc003")["_rev"]
    couch.put({"_id": "doc003", "_rev": rev, "n": "couch side"})
    mine.put({"_id": "doc003", "_rev": rev, "n": "local side"})
    couch.delete("doc004", couch.get("doc004")["_rev"])
    mine.put({"_id": "fresh", "x": 1})
    assert replicate(couch, mine, batch_size=16).status == "complete"
    assert replicate(mine, couch, batch_size=16).status == "complete"
    snap = snapshot(mine)
    assert snap == snapshot(couch)
    assert len(snap["doc003"]["winner"][1]) == 1  # one conflict, on both sides


def test_couch_to_local_with_checkpoints_as_couch_local_docs(local, backend_couch,
                                                             couch_url) -> None:
    couch, mine = backend_couch("src"), local()
    seed(couch)
    r = Replicator(couch, mine, batch_size=10)
    result = r.run()
    assert result.status == "complete", result.error
    assert result.docs_read == 41
    assert snapshot(couch) == snapshot(mine)

    answer = requests.get(f"{couch_url}/{couch.name}/_local/{r.replication_id}", timeout=10)
    assert answer.status_code == 200
    body = answer.json()
    assert body["_id"] == f"_local/{r.replication_id}" and body["_rev"].startswith("0-")
    assert body["session_id"] == r.session_id
    assert body["source_last_seq"] == result.last_seq
    assert body["history"][0]["docs_written"] == 41
    assert mine.get(f"_local/{r.replication_id}")["session_id"] == r.session_id

    couch.put({"_id": "later", "v": 1})
    again = replicate(couch, mine, batch_size=10)
    assert again.docs_read == 1  # resumed from the checkpoint


def test_live_from_couch_follows_changes_and_cancels(local, backend_couch) -> None:
    couch, mine = backend_couch("live"), local()
    couch.put({"_id": "first"})
    cancel = threading.Event()
    r = Replicator(couch, mine, live=True, cancel=cancel, longpoll_timeout=1.0)
    out: list[ReplicationResult] = []
    worker = threading.Thread(target=lambda: out.append(r.run()), name="pouchsync-test-couch-live")
    worker.start()
    try:
        assert r.wait_caught_up(20)
        assert mine.get("first")["_id"] == "first"
        couch.put({"_id": "second", "v": 2})
        assert r.wait_caught_up(20)
        assert mine.get("second")["v"] == 2
    finally:
        cancel.set()
        worker.join(15)
    assert not worker.is_alive()
    assert out and out[0].status == "cancelled"


def test_selector_and_doc_ids_from_couch(local, backend_couch) -> None:
    couch = backend_couch("sel")
    couch.bulk_docs([{"_id": f"d{i}", "kind": "even" if i % 2 == 0 else "odd"}
                     for i in range(10)])
    evens, some = local(), local()
    assert replicate(couch, evens, selector={"kind": "even"}).status == "complete"
    assert replicate(couch, some, doc_ids=["d1", "d3", "nosuch"]).status == "complete"
    assert [r["id"] for r in evens.all_docs()["rows"]] == ["d0", "d2", "d4", "d6", "d8"]
    assert [r["id"] for r in some.all_docs()["rows"]] == ["d1", "d3"]
