"""Issue 17, a user's bad day with the command line, from the user's side: real
``pouchsync`` processes against real servers on 127.0.0.1, every failure one line on
stderr with its documented exit status, ``--live`` riding out a server restart.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from pouchsync_sync import LocalDatabase
from tests.integration.test_cli import (TOKEN, Served, cli, env, free_port, read_line, start_serve,
                                        stop)


def test_live_sync_waits_out_a_server_restart_until_ctrl_c(tmp_path: Path) -> None:
    server = start_serve(tmp_path, "--token", TOKEN)
    url = server.url
    port = url.rstrip("/").rsplit(":", 1)[1]
    live = subprocess.Popen(
        [sys.executable, "-m", "pouchsync_sync", "sync", "live.sqlite", url, "--remote", "todos",
         "--token", TOKEN, "--live"],
        cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    restarted: Served | None = None
    seen: list[str] = []
    try:
        seen.append(read_line(live))  # the first progress line: connected, in sync
        code, _, err = server.stop()
        assert code == 0, err
        # offline: a line per attempt, with the wait before the next one; well past the
        # one-shot default of 5 attempts, and the process keeps going
        offline = 0
        while offline < 8:
            line = read_line(live)
            seen.append(line)
            if "offline, next attempt in " in line:
                offline += 1
        assert live.poll() is None
        restarted = Served(*_serve_on(tmp_path, port))
        written = cli("put", str(tmp_path / "other.sqlite"), '{"_id": "after-restart"}',
                      cwd=tmp_path)
        assert written.returncode == 0, written.stderr
        assert cli("sync", "other.sqlite", url, "--remote", "todos", "--token", TOKEN,
                   cwd=tmp_path).returncode == 0
        # the live sync is back and brings the change into its store (the store is the
        # truth: its progress count may lag, see the report of branch secondrun)
        deadline = time.monotonic() + 60
        with LocalDatabase(tmp_path / "live.sqlite") as db:
            since: object = 0
            while not any(r["id"] == "after-restart" for r in db.changes(since=0)["results"]):
                assert time.monotonic() < deadline, "".join(seen[-15:])
                since = db.changes(since=since, feed="longpoll", timeout=2.0)["last_seq"]
    finally:
        code, out, err = stop(live, signal.SIGINT)
        if restarted is not None:
            restarted.stop()
    assert code == 0, err
    assert err == ""
    lines = seen + out.splitlines()
    assert re.match(r"stopped: pulled [01], pushed 0 in ", lines[-1]), lines[-1]
    offline_lines = [line.rstrip() for line in lines if "offline" in line]
    assert all(re.search(r"  offline, (next attempt in \d+\.\ds|connecting)$", line)
               for line in offline_lines), offline_lines


def _serve_on(tmp_path: Path, port: str) -> tuple[subprocess.Popen, str, Path, str]:
    """``pouchsync serve`` again on ``port`` over the same data directory."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pouchsync_sync", "serve", "--port", port, "--data-dir",
         str(tmp_path / "data"), "--token", TOKEN],
        cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = read_line(proc)
    assert "serving" in line, line
    return proc, f"ws://127.0.0.1:{port}/", tmp_path / "data", line


def test_live_with_retries_still_gives_up(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    done = cli("sync", "t.sqlite", f"ws://127.0.0.1:{port}/", "--live", "--retries", "1",
               cwd=tmp_path)
    assert done.returncode == 4
    assert done.stderr.splitlines() == [
        f"pouchsync: unreachable: gave up connecting after 1 attempt: ws://127.0.0.1:{port}/ "
        f"refused the connection (is the server running?)"]
    assert not (tmp_path / "t.sqlite").exists()  # the failed first sync leaves no file


def test_verbose_shows_the_traceback_then_the_line(tmp_path: Path) -> None:
    port = free_port()
    for flags in (["-v", "sync"], ["sync", "-v"]):
        done = cli(*flags, "t.sqlite", f"ws://127.0.0.1:{port}/", "--retries", "1", cwd=tmp_path)
        assert done.returncode == 4
        assert "Traceback (most recent call last)" in done.stderr
        assert "pouchsync_sync.errors.Unreachable" in done.stderr
        assert done.stderr.splitlines()[-1].startswith("pouchsync: unreachable: ")


def test_wss_to_a_plain_port_is_a_tls_error(tmp_path: Path) -> None:
    server = start_serve(tmp_path, "--token", TOKEN)
    try:
        wss = server.url.replace("ws://", "wss://")
        started = time.monotonic()
        done = cli("sync", "t.sqlite", wss, "--token", TOKEN, "--live", cwd=tmp_path)
    finally:
        server.stop()
    assert done.returncode == 5
    [line] = done.stderr.splitlines()
    assert line.startswith(f"pouchsync: TLS/proxy: TLS handshake with {wss} failed")
    assert line.endswith("is it wss:// to a plain ws:// port?")
    assert time.monotonic() - started < 30  # not retried, even --live


def test_serve_on_a_taken_port_is_one_line(tmp_path: Path) -> None:
    server = start_serve(tmp_path, "--token", TOKEN)
    port = server.url.rstrip("/").rsplit(":", 1)[1]
    try:
        done = cli("serve", "--port", port, "--data-dir", "other", "--token", TOKEN, cwd=tmp_path)
    finally:
        server.stop()
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"pouchsync: error: cannot listen on 127.0.0.1:{port}: Address already in use "
        f"(another program, or another server, is listening there)"]


def test_put_on_a_conflict_suggests_update(tmp_path: Path) -> None:
    assert cli("put", "t.sqlite", '{"_id": "k"}', cwd=tmp_path).returncode == 0
    done = cli("put", "t.sqlite", '{"_id": "k", "v": 2}', cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "pouchsync: error: 409 conflict: Document update conflict: 'k' exists; give its "
        "current _rev, or --update to write over it"]


def test_a_file_name_that_is_no_database_name_needs_remote(tmp_path: Path) -> None:
    done = cli("sync", "My-Todos.sqlite", "ws://127.0.0.1:1/", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "pouchsync: error: the file name 'My-Todos' is not a database name a server accepts "
        "(a-z, 0-9 and _$()+-, starting with a letter): give one with --remote, e.g. "
        "--remote my-todos"]
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_my_todos_syncs_with_remote(tmp_path: Path) -> None:
    server = start_serve(tmp_path, "--token", TOKEN)
    try:
        assert cli("put", "My-Todos.sqlite", '{"_id": "milk"}', cwd=tmp_path).returncode == 0
        done = cli("sync", "My-Todos.sqlite", server.url, "--remote", "my-todos", "--token", TOKEN,
                   cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    finally:
        server.stop()
    with LocalDatabase(tmp_path / "data" / "my-todos.sqlite") as db:
        assert db.get("milk")["_id"] == "milk"
    assert json.loads(cli("get", "My-Todos.sqlite", "milk", cwd=tmp_path).stdout)["_id"] == "milk"


# -- the progress line, pure ----------------------------------------------------------------
class _Status:
    def __init__(self, state: str, pulled: int) -> None:
        self.state, self.docs_pulled, self.docs_pushed, self.pending = state, pulled, 0, None


class _Client:
    retry_in: float | None = None


class _Sync:
    """What a Meter reads of a Sync: its status and its client's retry_in."""

    def __init__(self) -> None:
        self.status = _Status("active", 0)
        self.client = _Client()


def test_an_idle_live_sync_keeps_its_rate_and_offline_shows_the_wait() -> None:
    from pouchsync_sync.display import Meter, progress_line

    now = [100.0]
    sync = _Sync()
    meter = Meter(sync, clock=lambda: now[0])
    now[0] += 2.0
    sync.status = _Status("active", 1000)
    assert "500 docs/s" in progress_line(meter.snapshot())
    now[0] += 60.0  # a minute paused: the rate of the last burst, not a falling average
    sync.status = _Status("paused", 1000)
    assert progress_line(meter.snapshot()).endswith("500 docs/s  paused")
    sync.status = _Status("offline", 1000)
    sync.client.retry_in = 1.64
    assert progress_line(meter.snapshot()).endswith("offline, next attempt in 1.6s")
    sync.status = _Status("connecting", 1000)
    assert progress_line(meter.snapshot()).endswith("offline, next attempt in 1.6s")
    sync.client.retry_in = None  # attempting now
    assert progress_line(meter.snapshot()).endswith("pushed 0  500 docs/s  connecting")
    sync.status = _Status("offline", 1000)
    assert progress_line(meter.snapshot()).endswith("offline, connecting")


def test_argument_errors_are_one_line_too(tmp_path: Path) -> None:
    for args, line in [
        (["sync", "x.sqlite"], "pouchsync: error: the following arguments are required: WS_URL "
                               "(see: pouchsync sync --help)"),
        (["sync", "x.sqlite", "ws://127.0.0.1:1/", "--retries", "x"],
         "pouchsync: error: argument --retries: invalid int value: 'x' "
         "(see: pouchsync sync --help)"),
    ]:
        done = cli(*args, cwd=tmp_path)
        assert done.returncode == 2 and done.stderr.splitlines() == [line], done.stderr
    done = cli("frobnicate", cwd=tmp_path)  # how argparse lists the choices varies by version
    [line] = done.stderr.splitlines()
    assert done.returncode == 2
    assert line.startswith("pouchsync: error: argument COMMAND: invalid choice: 'frobnicate'")
    assert line.endswith("(see: pouchsync --help)") and "demo" in line
    assert list(tmp_path.iterdir()) == []


def test_describe_gives_every_failure_one_line_and_a_status() -> None:
    import pouchsync_sync as ps
    from pouchsync_sync.cli import describe

    assert describe(FileNotFoundError(2, "No such file or directory", "x.txt")) == (
        "error: No such file or directory: 'x.txt'", 1)
    assert describe(ps.ListenError("cannot listen on h:1: taken")) == (
        "error: cannot listen on h:1: taken", 1)
    assert describe(ps.Conflict()) == ("error: 409 conflict: Document update conflict", 1)
    assert describe(ps.Denied("no")) == ("denied: no", 3)
    assert describe(ps.Timeout("slow")) == ("unreachable: slow", 4)
    assert describe(ps.ProtocolError("bad")) == ("error: ProtocolError: bad", 1)
    assert describe(KeyboardInterrupt()) == ("interrupted", 130)
    line, status = describe(ValueError("boom\nsecond line"))  # a bug: one line, and how to report
    assert status == 1 and "\n" not in line
    assert line == ("internal error: ValueError: boom (a bug: please report it with the "
                    "traceback that -v prints)")
