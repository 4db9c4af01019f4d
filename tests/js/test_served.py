"""The server serves pouchsync.js: GET <path>pouchsync.js, ETag, 304; other GETs unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

import pouchsync_sync
from pouchsync_sync import LocalDatabase, create_server


@pytest.fixture
def server():
    with LocalDatabase(":memory:", name="todos") as db:
        srv = create_server(lambda credentials, name: db).start()
        try:
            yield srv
        finally:
            srv.stop()


def _http(url: str) -> str:
    return url.replace("ws://", "http://")


def test_js_client_path_is_the_shipped_file():
    path = Path(pouchsync_sync.js_client_path())
    assert path.is_absolute() and path.name == "pouchsync.js"
    assert "PouchSync" in path.read_text()
    assert "js_client_path" in pouchsync_sync.__all__


def test_get_serves_the_file_with_an_etag_and_304(server):
    url = _http(server.url) + "pouchsync.js"
    with requests.Session() as http:
        first = http.get(url, timeout=10)
        assert first.status_code == 200
        assert first.headers["Content-Type"].startswith("text/javascript")
        assert first.content == Path(pouchsync_sync.js_client_path()).read_bytes()
        etag = first.headers["ETag"]
        assert etag.startswith('"') and etag.endswith('"')
        again = http.get(url, headers={"If-None-Match": etag}, timeout=10)
        assert again.status_code == 304 and again.content == b""
        other = http.get(url, headers={"If-None-Match": '"something else"'}, timeout=10)
        assert other.status_code == 200 and other.headers["ETag"] == etag
        head = http.head(url, timeout=10)
        assert head.status_code == 200 and head.content == b""
        posted = http.post(url, data=b"x", timeout=10)
        assert posted.status_code == 405


def test_other_plain_gets_keep_their_answer(server):
    for path in ("", "other.js", "pouchsync.jsx"):
        resp = requests.get(_http(server.url) + path, timeout=10)
        assert resp.status_code == 400, path
        assert b"speaks WebSocket" in resp.content


def test_served_under_a_flask_mount_relative_to_the_mount_path():
    flask = pytest.importorskip("flask")
    app = flask.Flask("jsmount")

    @app.route("/pouchsync.js")
    def not_ours():
        return "flask's own"

    with LocalDatabase(":memory:", name="todos") as db:
        create_server(lambda credentials, name: db).init_app(app, path="/sync")
        with app.test_client() as http:
            resp = http.get("/sync/pouchsync.js")
            assert resp.status_code == 200
            assert resp.headers["Content-Type"].startswith("text/javascript")
            assert b"PouchSync" in resp.data
            cached = http.get("/sync/pouchsync.js", headers={"If-None-Match": resp.headers["ETag"]})
            assert cached.status_code == 304
            assert http.get("/pouchsync.js").data == b"flask's own"
            assert http.get("/sync").status_code == 400
