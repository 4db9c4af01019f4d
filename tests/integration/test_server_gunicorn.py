"""The sync server under gunicorn's threaded worker (the deployment docs/protocol.md shows)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Iterator

import pytest

from pouchsync_sync.protocol import messages as m
from tests.integration.test_server import TOKEN
from tests.rawpeer import RawPeer

pytest.importorskip("gunicorn")

APP = """
import pouchsync_sync as ps

db = ps.LocalDatabase(":memory:", name="todos")


def on_request(credentials, db_name):
    if credentials != {"token": "s3cret-token-value"}:
        raise ps.Denied("wrong token")
    return db


server = ps.create_server(on_request)
"""

# what docs/protocol.md recommends: close the sockets at once on SIGTERM instead of
# letting gunicorn wait graceful_timeout for them
CONFIG = """
import signal
import threading


def post_worker_init(worker):
    from app import server

    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):
        threading.Thread(target=server.stop, name="pouchsync-stop", daemon=True).start()
        previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    pause = threading.Event()
    waited = 0.0
    while waited < timeout:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "gunicorn exited"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            pause.wait(0.05)
            waited += 0.05
    raise AssertionError("gunicorn did not start")


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    (tmp_path / "app.py").write_text(textwrap.dedent(APP))
    (tmp_path / "gunicorn_conf.py").write_text(textwrap.dedent(CONFIG))
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-k", "gthread", "--threads", "8", "-w", "1",
         "-b", f"127.0.0.1:{port}", "--graceful-timeout", "10", "-c", "gunicorn_conf.py",
         "app:server"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True)
    try:
        _wait_listening(port, proc)
        yield f"ws://127.0.0.1:{port}/", proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        if proc.stderr:
            proc.stderr.close()


def test_serves_under_gunicorn_gthread_and_closes_sockets_on_sigterm(gunicorn) -> None:
    url, proc = gunicorn
    reader, writer = RawPeer(url, credentials=TOKEN), RawPeer(url, credentials=TOKEN)
    try:
        assert reader.open(1, "todos")["type"] == "granted"
        assert writer.open(1, "todos", {"token": "wrong"})["reason"] == "wrong token"
        assert writer.open(1, "todos")["type"] == "granted"
        since = reader.ok(1, "changes", {"since": "now"})["last_seq"]
        reader.send(m.subscribe(1, 1, since=since))
        writer.ok(1, "put", {"doc": {"_id": "via-gunicorn"}})
        pushed = reader.expect(type="changes", sub=1)
        assert pushed["results"][0]["id"] == "via-gunicorn"
        os.killpg(proc.pid, signal.SIGTERM)
        for client in (reader, writer):
            client.expect_close(timeout=5)  # well before graceful_timeout (10 s)
            assert client.close_code == 1001
        assert proc.wait(10) == 0
    finally:
        reader.close()
        writer.close()
