"""The browser example in real headless Chromium: two separate profiles (two users, each
with their own IndexedDB) on the page of ``examples/web/app.py`` run as a process.

- a todo added in one page appears in the other, and an edit travels back;
- with the server stopped both pages keep working (one even reloads, from its service
  worker's cache), todos are added on both sides, and after a restart (same port,
  same data) both pages and the server hold the same set;
- a wrong token is refused on the page, and the right one then syncs what was written
  while refused;
- the page and a Python client syncing the same list meet live, both ways;
- a document the server refuses (a ``_design/`` write) is reported on the page and the
  sync goes on;
- in the browser, an unreachable server and an unknown database are events (error,
  reconnect, denied with the server's reason), never uncaught exceptions;
- a conflict made offline in two browsers ends with the same winner and the same loser
  kept in both PouchDBs and on the server, and both pages show that winner.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import pouchsync_sync as ps
from tests.browser.page import WAIT, TodoPage
from tests.webapp import WebApp

TOKEN = "browser-token"
OpenPage = Callable[[str, str], TodoPage]


@pytest.fixture
def web_app(chromium: tuple[str, str], tmp_path: Path) -> Iterator[WebApp]:
    """The example app as a process (started only when there is a browser to test it)."""
    app = WebApp(tmp_path / "app", TOKEN)
    app.folder.mkdir()
    app.start()
    try:
        yield app
    finally:
        app.stop()


def server_titles(app: WebApp) -> list[str]:
    """The titles in the server's copy of the list (its SQLite file, opened beside it)."""
    if not app.data_file.exists():
        return []
    with ps.LocalDatabase(app.data_file) as db:
        rows = db.all_docs(include_docs=True)["rows"]
    return sorted(row["doc"]["title"] for row in rows if isinstance(row["doc"].get("title"), str))


def wait_server_titles(app: WebApp, expected: set[str], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    pause = threading.Event()  # never set: a bounded pause between looks
    while True:
        seen = server_titles(app)
        if seen == sorted(expected):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the server holds {seen}, not {sorted(expected)}, after {timeout:.0f} s")
        pause.wait(0.2)


def test_a_todo_added_in_one_browser_appears_in_the_other(web_app: WebApp, open_page: OpenPage) -> None:
    alice = open_page("alice", web_app.page_url())
    bob = open_page("bob", web_app.page_url())
    assert "token" not in alice.driver.current_url  # taken out of the address bar
    alice.wait_status("online")
    bob.wait_status("online")

    alice.add("Buy milk")
    bob.wait_titles({"Buy milk"})
    bob.add("Fix the bike")
    alice.wait_titles({"Buy milk", "Fix the bike"})

    # an edit travels too: bob ticks the milk, alice sees it done
    bob.js("document.querySelector('#todos li input[type=checkbox]').click();")
    alice.wait(lambda: alice.js("return document.querySelector('#todos li').className;") == "done",
               "alice sees the milk ticked")
    wait_server_titles(web_app, {"Buy milk", "Fix the bike"})
    assert not alice.login_shown() and not bob.login_shown()


def test_offline_then_restart_converges(web_app: WebApp, open_page: OpenPage) -> None:
    alice = open_page("alice", web_app.page_url())
    bob = open_page("bob", web_app.page_url())
    alice.wait_status("online")
    bob.wait_status("online")
    alice.add("Buy milk")
    bob.wait_titles({"Buy milk"})
    alice.wait(lambda: alice.js("return document.body.dataset.offline;") == "ready",
               "alice's service worker holds the page's files")

    code, _, err = web_app.stop()
    assert code == 0, err[-3000:]
    alice.wait_status("offline")
    bob.wait_status("offline")

    # both pages keep working with the server gone
    alice.add("Bread (alice, offline)")
    alice.add("Jam (alice, offline)")
    bob.add("Eggs (bob, offline)")
    alice.wait_titles({"Buy milk", "Bread (alice, offline)", "Jam (alice, offline)"})
    bob.wait_titles({"Buy milk", "Eggs (bob, offline)"})
    assert server_titles(web_app) == ["Buy milk"]

    # the page reloads from its service worker's cache, its todos from IndexedDB
    alice.driver.refresh()
    alice.wait(lambda: alice.js("return !!(window.todos && window.todos.db);"),
               "alice's page reloaded while the server is down")
    alice.wait_titles({"Buy milk", "Bread (alice, offline)", "Jam (alice, offline)"})

    web_app.start()  # same port, same data folder
    everything = {"Buy milk", "Bread (alice, offline)", "Jam (alice, offline)", "Eggs (bob, offline)"}
    alice.wait_titles(everything)
    bob.wait_titles(everything)
    wait_server_titles(web_app, everything)
    alice.wait_status("online")
    bob.wait_status("online")


def test_a_wrong_token_is_refused_then_the_right_one_syncs(web_app: WebApp, open_page: OpenPage) -> None:
    page = open_page("mallory", web_app.page_url("not-the-token"))
    page.wait_status("denied")
    assert page.login_shown()
    assert "token" in page.message()
    assert page.js("return localStorage.getItem('todos-token');") is None  # forgotten

    page.add("Written while refused")  # the page still works, locally
    assert server_titles(web_app) == []

    page.login(TOKEN)
    page.wait_status("online")
    wait_server_titles(web_app, {"Written while refused"})
    assert not page.login_shown()


def test_the_page_and_a_python_client_meet_live(web_app: WebApp, open_page: OpenPage) -> None:
    page = open_page("browser", web_app.page_url())
    page.wait_status("online")
    local = ps.LocalDatabase(":memory:", name="todos")
    client = ps.create_client(initial_delay=0.05, max_delay=0.5, jitter=0.0)
    try:
        client.connect(web_app.base.replace("http://", "ws://") + "sync")
        live = client.sync(local, live=True, credentials={"token": TOKEN})
        assert live.wait_in_sync(timeout=WAIT)

        local.put({"_id": "2000-01-01T00:00:00.000Z-python", "title": "From Python", "done": False})
        page.wait_titles({"From Python"})

        page.add("From the browser")
        deadline = time.monotonic() + WAIT
        since: object = 0
        titles: set[str] = set()
        while "From the browser" not in titles:
            left = deadline - time.monotonic()
            assert left > 0, f"the Python client has {sorted(titles)}, not the browser's todo"
            res = local.changes(since=since, include_docs=True, feed="longpoll", timeout=min(left, 5.0))
            since = res["last_seq"]
            titles |= {row["doc"].get("title") for row in res["results"] if "doc" in row}
        live.cancel()
    finally:
        client.close()
        local.close()


def test_a_refused_document_is_reported_and_the_sync_goes_on(web_app: WebApp, open_page: OpenPage) -> None:
    alice = open_page("alice", web_app.page_url())
    bob = open_page("bob", web_app.page_url())
    alice.wait_status("online")
    bob.wait_status("online")
    # the server refuses _design/ writes from clients: one document denied, not the sync
    alice.js("window.todos.db.put({_id: '_design/mine', views: {}});")
    alice.wait(lambda: "the server refused _design/mine" in alice.refused(),
               "alice's page reports the refused document")
    assert "design documents are not allowed" in alice.refused()
    alice.add("After the refusal")
    bob.wait_titles({"After the refusal"})
    wait_server_titles(web_app, {"After the refusal"})
    assert alice.status() == "online"
    with ps.LocalDatabase(web_app.data_file) as db:
        with pytest.raises(ps.NotFound):
            db.get("_design/mine")


def test_bad_urls_and_unknown_databases_are_events_in_the_browser(web_app: WebApp,
                                                                    open_page: OpenPage) -> None:
    page = open_page("browser", web_app.page_url())
    page.wait_status("online")
    page.js("""
      var seen = window.seen = {uncaught: [], unreachable: [], unknown: []};
      window.addEventListener('error', function (e) { seen.uncaught.push(String(e.message)); });
      window.addEventListener('unhandledrejection', function (e) { seen.uncaught.push(String(e.reason)); });
      var lost = PouchSync.createClient({initialDelay: 100, maxDelay: 200});
      lost.on('error', function (err) { seen.unreachable.push('error: ' + err.message); });
      lost.on('reconnect', function (n) { seen.unreachable.push('reconnect ' + n); });
      lost.connect('ws://127.0.0.1:9/');                // nothing listens on the discard port
      window.lost = lost;
      var other = window.todos.client.sync(new PouchDB('other'),
                                           {remoteName: 'other', credentials: {token: arguments[0]}});
      other.on('denied', function (err) { seen.unknown.push('denied: ' + err.message); });
      other.on('error', function (err) { seen.unknown.push('error: ' + err.message); });
    """, TOKEN)
    page.wait(lambda: page.js("return window.seen.unreachable.length >= 3;"),
              "an unreachable server gives error and reconnect events")
    page.wait(lambda: len(page.js("return window.seen.unknown;")) >= 2, "an unknown database is denied")
    unknown = page.js("return window.seen.unknown;")
    assert unknown[0].startswith("denied: ") and "only has the 'todos' list" in unknown[0], unknown
    page.js("window.lost.end();")
    assert page.js("return window.seen.uncaught;") == []
    page.add("Still syncing")  # the page's own sync on the shared socket is untouched
    wait_server_titles(web_app, {"Still syncing"})


def test_a_conflict_made_offline_ends_with_one_winner_everywhere(web_app: WebApp,
                                                                  open_page: OpenPage) -> None:
    alice = open_page("alice", web_app.page_url())
    bob = open_page("bob", web_app.page_url())
    alice.wait_status("online")
    bob.wait_status("online")
    alice.add("Shared")
    bob.wait_titles({"Shared"})
    code, _, err = web_app.stop()
    assert code == 0, err[-3000:]
    alice.wait_status("offline")
    bob.wait_status("offline")

    # two different edits of the same revision: alice renames it, bob ticks it
    alice.js("var db = window.todos.db; db.allDocs({include_docs: true}).then(function (r) {"
             "  var doc = r.rows[0].doc; doc.title = 'Shared (renamed)'; return db.put(doc); });")
    alice.wait_titles({"Shared (renamed)"})
    bob.js("document.querySelector('#todos li input[type=checkbox]').click();")
    bob.wait(lambda: bob.js("return document.querySelector('#todos li').className;") == "done",
             "bob's tick is shown")

    web_app.start()
    read = ("var done = arguments[arguments.length - 1]; var db = window.todos.db;"
            "db.allDocs().then(function (r) { return db.get(r.rows[0].id, {conflicts: true}); })"
            ".then(function (d) { done([d._id, d._rev, (d._conflicts || []).sort()]); },"
            "      function (e) { done(['error', String(e)]); });")

    def settled(page: TodoPage) -> Any:
        got = page.driver.execute_async_script(read)
        return got if len(got) == 3 and got[2] else None

    doc_id, rev, losers = alice.wait(lambda: settled(alice), "alice holds the conflict")
    bob.wait(lambda: settled(bob) == [doc_id, rev, losers], "bob holds the same winner and loser")
    with ps.LocalDatabase(web_app.data_file) as db:
        deadline = time.monotonic() + WAIT
        pause = threading.Event()
        while True:
            doc = db.get(doc_id, conflicts=True)
            if (doc["_rev"], sorted(doc.get("_conflicts", []))) == (rev, losers):
                break
            assert time.monotonic() < deadline, \
                f"server: {doc['_rev']} {doc.get('_conflicts')}, pages: {rev} {losers}"
            pause.wait(0.2)
    assert len(losers) == 1

    def shown(page: TodoPage) -> Any:
        return page.js("var li = document.querySelector('#todos li');"
                       "return li && [li.querySelector('.title').textContent, li.className];")

    alice.wait(lambda: shown(alice) == shown(bob) and len(alice.titles()) == 1,
               "both pages show the same winner")
