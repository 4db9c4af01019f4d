"""The sync server with CouchDB databases (the CouchDB-protocol test server) as backends.

Scale-out shape: two server processes' worth of ``SyncServer`` on one CouchDB; a write
through one reaches live clients of the other through each one's change follower.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest

import pouchsync_sync as ps
from pouchsync_sync.protocol import messages as m
from tests.couchserver import couch_db_name
from tests.integration.test_server import TOKEN, _eventually
from tests.rawpeer import RawPeer

pytestmark = pytest.mark.couch


@pytest.fixture
def couch_servers(couch_url: str) -> Iterator[tuple[Callable[[], ps.SyncServer], str]]:
    """``make()`` -> a started SyncServer granting one shared CouchDB database."""
    name = couch_db_name("server")
    admin = ps.CouchDB(couch_url)
    admin.database(name, create=True)
    handles: list[ps.CouchDB] = []
    servers: list[ps.SyncServer] = []

    def make() -> ps.SyncServer:
        handle = ps.CouchDB(couch_url)  # each "process" has its own handle
        handles.append(handle)

        def on_request(credentials: Any, db_name: str) -> Any:
            if db_name != "todos":
                raise ps.Denied("no such database here")
            return handle.database(name)

        server = ps.create_server(on_request, follow_timeout=1.0).start()
        servers.append(server)
        return server

    try:
        yield make, name
    finally:
        for server in servers:
            server.stop()
        for handle in handles:
            handle.close()
        try:
            admin.delete_database(name)
        finally:
            admin.close()


def test_ops_and_errors_over_the_wire_on_couch(couch_servers) -> None:
    make, _name = couch_servers
    server = make()
    client = RawPeer(server.url, credentials=TOKEN)
    try:
        granted = client.open(1, "todos")
        assert granted["type"] == "granted" and "127.0.0.1" not in granted["uuid"]
        a = client.ok(1, "put", {"doc": {"_id": "a", "n": 1}})
        assert client.ok(1, "get", {"doc_id": "a"})["n"] == 1
        assert client.error(1, "put", {"doc": {"_id": "a"}})["status"] == 409
        assert client.error(1, "get", {"doc_id": "missing"})["status"] == 404
        diff = client.ok(1, "revs_diff", {"revs": {"a": [a["rev"], "9-x"]}})
        assert diff["a"]["missing"] == ["9-x"]
        feed = client.ok(1, "changes", {"since": 0})
        assert [r["id"] for r in feed["results"]] == ["a"]
        err = client.error(1, "put", {"doc": {"_id": "_design/x"}})
        assert err["status"] == 403
    finally:
        client.close()


def test_write_through_one_server_reaches_live_client_of_another(couch_servers) -> None:
    make, _name = couch_servers
    first, second = make(), make()
    reader, writer = RawPeer(first.url, credentials=TOKEN), RawPeer(second.url, credentials=TOKEN)
    waiter = RawPeer(first.url, credentials=TOKEN)
    try:
        reader.open(1, "todos")
        waiter.open(1, "todos")
        writer.open(1, "todos")
        since = reader.ok(1, "changes", {"since": "now"})["last_seq"]
        reader.send(m.subscribe(1, 1, since=since, include_docs=True))
        call_id = waiter.start_call(1, "changes", {"feed": "longpoll", "since": since, "timeout": 30})
        assert _eventually(lambda: first.stats()["followers_started"] == 1)
        writer.ok(1, "put", {"doc": {"_id": "scale-out", "v": 1}})
        pushed = reader.expect(type="changes", sub=1, timeout=15)
        assert pushed["results"][0]["id"] == "scale-out" and pushed["results"][0]["doc"]["v"] == 1
        woken = waiter.expect(type="reply", id=call_id, timeout=15)
        assert [r["id"] for r in woken["ok"]["results"]] == ["scale-out"]
        # both channels of the first server share its one follower on the database
        assert first.stats()["followers"] == 1
    finally:
        for client in (reader, writer, waiter):
            client.close()
