"""The README's "From the browser" snippet, as written, in headless Chromium: served by
a Flask app with the sync server mounted at /sync, it syncs a PouchDB live both ways."""

from __future__ import annotations

import re
import threading
import time
from typing import Any, Callable, Iterator

import pytest

import pouchsync_sync as ps
from tests.browser.page import WAIT, TodoPage
from tests.webapp import REPO, js_home


def readme_html() -> str:
    section = (REPO / "README.md").read_text(encoding="utf-8").split("## From the browser", 1)[1]
    found = re.search(r"^```html\n(.*?)^```$", section, re.S | re.M)
    assert found, "the README's browser section has an html block"
    return found.group(1)


@pytest.fixture
def readme_site(chromium: tuple[str, str]) -> Iterator[tuple[str, ps.LocalDatabase]]:
    from flask import Flask, send_file
    from werkzeug.serving import make_server

    server_db = ps.LocalDatabase(":memory:", name="todos")

    def on_request(credentials: Any, db_name: str) -> ps.Database:
        if credentials == {"token": "s3cret"} and db_name == "todos":
            return server_db
        raise ps.Denied("not allowed")

    build = js_home() / "node_modules" / "pouchdb" / "dist" / "pouchdb.min.js"
    app = Flask(__name__, static_folder=None)
    sync_server = ps.create_server(on_request).init_app(app, path="/sync")
    page = ("<!doctype html><html><head><meta charset='utf-8'></head><body>"
            + readme_html() + "</body></html>")
    app.add_url_rule("/", "page", lambda: page)
    app.add_url_rule("/pouchdb.min.js", "pouchdb", lambda: send_file(build, mimetype="text/javascript"))
    http = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.1},
                              name="test-readme-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{http.server_port}/", server_db
    finally:
        http.shutdown()
        sync_server.stop()
        thread.join(10)
        http.server_close()
        server_db.close()


def test_the_readme_snippet_syncs_live_both_ways(readme_site: tuple[str, ps.LocalDatabase],
                                                  open_page: Callable[..., TodoPage]) -> None:
    url, server_db = readme_site
    browser = open_page("readme", url, "return !!(window.db && window.sync);")
    browser.js("db.put({_id: 'from-the-page', title: 'written in the browser'});")
    deadline = time.monotonic() + WAIT
    pause = threading.Event()
    while True:
        try:
            assert server_db.get("from-the-page")["title"] == "written in the browser"
            break
        except ps.NotFound:
            assert time.monotonic() < deadline, "the page's doc never reached the server"
            pause.wait(0.1)
    server_db.put({"_id": "from-python", "title": "written in Python"})
    browser.wait(lambda: browser.driver.execute_async_script(
        "var done = arguments[arguments.length - 1];"
        "db.get('from-python').then(function (d) { done(d.title); }, function () { done(null); });")
        == "written in Python", "the server's doc reaches the page")
    logged = " ".join(browser.console())
    assert "push" in logged and "pull" in logged, logged  # the snippet's change listener
