"""The ``pouchsync`` command line, run as real processes (``python -m pouchsync_sync``)
against a real ``pouchsync serve`` process on 127.0.0.1, with timeouts on everything.

Also the pure pieces of the commands (token policy, loopback guard, names, progress text).
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from pouchsync_sync import Client, Denied, LocalDatabase
from pouchsync_sync.cli import main
from pouchsync_sync.commands.serve import DEFAULT_DATA_DIR, TokenPolicy, start_refusal
from pouchsync_sync.datadir import DataDir, check_name
from pouchsync_sync.display import Snapshot, progress_line
from pouchsync_sync.errors import BadRequest

REPO = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-cli-token"
BAD_TOKEN = "wrong-token-value"
RUN_TIMEOUT = 60


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("COUCHDB_URL", None)
    return e


def cli(*args: str, cwd: Path, timeout: float = RUN_TIMEOUT, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pouchsync_sync", *args], cwd=cwd, env=env(),
                          capture_output=True, text=True, timeout=timeout, **kw)


def read_line(proc: subprocess.Popen, timeout: float = 30.0) -> str:
    """The next line of ``proc``'s stdout, waiting at most ``timeout`` seconds."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        if not sel.select(timeout):
            raise AssertionError(f"no output within {timeout}s")
        return proc.stdout.readline()
    finally:
        sel.close()


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30.0) -> tuple[int, str, str]:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        raise AssertionError(f"process did not stop on {sig}: {err[-2000:]}")
    return proc.returncode, out, err


class Served:
    def __init__(self, proc: subprocess.Popen, url: str, data: Path, banner: str) -> None:
        self.proc, self.url, self.data, self.banner = proc, url, data, banner

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str, str]:
        return stop(self.proc, sig)


def serve_process(tmp: Path, *args: str) -> tuple[subprocess.Popen, str, str]:
    """Start ``pouchsync serve --port 0 ARGS``; ``(process, ws url, banner line)``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pouchsync_sync", "serve", "--port", "0", *args],
        cwd=tmp, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = read_line(proc)
    except BaseException:
        proc.kill()
        proc.communicate(timeout=10)
        raise
    assert "serving" in line, line
    return proc, next(word for word in line.split() if word.startswith("ws://")), line


def start_serve(tmp: Path, *extra: str) -> Served:
    data = tmp / "data"
    proc, url, line = serve_process(tmp, "--data-dir", str(data), *extra)
    return Served(proc, url, data, line)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = start_serve(tmp_path, "--token", TOKEN)
    yield s
    if s.proc.poll() is None:
        s.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _without_werkzeug_400(err: str) -> str:
    """``err`` without werkzeug's log of a late WebSocket close frame read as an HTTP
    request (a known server bug: werkzeug keeps the connection after the WebSocket
    session and sometimes parses the client's close frame, ``\\x88\\x82…``, as a request)."""
    return "".join(line for line in err.splitlines(keepends=True)
                   if not re.search(r'code 400, message Bad (request syntax|HTTP/0\.9 request type)'
                                    r'|"None / HTTP/0\.9" 400', line))


# -- demo -------------------------------------------------------------------------------------
def test_demo_converges_and_resolves_a_conflict(tmp_path: Path) -> None:
    started = time.monotonic()
    done = cli("demo", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "same revisions: yes" in out
    assert "on alice and bob: yes" in out and "_conflicts" in out
    assert "no conflicts on either side: yes" in out
    assert "bob had alice's new todo" in out
    assert "done in" in out and "FAILED" not in out and "NO" not in out.split()
    assert _without_werkzeug_400(done.stderr) == ""
    assert len(out.splitlines()) < 40  # short and readable
    assert time.monotonic() - started < RUN_TIMEOUT
    assert list(tmp_path.iterdir()) == []  # nothing left behind


# -- serve + sync ----------------------------------------------------------------------------
def test_put_sync_get_through_serve(served: Served, tmp_path: Path) -> None:
    put = cli("put", "todos.sqlite", '{"_id": "milk", "title": "Buy milk"}', cwd=tmp_path)
    assert put.returncode == 0, put.stderr
    assert json.loads(put.stdout)["id"] == "milk"

    pushed = cli("sync", "todos.sqlite", served.url, "--token", TOKEN, cwd=tmp_path)
    assert pushed.returncode == 0, pushed.stderr
    assert "complete: pulled 0, pushed 1" in pushed.stdout
    assert "\r" not in pushed.stdout  # not a terminal: plain lines

    pulled = cli("sync", "phone.sqlite", served.url, "--remote", "todos", "--token", TOKEN,
                 "--pull", cwd=tmp_path)
    assert pulled.returncode == 0, pulled.stderr
    assert "complete: pulled 1, pushed 0" in pulled.stdout

    got = cli("get", "phone.sqlite", "milk", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["title"] == "Buy milk"
    assert (served.data / "todos.sqlite").exists()

    info = cli("info", str(served.data / "todos.sqlite"), cwd=tmp_path)
    assert info.returncode == 0
    assert json.loads(info.stdout)["doc_count"] == 1

    code, out, err = served.stop(signal.SIGINT)
    assert code == 0, err
    assert out.strip().endswith("pouchsync: stopped")
    assert "granted 'todos'" in err and "connected" in err
    assert TOKEN not in err and TOKEN not in out


def test_push_only_and_credentials_json(served: Served, tmp_path: Path) -> None:
    cli("put", "notes.sqlite", '{"_id": "n1"}', cwd=tmp_path)
    done = cli("sync", "notes.sqlite", served.url, "--push",
               "--credentials", json.dumps({"token": TOKEN}), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "pushed 1" in done.stdout
    with LocalDatabase(served.data / "notes.sqlite") as db:
        assert db.get("n1")["_id"] == "n1"


def test_denials_exit_3_with_one_line_and_are_logged_without_credentials(
        served: Served, tmp_path: Path) -> None:
    wrong = cli("sync", "todos.sqlite", served.url, "--token", BAD_TOKEN, cwd=tmp_path)
    assert wrong.returncode == 3
    assert wrong.stderr.strip() == "pouchsync: denied: invalid token"
    missing = cli("sync", "todos.sqlite", served.url, cwd=tmp_path)
    assert missing.returncode == 3
    assert missing.stderr.strip() == "pouchsync: denied: a token is required"
    code, _, err = served.stop()
    assert code == 0
    assert "denied 'todos': invalid token" in err
    assert BAD_TOKEN not in err and TOKEN not in err


NAMES = ["../evil", "..", "a/../../x", "Upper", "_users", "a b", "x" * 300, "-x", "a\nb",
         "/etc/passwd", "todos/../../x"]


def test_names_that_could_escape_the_data_dir_are_denied(served: Served, tmp_path: Path) -> None:
    done = cli("sync", "local.sqlite", served.url, "--remote=../evil", "--token", TOKEN, cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith("pouchsync: denied: invalid database name '../evil'")
    assert len(done.stderr.strip().splitlines()) == 1
    with Client(max_attempts=2, initial_delay=0.05) as client:  # the rest in one process
        client.connect(served.url)
        for name in NAMES:
            with pytest.raises(Denied, match="invalid database name"):
                client.database(name, credentials={"token": TOKEN}, timeout=10)
    assert not served.data.exists() or list(served.data.iterdir()) == []
    assert {p.name for p in tmp_path.iterdir()} <= {"data", "local.sqlite", "local.sqlite-wal",
                                                    "local.sqlite-shm"}


def test_tokens_file(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("# one token a line\n\nfirst-token\n  second-token  \n")
    s = start_serve(tmp_path, "--tokens", str(tokens))
    try:
        ok = cli("sync", "t.sqlite", s.url, "--token", "second-token", cwd=tmp_path)
        assert ok.returncode == 0, ok.stderr
        bad = cli("sync", "t.sqlite", s.url, "--token", "# one token a line", cwd=tmp_path)
        assert bad.returncode == 3
    finally:
        code, _, err = s.stop()
    assert code == 0
    assert "second-token" not in err


def test_unreachable_server_fails_after_bounded_retries(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    started = time.monotonic()
    done = cli("sync", "t.sqlite", f"ws://127.0.0.1:{port}/", "--retries", "2", cwd=tmp_path)
    assert done.returncode == 4
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pouchsync: unreachable:")
    assert "after 2 attempts" in lines[0]
    assert time.monotonic() - started < 30


BAD_ARGS = [
    (["sync", "t.sqlite", "ws://127.0.0.1:1/", "--credentials", "{nope"], "--credentials is not valid JSON"),
    (["sync", "t.sqlite", "ws://127.0.0.1:1/", "--retries", "0"], "--retries"),
    (["sync", "t.sqlite", "ws://127.0.0.1:1/", "--push", "--pull"], "not allowed with"),
    (["serve", "--data-dir", "d", "--couchdb", "http://127.0.0.1:1/"], "not allowed with"),
    (["serve", "--port", "70000"], "--port"),
    (["put", "t.sqlite", "[1, 2]"], "must be a JSON object"),
    (["frobnicate"], "invalid choice"),
]


def test_bad_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    done = cli("sync", "t.sqlite", "http://127.0.0.1:1/", cwd=tmp_path)  # one as a process
    assert done.returncode == 2
    assert done.stderr.strip() == "pouchsync: error: WS_URL must start with ws:// or wss://, not 'http://127.0.0.1:1/'"
    monkeypatch.chdir(tmp_path)  # the rest through main() in this process: same code, faster
    for args, message in BAD_ARGS:
        try:
            code = main(args)
        except SystemExit as exc:  # argparse's own errors
            code = exc.code
        err = capsys.readouterr().err
        assert code == 2, (args, err)
        assert message in err, (args, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_serve_refuses_a_public_address_without_tokens(tmp_path: Path) -> None:
    # refused before binding anything
    done = cli("serve", "--host", "0.0.0.0", "--port", "0", "--data-dir", "d", cwd=tmp_path, timeout=30)
    assert done.returncode == 2
    assert "refusing to serve '0.0.0.0' without authentication" in done.stderr
    assert not (tmp_path / "d").exists()


def test_anonymous_on_loopback_and_sigterm_stop(tmp_path: Path) -> None:
    s = start_serve(tmp_path)
    try:
        assert cli("put", "a.sqlite", '{"_id": "x"}', cwd=tmp_path).returncode == 0
        done = cli("sync", "a.sqlite", s.url, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    finally:
        code, out, err = s.stop(signal.SIGTERM)
    assert code == 0, err
    assert "anonymous access" in s.banner
    assert "stop signal received" in err


def test_live_sync_follows_the_server_until_sigint(served: Served, tmp_path: Path) -> None:
    live = subprocess.Popen(
        [sys.executable, "-m", "pouchsync_sync", "sync", "live.sqlite", served.url, "--remote", "todos",
         "--token", TOKEN, "--live"],
        cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert cli("put", "other.sqlite", '{"_id": "from-other", "n": 1}', cwd=tmp_path).returncode == 0
        assert cli("sync", "other.sqlite", served.url, "--remote", "todos", "--token", TOKEN,
                   cwd=tmp_path).returncode == 0
        # the live process writes the document into live.sqlite: watch the file's changes
        deadline = time.monotonic() + 30
        with LocalDatabase(tmp_path / "live.sqlite") as db:
            since = 0
            while not any(r["id"] == "from-other" for r in db.changes(since=0)["results"]):
                assert time.monotonic() < deadline, "the live sync did not pull the change"
                since = db.changes(since=since, feed="longpoll", timeout=2.0)["last_seq"]
            assert db.get("from-other")["n"] == 1
    finally:
        code, out, err = stop(live, signal.SIGINT)
    assert code == 0, err
    assert "stopped: pulled 1" in out
    assert "pulled 1" in out.splitlines()[0] or any("pulled 1" in line for line in out.splitlines())


def test_progress_bar_on_a_terminal(served: Served, tmp_path: Path) -> None:
    with LocalDatabase(tmp_path / "big.sqlite") as db:
        db.bulk_docs([{"_id": f"doc-{i:05d}", "n": i} for i in range(3000)])
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pouchsync_sync", "sync", "big.sqlite", served.url, "--token", TOKEN,
             "--interval", "0.01"],
            cwd=tmp_path, env=env(), stdout=slave, stderr=subprocess.PIPE, text=True)
        os.close(slave)
        slave = -1
        chunks = []
        deadline = time.monotonic() + RUN_TIMEOUT
        while time.monotonic() < deadline:
            sel = selectors.DefaultSelector()
            sel.register(master, selectors.EVENT_READ)
            ready = sel.select(1.0)
            sel.close()
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    text = b"".join(chunks).decode()
    assert "\r" in text  # redrawn in place
    assert "docs/s" in text
    assert "pending" in text and "%" in text  # a bar, once the source says what is left
    assert "complete: pulled 0, pushed 3,000" in text


@pytest.mark.couch
def test_serve_on_couchdb_and_info_on_a_url(couch_url: str, tmp_path: Path) -> None:
    from tests.couchserver import couch_db_name

    name = couch_db_name("cli-serve")
    proc, url, line = serve_process(tmp_path, "--couchdb", couch_url, "--token", TOKEN)
    try:
        assert "serving CouchDB" in line, line
        cli("put", "c.sqlite", '{"_id": "on-couch", "v": 2}', cwd=tmp_path)
        done = cli("sync", "c.sqlite", url, "--remote", name, "--token", TOKEN, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        got = cli("get", f"{couch_url}/{name}", "on-couch", cwd=tmp_path)
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout)["v"] == 2
        info = cli("info", f"{couch_url}/{name}", cwd=tmp_path)
        assert json.loads(info.stdout)["doc_count"] == 1
        missing = cli("info", f"{couch_url}/{name}-does-not-exist", cwd=tmp_path)
        assert missing.returncode == 1 and "not_found" in missing.stderr
    finally:
        code, _, err = stop(proc)
        from pouchsync_sync import CouchDB
        with CouchDB(couch_url) as couch:
            try:
                couch.delete_database(name)
            except Exception:
                pass
    assert code == 0, err
    assert not (tmp_path / DEFAULT_DATA_DIR).exists()  # --couchdb never makes the default data dir


def test_info_and_get_never_create_and_report_not_found(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    missing = cli("info", "nothere.sqlite", cwd=tmp_path)  # one as a process, the rest via main()
    assert missing.returncode == 1
    assert missing.stderr.startswith("pouchsync: error:") and "nothere.sqlite" in missing.stderr
    assert not (tmp_path / "nothere.sqlite").exists()
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    assert run("put", "t.sqlite", '{"title": "no id"}')[0] == 0
    assert json.loads(run("info", "t.sqlite")[1])["doc_count"] == 1
    code, _, err = run("get", "t.sqlite", "absent")
    assert code == 1 and "not_found" in err
    assert run("put", "t.sqlite", '{"_id": "k", "v": 1}')[0] == 0
    code, _, err = run("put", "t.sqlite", '{"_id": "k", "v": 2}')
    assert code == 1 and "conflict" in err and len(err.splitlines()) == 1
    assert run("put", "t.sqlite", '{"_id": "k", "v": 3}', "--update")[0] == 0
    code, out, _ = run("get", "t.sqlite", "k")
    assert code == 0 and json.loads(out)["v"] == 3
    code, _, err = run("info", "ftp://x/y")
    assert code == 2 and "unsupported URL" in err


def console_script() -> str | None:
    """The installed ``pouchsync`` script: on PATH, else where pip puts scripts for this
    interpreter (a virtualenv not activated, ``pip install --user``); ``None`` if absent."""
    import sysconfig

    found = shutil.which("pouchsync")
    if found:
        return found
    schemes = [None] + [f"{os.name}_user"]
    for scheme in schemes:
        try:
            folder = (sysconfig.get_path("scripts", scheme) if scheme
                      else sysconfig.get_path("scripts"))
        except KeyError:
            continue
        found = shutil.which("pouchsync", path=folder)
        if found:
            return found
    return shutil.which("pouchsync", path=str(Path(sys.executable).parent))


def test_console_script(tmp_path: Path) -> None:
    # the entry point setup.cfg declares (pouchsync_sync.cli:main), on this work tree's code
    from importlib import metadata

    script = console_script()
    if script is None:
        try:
            metadata.distribution("pouchsync_sync")
        except metadata.PackageNotFoundError:
            pytest.skip("package not installed (pip install -e .)")
        pytest.skip("pouchsync_sync is installed but its `pouchsync` script is neither on PATH "
                    "nor in this interpreter's scripts folder: reinstall it (pip install -e .)")
    done = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60,
                          env=env(), cwd=tmp_path)
    assert done.returncode == 0
    for command in ("serve", "sync", "info", "put", "get", "demo"):
        assert command in done.stdout


# -- pure pieces ---------------------------------------------------------------------------
def test_token_policy() -> None:
    anyone = TokenPolicy(None)
    assert anyone.anonymous and anyone.refusal(None) is None
    policy = TokenPolicy(["a1", "b2"])
    assert policy.refusal({"token": "b2"}) is None
    assert policy.refusal({"token": "b3"}) == "invalid token"
    assert policy.refusal({"token": ""}) == "a token is required"
    assert policy.refusal(None) == "a token is required"
    assert policy.refusal("b2") == "a token is required"
    assert policy.refusal({"token": 12}) == "a token is required"


def test_start_refusal() -> None:
    no_tokens, tokens = TokenPolicy(None), TokenPolicy(["t"])
    assert start_refusal("127.0.0.1", no_tokens, False) is None
    assert start_refusal("::1", no_tokens, False) is None
    assert start_refusal("localhost", no_tokens, False) is None
    assert start_refusal("0.0.0.0", no_tokens, False) is not None
    assert start_refusal("10.1.2.3", no_tokens, False) is not None
    assert start_refusal("0.0.0.0", no_tokens, True) is None
    assert start_refusal("0.0.0.0", tokens, False) is None


def test_names(tmp_path: Path) -> None:
    for good in ("todos", "a", "a-b_c$(d)+e", "x" * 238, "db1"):
        assert check_name(good) == good
    for bad in ("", "A", "1db", "_users", "a/b", "..", "a.b", "x" * 239, "a\nb", None, 3, "todos\n"):
        with pytest.raises(BadRequest):
            check_name(bad)
    with DataDir(tmp_path / "d") as d:
        assert d.path("todos") == (tmp_path / "d" / "todos.sqlite").resolve()
        db = d.database("todos")
        assert d.database("todos") is db and db.name == "todos"
        assert d.names() == ["todos"]


def test_progress_line() -> None:
    snap = Snapshot(state="active", pulled=1500, pushed=500, elapsed=2.0, pending=2000)
    assert snap.rate == 1000 and snap.fraction == 0.5
    line = progress_line(snap, bar_width=10)
    assert line.startswith("[#####-----]  50%")
    assert "pulled 1,500" in line and "pushed 500" in line and "1,000 docs/s" in line
    assert "pending 2,000" in line and line.endswith("active")
    unknown = progress_line(Snapshot("paused", 0, 0, 0.0), bar_width=10)
    assert "[" not in unknown and "pending" not in unknown and "0 docs/s" in unknown


# -- display (used by sync's progress and by notebooks) ---------------------------------------
def test_html_tables_escape_and_show_state(tmp_path: Path) -> None:
    import io

    import pouchsync_sync as ps
    from pouchsync_sync.display import watch

    served = LocalDatabase(":memory:", name="<b>srv</b>")
    served.bulk_docs([{"_id": f"d{i:04d}"} for i in range(1200)])
    html = served._repr_html_()
    assert "&lt;b&gt;srv&lt;/b&gt;" in html and "<b>srv</b>" not in html
    assert "1,200" in html and "d0000, d0001" in html
    server = ps.create_server(lambda credentials, name: served).start(port=0)
    local = LocalDatabase(tmp_path / "w.sqlite")
    try:
        with Client(max_attempts=2, initial_delay=0.05) as client:
            client.connect(server.url)
            sync = client.sync(local, remote_name="x", direction="pull", batch_size=100)
            out = io.StringIO()
            result = watch(sync, interval=0.01, out=out)  # no IPython kernel: text lines
            assert result.docs_pulled == 1200
            lines = out.getvalue().splitlines()
            assert lines and lines[-1].startswith("[") is False and "pulled 1,200" in lines[-1]
            assert lines[-1].endswith("complete")
            table = sync._repr_html_()
            assert "<td style='text-align:left'>complete</td>" in table
            assert "1,200" in table and "one-shot, pull" in table and server.url in table
    finally:
        server.stop()
        local.close()
        served.close()
    closed = local._repr_html_()  # a closed database still displays
    assert "error" in closed and "closed" in closed
