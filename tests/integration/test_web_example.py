"""``examples/web/app.py`` run as a user runs it: a process started twice in one folder,
stopped by SIGTERM, its data kept between runs, PouchDB installed by npm on its first
run, and its refusals (no token, no npm, a failing npm install, a bad or busy port, a
data folder that is a file).

The page itself is driven by a real browser in ``tests/browser/``; here a Python client
syncs through the app's ``/sync`` endpoint, which is what the page's sync talks to.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests

import pouchsync_sync as ps
from tests.webapp import APP, REPO, WebApp, app_env, js_home

TOKEN = "web-example-token"
WAIT = 30.0


def client() -> ps.Client:
    return ps.create_client(initial_delay=0.05, max_delay=0.5, max_attempts=3, jitter=0.0)


def ws_url(app: WebApp) -> str:
    return app.base.replace("http://", "ws://") + "sync"


def test_web_example_twice_in_one_folder(tmp_path: Path) -> None:
    checkout_before = set((REPO / "examples" / "web").rglob("*"))
    app = WebApp(tmp_path, TOKEN)
    with app:
        app.start()
        page = requests.get(app.base, timeout=WAIT)
        assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
        for src in ("/vendor/pouchdb.min.js", "/sync/pouchsync.js", "/todos.js"):
            assert f'<script src="{src}"></script>' in page.text
        build = requests.get(app.base + "vendor/pouchdb.min.js", timeout=WAIT)
        assert build.status_code == 200 and build.headers["Content-Type"].startswith("text/javascript")
        assert build.text.startswith("// PouchDB 9.")
        script = requests.get(app.base + "todos.js", timeout=WAIT)
        assert script.status_code == 200 and "PouchSync.createClient" in script.text
        client_js = requests.get(app.base + "sync/pouchsync.js", timeout=WAIT)  # by the SyncServer
        assert client_js.status_code == 200 and "createClient" in client_js.text
        worker = requests.get(app.base + "sw.js", timeout=WAIT)
        assert worker.status_code == 200 and "caches.open" in worker.text
        assert requests.get(app.base + "sync", timeout=WAIT).status_code == 400  # WebSocket only
        assert requests.get(app.base + "nothing-here", timeout=WAIT).status_code == 404

        phone = ps.LocalDatabase(":memory:", name="todos")
        phone.put({"_id": "milk", "title": "Buy milk", "done": False})
        with client() as c:
            c.connect(ws_url(app))
            with pytest.raises(ps.Denied):
                c.sync(phone, credentials={"token": "wrong"}).wait(WAIT)
            with pytest.raises(ps.Denied):
                c.sync(phone, credentials=None).wait(WAIT)
            with pytest.raises(ps.Denied):  # the one list it serves, nothing else
                c.sync(phone, remote_name="other", credentials={"token": TOKEN}).wait(WAIT)
            assert c.sync(phone, credentials={"token": TOKEN}).wait(WAIT).docs_pushed == 1
        phone.close()
        code, out, err = app.stop()
    assert code == 0, err[-3000:]
    assert "stopped" in out
    assert TOKEN not in out + err
    assert app.data_file.exists()  # where the user ran it
    assert set((REPO / "examples" / "web").rglob("*")) == checkout_before  # nothing in the checkout

    first_port = app.port
    with app:
        app.start()  # same folder, same port
        assert app.port == first_port
        laptop = ps.LocalDatabase(":memory:", name="todos")
        with client() as c:
            c.connect(ws_url(app))
            assert c.sync(laptop, credentials={"token": TOKEN}).wait(WAIT).docs_pulled == 1
        assert laptop.get("milk")["title"] == "Buy milk"
        laptop.close()
        code, out, err = app.stop()
    assert code == 0, err[-3000:]
    assert "stopped" in out


def run_app(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(APP), "--port", "0", *args], cwd=tmp_path,
                          env=app_env(**env), capture_output=True, text=True, timeout=60)


def test_web_example_without_npm_says_so_in_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "no-npm-here"
    empty.mkdir()
    done = run_app(tmp_path, "--token", TOKEN, "--js-home", str(tmp_path / "js-cache"),
                   PATH=str(empty))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "npm is not on PATH" in lines[0], done.stderr
    assert not (tmp_path / "todos-data").exists()


def test_web_example_installs_pouchdb_on_first_run(tmp_path: Path) -> None:
    cache = tmp_path / "fresh-js-cache"  # empty: the app runs npm install pouchdb@9 itself
    for run in (1, 2):
        with WebApp(tmp_path, TOKEN, extra_args=("--js-home", str(cache))) as app:
            app.start()
            build = requests.get(app.base + "vendor/pouchdb.min.js", timeout=WAIT)
            assert build.status_code == 200 and build.text.startswith("// PouchDB 9."), run
            code, _, err = app.stop()
        assert code == 0, err[-3000:]
        assert (cache / "node_modules" / "pouchdb" / "dist" / "pouchdb.min.js").is_file()


def test_web_example_failed_npm_install_says_why_in_one_line(tmp_path: Path) -> None:
    fake = tmp_path / "fake-bin"  # an npm that fails like an unreachable registry does
    fake.mkdir()
    (fake / "npm").write_text("#!/bin/sh\necho 'npm error code ECONNREFUSED' >&2\nexit 1\n")
    (fake / "npm").chmod(0o755)
    done = run_app(tmp_path, "--token", TOKEN, "--js-home", str(tmp_path / "js-cache"),
                   PATH=f"{fake}:/usr/bin:/bin")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "npm install pouchdb@9" in lines[0] and "ECONNREFUSED" in lines[0]


def test_web_example_without_token_refuses_to_start(tmp_path: Path) -> None:
    done = run_app(tmp_path)
    assert done.returncode == 2
    assert "--token is required" in done.stderr
    assert not (tmp_path / "todos-data").exists()


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_web_example_bad_port_is_a_usage_error(tmp_path: Path, port: str) -> None:
    done = run_app(tmp_path, "--token", TOKEN, "--port", port)
    assert done.returncode == 2
    assert "--port" in done.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "todos-data").exists()


def test_web_example_data_folder_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("not a folder\n")
    done = run_app(tmp_path, "--token", TOKEN, "--js-home", str(js_home()), "--data-dir", "taken")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot use 'taken' as the data folder" in lines[0], done.stderr
    assert (tmp_path / "taken").read_text() == "not a folder\n"  # left as it was


def test_web_example_port_in_use(tmp_path: Path) -> None:
    with WebApp(tmp_path, TOKEN) as app:
        app.start()
        done = run_app(tmp_path, "--token", TOKEN, "--js-home", str(js_home()),
                       "--port", str(app.port))
        code, _, err = app.stop()
    assert code == 0, err[-3000:]
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert str(app.port) in last and "in use" in last, done.stderr

