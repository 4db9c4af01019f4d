"""End-to-end tests of examples/flask_app.py's sync, written as an app's own tests would be,
with pouchsync_sync's pytest plugin and ``pouchsync_sync.testing``.

The app is served for real (werkzeug, threaded, 127.0.0.1, a free port) on the embedded
store and on a CouchDB-protocol server (the plugin's ``couchdb_url``: ``$COUCHDB_URL``,
else pouchdb-server from npm; skipped, with the reason, without Node). Run::

    python3 -m pytest examples/test_flask_app.py
    # from a checkout, pouchsync_sync not pip-installed: add -p pouchsync_sync.testing.plugin
"""

from __future__ import annotations

import secrets
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from werkzeug.serving import make_server

import pouchsync_sync as ps
from pouchsync_sync.testing import assert_converged, network_fault, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parent))
import flask_app  # noqa: E402 - the example next to this file

TOKEN = "test-token"


class App:
    """The running app: its HTTP base URL, its sync URL and a fresh database name."""

    def __init__(self, app: Any, port: int) -> None:
        self.app = app
        self.http = f"http://127.0.0.1:{port}"
        self.sync_url = f"ws://127.0.0.1:{port}/sync"
        self.db_name = "todos-" + secrets.token_hex(4)  # tests may share one CouchDB

    def database(self) -> ps.Database:
        """The server side of ``db_name``, as the app stores it."""
        return self.app.extensions["pouchsync_databases"].database(self.db_name)


@pytest.fixture(params=["sqlite", "couch"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[App]:
    couchdb_url = request.getfixturevalue("couchdb_url") if request.param == "couch" else None
    app = flask_app.create_app(data_dir=str(tmp_path / "data"), couchdb_url=couchdb_url,
                               tokens=[TOKEN])
    http = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.1},
                              name="flask-app-http", daemon=True)
    thread.start()
    running = App(app, http.server_port)
    try:
        yield running
    finally:
        http.shutdown()
        flask_app.shutdown(app)
        thread.join(10)
        http.server_close()
        if couchdb_url:
            with ps.CouchDB(couchdb_url) as couch:
                if running.db_name in couch.all_dbs():
                    couch.delete_database(running.db_name)


@pytest.fixture
def client() -> Iterator[ps.Client]:
    with ps.Client(initial_delay=0.02, max_delay=0.25, jitter=0.0) as made:
        yield made


@pytest.fixture
def phone(served: App, tmp_path: Path) -> Iterator[ps.LocalDatabase]:
    with ps.LocalDatabase(tmp_path / "phone.sqlite", name=served.db_name) as db:
        yield db


def test_two_devices_converge_through_the_app(served: App, client: ps.Client,
                                              phone: ps.LocalDatabase, tmp_path: Path) -> None:
    client.connect(served.sync_url)
    with ps.LocalDatabase(tmp_path / "laptop.sqlite", name=served.db_name) as laptop:
        phone.put({"_id": "milk", "title": "Buy milk"})
        laptop.put({"_id": "bread", "title": "Buy bread"})
        for device in (phone, laptop, phone):
            result = client.sync(device, credentials={"token": TOKEN}).wait(30)
            assert result.ok, result
        assert_converged(phone, laptop, served.database())


def test_a_live_sync_sees_a_write_made_through_the_json_api(served: App, client: ps.Client,
                                                            phone: ps.LocalDatabase) -> None:
    client.connect(served.sync_url)
    live = client.sync(phone, credentials={"token": TOKEN}, live=True)
    answer = requests.post(f"{served.http}/db/{served.db_name}", json={"_id": "web", "title": "x"},
                           headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert answer.status_code == 201, answer.text
    assert wait_for(phone, "web", timeout=30)["title"] == "x"
    live.cancel()


def test_a_wrong_token_is_denied_on_both_doors(served: App, client: ps.Client) -> None:
    client.connect(served.sync_url)
    with pytest.raises(ps.Denied):
        client.database(served.db_name, credentials={"token": "guess"}, timeout=10)
    answer = requests.get(f"{served.http}/db/{served.db_name}",
                          headers={"Authorization": "Bearer guess"}, timeout=10)
    assert answer.status_code == 401


def test_an_edit_made_while_the_network_is_cut_arrives_after_it_heals(
        served: App, client: ps.Client, phone: ps.LocalDatabase) -> None:
    with network_fault(served.sync_url) as fault:
        fault.connect(client)
        live = client.sync(phone, credentials={"token": TOKEN}, live=True)
        phone.put({"_id": "before"})
        wait_for(served.database(), "before", timeout=30)
        fault.cut()
        phone.put({"_id": "offline"})
        fault.heal()
        wait_for(served.database(), "offline", timeout=30)
        live.cancel()
        assert_converged(phone, served.database())
