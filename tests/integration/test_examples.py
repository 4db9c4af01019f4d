"""Every example runs: as real processes on 127.0.0.1, synced through by real clients.

- ``examples/todo.py`` alone, and against a ``pouchsync serve`` process;
- ``examples/flask_app.py`` on the embedded store and on CouchDB (``COUCHDB_URL``);
- ``examples/gunicorn.conf.py``: the Flask app under gunicorn's gthread worker, two
  worker processes sharing the data directory, live sync through it, clean SIGTERM;
- ``examples/notebook.ipynb``: executed headless with nbclient (its own test below).

Each runs twice in a row in the same folder (and against the same server where it
has one), as a user runs what they copied, and must say the same both times; every
failure of an example is one line on stderr with an exit status.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

import pouchsync_sync as ps

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
TOKEN = "example-token"
WAIT = 30.0


def env(**extra: str) -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("COUCHDB_URL", None)
    e.update(extra)
    return e


def wait_for_line(proc: subprocess.Popen, stream: Any, pattern: str, timeout: float = WAIT) -> re.Match:
    """Read ``stream`` line by line until ``pattern`` matches (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    seen = []
    sel = selectors.DefaultSelector()
    sel.register(stream, selectors.EVENT_READ)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None and not sel.select(0):
                raise AssertionError(f"{pattern!r} not seen; got:\n" + "".join(seen[-30:]))
            if not sel.select(min(left, 1.0)):
                continue
            line = stream.readline()
            seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found
    finally:
        sel.close()


def stop(proc: subprocess.Popen, timeout: float = WAIT) -> tuple[int, str, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        raise AssertionError(f"did not stop on SIGTERM within {timeout}s:\n{err[-3000:]}")
    return proc.returncode, out, err


def client() -> ps.Client:
    return ps.create_client(initial_delay=0.05, max_delay=0.5, max_attempts=3, jitter=0.0)


# -- todo.py ------------------------------------------------------------------------------
def check_todo_output(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "same list on both sides" in out
    assert "bob <- milk: 'Buy milk' done=False" in out      # printed by a blinker receiver
    assert "alice <- milk: 'Buy milk' done=True" in out
    assert "bob <- bike: deleted" in out
    lists = out.split("alice's list:")[1]
    assert lists.count("[x] Buy milk") == 2 and "Fix the bike" not in lists


def test_todo_example_alone_twice(tmp_path: Path) -> None:
    outputs = []
    for _ in range(2):  # in the same folder
        done = subprocess.run([sys.executable, str(EXAMPLES / "todo.py")], cwd=tmp_path, env=env(),
                              capture_output=True, text=True, timeout=60)
        check_todo_output(done)
        assert done.stderr == ""
        outputs.append(sorted(done.stdout.splitlines()[1:]))  # all but "server: ws://…"
    assert outputs[0] == outputs[1]
    assert list(tmp_path.iterdir()) == []  # its stores are in memory: nothing left behind


def serve_process(cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pouchsync_sync", "serve", "--port", "0", "--data-dir", "data",
         "--token", TOKEN], cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)


def run_todo(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EXAMPLES / "todo.py"), *args], cwd=cwd, env=env(),
                          capture_output=True, text=True, timeout=60)


def test_todo_example_twice_against_one_pouchsync_serve(tmp_path: Path) -> None:
    serve = serve_process(tmp_path)
    try:
        url = wait_for_line(serve, serve.stdout, r"(ws://\S+)").group(1)
        first = run_todo(tmp_path, "--url", url, "--token", TOKEN, "--list", "shared")
        check_todo_output(first)
        second = run_todo(tmp_path, "--url", url, "--token", TOKEN, "--list", "shared")
        check_todo_output(second)  # the list left by the first run is written over
        assert "alice and bob load the list (empty on a first run)" in second.stdout
        # from the first edit on, the second run says what the first said, line for line
        # (a receiver's line may print just after the next step's title: compare sorted)
        def story(out: str) -> list[str]:
            return sorted(out.split("alice adds three todos\n", 1)[1].splitlines())
        assert story(first.stdout) == story(second.stdout)
        assert first.stderr == second.stderr == ""
    finally:
        code, _, err = stop(serve)
    assert code == 0, err
    with ps.LocalDatabase(tmp_path / "data" / "shared.sqlite") as db:  # the server's copy
        assert sorted(r["id"] for r in db.all_docs()["rows"]) == ["milk", "mom", "plants"]


def test_todo_example_failures_are_one_line(tmp_path: Path) -> None:
    serve = serve_process(tmp_path)
    try:
        url = wait_for_line(serve, serve.stdout, r"(ws://\S+)").group(1)
        denied = run_todo(tmp_path, "--url", url, "--token", "wrong")
        assert denied.returncode == 3
        assert denied.stderr.splitlines() == ["todo.py: denied: invalid token"]
        verbose = run_todo(tmp_path, "--url", url, "--token", "wrong", "-v")
        assert verbose.returncode == 3 and "Traceback (most recent call last)" in verbose.stderr
        assert verbose.stderr.splitlines()[-1] == "todo.py: denied: invalid token"
    finally:
        code, _, err = stop(serve)
    assert code == 0, err
    bad = run_todo(tmp_path, "--frobnicate")
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == ["todo.py: error: unrecognized arguments: --frobnicate"]
    port = url.rsplit(":", 1)[1].strip("/")  # the server is gone: unreachable, bounded retries
    gone = run_todo(tmp_path, "--url", f"ws://127.0.0.1:{port}/", "--token", TOKEN)
    assert gone.returncode == 4, gone.stderr
    [line] = gone.stderr.splitlines()
    assert line.startswith("todo.py: unreachable: gave up connecting after ")


# -- flask_app.py --------------------------------------------------------------------------
class FlaskApp:
    def __init__(self, proc: subprocess.Popen, base: str) -> None:
        self.proc = proc
        self.base = base
        self.ws = base.replace("http://", "ws://") + "sync"


@pytest.fixture(params=["sqlite", "couchdb"])
def flask_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[FlaskApp, str, str]]:
    """The Flask example as a process; yields (app, backend, database name)."""
    extra = {"POUCHSYNC_TOKENS": f"other,{TOKEN}", "POUCHSYNC_DATA": str(tmp_path / "data")}
    name = "todos"
    couch = None
    if request.param == "couchdb":
        from tests.couchserver import couch_db_name

        couch_url = request.getfixturevalue("couch_url")
        extra["COUCHDB_URL"] = couch_url
        name = couch_db_name("flask-example")
        couch = ps.CouchDB(couch_url)
    proc = subprocess.Popen([sys.executable, str(EXAMPLES / "flask_app.py"), "--port", "0"],
                            cwd=tmp_path, env=env(**extra), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        base = wait_for_line(proc, proc.stdout, r"listening on (http://\S+)").group(1)
        yield FlaskApp(proc, base), request.param, name
    finally:
        if proc.poll() is None:
            stop(proc)
        if couch is not None:
            try:
                couch.delete_database(name)
            except ps.PouchSyncError:
                pass
            couch.close()


def test_flask_example(flask_app: tuple[FlaskApp, str, str], tmp_path: Path) -> None:
    app, backend, name = flask_app
    auth = {"Authorization": f"Bearer {TOKEN}"}
    home = requests.get(app.base, timeout=WAIT)
    assert home.status_code == 200 and home.json()["backend"] == backend
    assert requests.get(app.base + f"db/{name}", timeout=WAIT).status_code == 401
    assert requests.get(app.base + "sync", timeout=WAIT).status_code == 400  # WebSocket only

    phone = ps.LocalDatabase(":memory:", name="phone")
    laptop = ps.LocalDatabase(":memory:", name="laptop")
    phone.put({"_id": "milk", "title": "Buy milk"})
    with client() as c:
        c.connect(app.ws)
        with pytest.raises(ps.Denied):
            c.sync(phone, remote_name=name, credentials={"token": "nope"}).wait(WAIT)
        with pytest.raises(ps.Denied):
            c.sync(phone, remote_name="../../etc", credentials={"token": TOKEN}).wait(WAIT)
        result = c.sync(phone, remote_name=name, credentials={"token": TOKEN}).wait(WAIT)
        assert result.docs_pushed == 1

        # an ordinary route reads what was synced, and writes a doc the next sync brings
        listed = requests.get(app.base + f"db/{name}", headers=auth, timeout=WAIT)
        assert [d["_id"] for d in listed.json()["docs"]] == ["milk"]
        added = requests.post(app.base + f"db/{name}", json={"_id": "bread", "title": "Bread"},
                              headers=auth, timeout=WAIT)
        assert added.status_code == 201, added.text

        pulled = c.sync(laptop, remote_name=name, credentials={"token": TOKEN}).wait(WAIT)
        assert pulled.docs_pulled == 2
        assert laptop.get("bread")["title"] == "Bread"
        health = requests.get(app.base + "health", timeout=WAIT).json()
        assert health["ok"] and health["connections"] == 1
    phone.close()
    laptop.close()

    code, out, err = stop(app.proc)
    assert code == 0, err
    assert "stopped" in out
    assert TOKEN not in err
    if backend == "sqlite":
        assert (tmp_path / "data" / f"{name}.sqlite").exists()
        assert sorted(p.name for p in (tmp_path / "data").iterdir() if p.suffix == ".sqlite") == [f"{name}.sqlite"]
    else:
        assert not (tmp_path / "data").exists()


def start_flask_example(cwd: Path, *args: str, **extra: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(EXAMPLES / "flask_app.py"), "--port", "0", *args],
                            cwd=cwd, env=env(POUCHSYNC_TOKENS=TOKEN, **extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = wait_for_line(proc, proc.stdout, r"listening on (http://\S+)").group(1)
    except BaseException:
        stop(proc)
        raise
    return proc, base


def test_flask_example_twice_in_one_folder_keeps_its_data_there(tmp_path: Path) -> None:
    for run in range(2):  # no POUCHSYNC_DATA: ./data where it runs
        proc, base = start_flask_example(tmp_path)
        try:
            db = ps.LocalDatabase(":memory:", name="phone")
            written = db.post({"title": f"run {run}"})  # a fresh write each run
            with client() as c:
                c.connect(base.replace("http://", "ws://") + "sync")
                result = c.sync(db, remote_name="todos", credentials={"token": TOKEN}).wait(WAIT)
            assert result.docs_pushed == 1 and result.docs_pulled == run
            db.close()
        finally:
            code, out, err = stop(proc)
        assert code == 0, err
        assert out.splitlines()[-1] == "stopped"
        with ps.LocalDatabase(tmp_path / "data" / "todos.sqlite") as served:
            assert served.get(written["id"])["title"] == f"run {run}"
            assert served.info()["doc_count"] == run + 1
    assert not (EXAMPLES / "data").exists()


def test_flask_example_on_a_taken_port_is_one_line(tmp_path: Path) -> None:
    proc, base = start_flask_example(tmp_path)
    port = base.rstrip("/").rsplit(":", 1)[1]
    try:
        done = subprocess.run([sys.executable, str(EXAMPLES / "flask_app.py"), "--port", port],
                              cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=60)
    finally:
        code, _, err = stop(proc)
    assert code == 0, err
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"flask_app.py: error: cannot listen on 127.0.0.1:{port}: Address already in use"]
    bad = subprocess.run([sys.executable, str(EXAMPLES / "flask_app.py"), "--port", "x"],
                         cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [
        "flask_app.py: error: argument --port: invalid int value: 'x'"]


def test_sync_to_a_wrong_path_says_so_without_retrying(tmp_path: Path) -> None:
    """Issue 17 §3: the Flask example's endpoint is /sync; its root answers HTTP."""
    proc, base = start_flask_example(tmp_path)
    root = base.replace("http://", "ws://")
    try:
        done = subprocess.run([sys.executable, "-m", "pouchsync_sync", "sync", "todos.sqlite", root,
                               "--token", TOKEN, "--live"], cwd=tmp_path, env=env(),
                              capture_output=True, text=True, timeout=60)
    finally:
        code, _, err = stop(proc)
    assert code == 0, err
    assert done.returncode == 5, done.stderr
    [line] = done.stderr.splitlines()  # once: a wrong URL is not retried, even --live
    assert line.startswith(f"pouchsync: wrong URL: not a sync server at {root}: it answered "
                           f"HTTP ")
    assert "instead of a WebSocket upgrade; check the URL's path" in line and "/sync" in line
    assert "<" not in line and "Werkzeug" not in line and "gave up" not in line  # never the body
    assert not (tmp_path / "todos.sqlite").exists()  # the failed first sync leaves no file


# -- gunicorn.conf.py ----------------------------------------------------------------------
def test_gunicorn_threaded_workers_twice_in_one_folder(tmp_path: Path) -> None:
    # without POUCHSYNC_DATA: the data goes to ./data where gunicorn runs (never into the
    # checkout), and the second run finds the first one's documents there
    for run in (1, 2):
        gunicorn_once(tmp_path, run)


def gunicorn_once(tmp_path: Path, run: int) -> None:
    extra = {"POUCHSYNC_TOKENS": TOKEN, "BIND": "127.0.0.1:0", "WEB_CONCURRENCY": "2",
             "THREADS": "8"}
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(EXAMPLES / "gunicorn.conf.py")],
                            cwd=tmp_path, env=env(**extra), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    a_db = ps.LocalDatabase(":memory:", name="a")
    b_db = ps.LocalDatabase(":memory:", name="b")
    a, b = client(), client()
    try:
        port = wait_for_line(proc, proc.stderr, r"Listening at: http://127\.0\.0\.1:(\d+)").group(1)
        wait_for_line(proc, proc.stderr, r"Using worker: gthread")
        url = f"ws://127.0.0.1:{port}/sync"
        a.connect(url)
        b.connect(url)
        creds = {"token": TOKEN}
        live_a = a.sync(a_db, remote_name="todos", credentials=creds, live=True)
        live_b = b.sync(b_db, remote_name="todos", credentials=creds, live=True)
        for i in range(20):
            a_db.put({"_id": f"run{run}-a{i:02d}", "from": "a"})  # fresh ids each run
        b_db.put({"_id": f"run{run}-b00", "from": "b"})
        for sync in (live_a, live_b, live_a):
            sync.wait_in_sync(WAIT)
        assert a_db.info()["doc_count"] == b_db.info()["doc_count"] == 21 * run
        ids_a = [r["id"] for r in a_db.all_docs()["rows"]]
        assert ids_a == [r["id"] for r in b_db.all_docs()["rows"]]

        home = requests.get(f"http://127.0.0.1:{port}/", timeout=WAIT)  # ordinary routes too
        assert home.json()["service"] == "todos"

        # SIGTERM with both live syncs connected: the workers close their sockets and exit
        started = time.monotonic()
        code, _, err = stop(proc, timeout=WAIT)
        assert code == 0, err[-3000:]
        assert time.monotonic() - started < 10  # well before graceful_timeout + margin
        assert "Shutting down: Master" in err
        assert TOKEN not in err
    finally:
        a.close()
        b.close()
        a_db.close()
        b_db.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    with ps.LocalDatabase(tmp_path / "data" / "todos.sqlite") as served:
        assert served.info()["doc_count"] == 21 * run
    assert not (EXAMPLES / "data").exists()


# -- notebook.ipynb --------------------------------------------------------------------------
def test_notebook_runs_headless(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    # a kernel on this very interpreter, importing this work tree
    spec = tmp_path / "jupyter" / "kernels" / "pouchsync-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "pouchsync test", "language": "python",
        "env": {"PYTHONPATH": str(REPO)}}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    work = tmp_path / "work"
    work.mkdir()

    for _ in range(2):  # twice in the same folder: the same outputs
        check_notebook_run(nbformat, nbclient, work)
    assert list(work.glob("*.sqlite")) == []  # its stores are in memory


def check_notebook_run(nbformat: Any, nbclient: Any, work: Path) -> None:
    nb = nbformat.read(EXAMPLES / "notebook.ipynb", as_version=4)
    assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), \
        "commit the notebook without outputs"
    client = nbclient.NotebookClient(nb, kernel_name="pouchsync-test", timeout=120,
                                     resources={"metadata": {"path": str(work)}})
    client.execute()  # raises CellExecutionError on any error

    code = [cell for cell in nb.cells if cell.cell_type == "code"]

    def html(cell: Any) -> str:
        return "".join(o.get("data", {}).get("text/html", "") for o in cell.outputs)

    def text(cell: Any) -> str:
        return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream") + \
            "".join(o.get("data", {}).get("text/plain", "") for o in cell.outputs
                    if o.output_type == "execute_result")

    server_db, watch_cell, pull, db, live, live_in, push, done = (
        code[1], code[2], code[3], code[4], code[5], code[6], code[7], code[8])
    assert "<table>" in html(server_db) and "10,000" in html(server_db)
    # the progress display (updated in place) ends at the full count
    assert "<progress" in html(watch_cell) and "pulled 10,000" in html(watch_cell)
    assert "complete: pulled 10,000 documents" in text(watch_cell)
    pull_table = html(pull)
    assert "Sync photos" in pull_table and "<td style='text-align:left'>complete</td>" in pull_table
    assert "docs pulled" in pull_table and "10,000" in pull_table
    assert "LocalDatabase photos" in html(db) and "10,000" in html(db)
    assert "live, both" in html(live)
    assert "received live: ['new-0', 'new-1', 'new-2']" in text(live_in)
    assert "local copy: just taken 2" in text(live_in)
    assert "on the server: written in the notebook" in text(push)
    assert "cancelled" in text(done)
