"""Syncs through servers backed by the CouchDB-protocol test server.

Includes the scale-out path: two sync servers on one CouchDB, a write through one
reaches a live client of the other (each server follows CouchDB's changes itself).
"""

from __future__ import annotations

from typing import Any, Callable

from pouchsync_sync.client import SyncState
from tests.integration.test_sync import (  # noqa: F401 - fixtures
    clients,
    local,
    make_server,
    put_many,
    revs,
)


def test_one_shot_both_ways_with_a_couchdb_backed_server(backend_couch, clients, local):
    couch_db = backend_couch("sync")
    couch_db.bulk_docs([{"_id": f"c{i}", "n": i} for i in range(30)])
    server = make_server(lambda credentials, name: couch_db).start()
    try:
        a = local("todos")
        put_many(a, "a", 40)
        client = clients().connect(server.url)
        result = client.sync(a).wait(timeout=60)
        assert (result.docs_pushed, result.docs_pulled) == (40, 30)
        assert revs(a) == revs(couch_db)
    finally:
        client.close()
        server.stop()


def test_scale_out_two_servers_on_one_couchdb(backend_couch, clients, local):
    couch_db = backend_couch("shared")
    grant: Callable[[Any, str], Any] = lambda credentials, name: couch_db
    first, second = make_server(grant).start(), make_server(grant).start()
    try:
        a, b = local("todos"), local("todos")
        client_a, client_b = clients().connect(first.url), clients().connect(second.url)
        sync_a = client_a.sync(a, live=True)
        sync_b = client_b.sync(b, live=True)
        sync_a.wait_in_sync(timeout=30)
        sync_b.wait_in_sync(timeout=30)
        a.put({"_id": "through-first", "v": 1})
        sync_a.wait_in_sync(timeout=30)   # on CouchDB now
        sync_b.wait_in_sync(timeout=30)   # the second server saw it and B pulled it
        assert b.get("through-first")["v"] == 1
        b.put({"_id": "through-second"})
        sync_b.wait_in_sync(timeout=30)
        sync_a.wait_in_sync(timeout=30)
        assert a.get("through-second")["_id"] == "through-second"
        assert revs(a) == revs(b) == revs(couch_db)
        assert sync_a.state in (SyncState.ACTIVE, SyncState.PAUSED)
    finally:
        for client in (locals().get("client_a"), locals().get("client_b")):
            if client is not None:
                client.close()
        for server in (first, second):
            server.stop()
