"""Scale-out: two sync server *processes* on one CouchDB-protocol server.

Each `pouchsync serve --couchdb URL` process follows CouchDB's changes feed itself, so a
write made through one process reaches a live client of the other; they share nothing
but CouchDB.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from pouchsync_sync import CouchDB, LocalDatabase
from tests.couchserver import couch_db_name
from tests.integration.test_cli import serve_process, stop
from tests.sync_fixtures import clients  # noqa: F401 - fixture

TOKEN = "scale-out-token"


def serve_on_couch(couch_url: str, tmp: Path) -> tuple[subprocess.Popen, str]:
    proc, url, _ = serve_process(tmp, "--couchdb", couch_url, "--token", TOKEN)
    return proc, url


def test_write_through_one_process_reaches_live_client_of_the_other(couch_url, clients, tmp_path):
    name = couch_db_name("scaleout")
    procs = []
    try:
        first, first_url = serve_on_couch(couch_url, tmp_path)
        procs.append(first)
        second, second_url = serve_on_couch(couch_url, tmp_path)
        procs.append(second)
        creds = {"token": TOKEN}
        with LocalDatabase(tmp_path / "a.sqlite", name=name) as a, \
                LocalDatabase(tmp_path / "b.sqlite", name=name) as b:
            sync_a = clients().connect(first_url).sync(a, live=True, credentials=creds)
            sync_b = clients().connect(second_url).sync(b, live=True, credentials=creds)
            sync_a.wait_in_sync(timeout=60)
            sync_b.wait_in_sync(timeout=60)
            a.put({"_id": "via-first", "v": 1})
            sync_a.wait_in_sync(timeout=60)          # on CouchDB through process 1
            sync_b.wait_in_sync(timeout=60)          # process 2 followed CouchDB, B pulled
            assert b.get("via-first")["v"] == 1
            b.put({"_id": "via-second", "v": 2})
            sync_b.wait_in_sync(timeout=60)
            sync_a.wait_in_sync(timeout=60)
            assert a.get("via-second")["v"] == 2
            sync_a.cancel()
            sync_b.cancel()
        with CouchDB(couch_url) as couch:
            ids = {row["id"] for row in couch.database(name).all_docs()["rows"]}
            assert ids == {"via-first", "via-second"}
            couch.delete_database(name)
    finally:
        for proc in procs:
            code, _, err = stop(proc)
            assert code == 0, err[-2000:]
