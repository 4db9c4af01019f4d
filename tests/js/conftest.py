"""Fixtures of the JavaScript client's tests: a real SyncServer on 127.0.0.1 and node.

Each test runs node scripts (PouchDB 9, memory adapter, ``ws``, ``pouchsync.js``) from
``tests/jsdeps.py`` against a ``SyncServer`` whose databases are ``LocalDatabase``
files in the test's tmp folder (``JsServer``), or CouchDB-protocol databases.
Scripts ``require(process.env.PS_HARNESS)`` (``harness.js``) and get the server's URL
and token in ``SYNC_URL`` / ``SYNC_TOKEN``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from pouchsync_sync import Denied, Grant, LocalDatabase, create_server
from pouchsync_sync.store.base import Database
from tests.jsdeps import NodeRunner, js_modules, node  # noqa: F401  (fixtures)

HARNESS = Path(__file__).with_name("harness.js")
TOKEN = "js token"


class JsServer:
    """A SyncServer granting ``{"token": TOKEN}``: ``ro-*`` names read-only, others
    read-write (``_design/`` writes refused). ``calls`` counts the docs each database
    received through ``bulk_docs``/``write_missing`` per doc id (to see replays)."""

    def __init__(self, root: Path, make_db: Callable[[str], Database] | None = None,
                 **options: Any) -> None:
        self.root = root
        self._make_db = make_db
        self.dbs: dict[str, Database] = {}
        self.requests: list[tuple[Any, str]] = []
        self._lock = threading.Lock()
        self.options = options
        self.server = create_server(self.on_request, **options).start()
        self.port = int(self.server.url.rsplit(":", 1)[1].strip("/"))

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def db(self, name: str) -> Database:
        with self._lock:
            if name not in self.dbs:
                if self._make_db is not None:
                    self.dbs[name] = self._make_db(name)
                else:
                    self.dbs[name] = LocalDatabase(self.root / f"{name}.sqlite")
            return self.dbs[name]

    def on_request(self, credentials: Any, name: str) -> Any:
        self.requests.append((credentials, name))
        if not isinstance(credentials, dict) or credentials.get("token") != TOKEN:
            raise Denied("wrong or missing token")
        if name.startswith("unknown-"):
            raise Denied(f"no database named {name!r}")
        db = self.db(name)
        return Grant(db, read_only=name.startswith("ro-"))

    def restart(self) -> None:
        """Stop the server (sockets closed 1001) and start a new one on the same port."""
        self.server.stop()
        self.restart_stopped()

    def restart_stopped(self) -> None:
        """Start a new server on the same port (after ``server.stop()``)."""
        self.server = create_server(self.on_request, **self.options).start(port=self.port)

    def stop(self) -> None:
        self.server.stop()

    def close(self) -> None:
        self.server.stop()
        for db in self.dbs.values():
            db.close()


@pytest.fixture
def js_server(tmp_path: Path) -> Iterator[JsServer]:
    server = JsServer(tmp_path)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def run_js(node: NodeRunner, js_server: JsServer) -> Callable[..., list[dict]]:
    """``run_js(script, **env) -> [reported objects]``: run a script against js_server."""

    def run(script: str, timeout: float = 60.0, server: JsServer | None = None,
            **env: str) -> list[dict]:
        target = server or js_server
        full_env = {"PS_HARNESS": str(HARNESS), "SYNC_URL": target.url, "SYNC_TOKEN": TOKEN}
        full_env.update(env)
        proc = node.run(script, env=full_env, timeout=timeout)
        out = node.json_lines(proc.stdout)
        fatal = [o for o in out if "fatal" in o]
        assert not fatal, f"{fatal}\nstderr:\n{proc.stderr[-3000:]}"
        return out

    return run


class NodeProcess:
    """A node script running in the background; ``expect`` reads its JSON lines.

    A reader thread (``js-test-reader``) moves stdout lines to a queue; ``close()``
    kills the process if it is still running and joins the thread.
    """

    def __init__(self, proc: Any) -> None:
        import queue

        self.proc = proc
        self.lines: "queue.Queue[dict | None]" = queue.Queue()
        self.seen: list[dict] = []
        self._reader = threading.Thread(target=self._read, name="js-test-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        import json

        for line in self.proc.stdout:
            line = line.strip()
            if line.startswith("{"):
                self.lines.put(json.loads(line))
        self.lines.put(None)

    def expect(self, predicate: Callable[[dict], bool], timeout: float = 30.0) -> dict:
        """The next reported object that ``predicate`` accepts (others are kept in ``seen``)."""
        import queue
        import time

        deadline = time.monotonic() + timeout
        while True:
            try:
                item = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.proc.kill()
                raise AssertionError(f"node reported nothing matching within {timeout} s; "
                                     f"seen: {self.seen[-20:]}\nstderr: "
                                     f"{self.proc.stderr.read()[-3000:]}") from None
            if item is None:
                raise AssertionError(f"node exited ({self.proc.wait(5)}) first; seen: {self.seen[-20:]}"
                                     f"\nstderr: {self.proc.stderr.read()[-3000:]}")
            self.seen.append(item)
            assert "fatal" not in item, item
            if predicate(item):
                return item

    def send(self, obj: dict) -> None:
        import json

        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def wait(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def start_js(node: NodeRunner, js_server: JsServer) -> Iterator[Callable[..., NodeProcess]]:
    """``start_js(script, **env) -> NodeProcess`` in the background; killed at teardown."""
    started: list[NodeProcess] = []

    def start(script: str, server: JsServer | None = None, **env: str) -> NodeProcess:
        target = server or js_server
        full_env = {"PS_HARNESS": str(HARNESS), "SYNC_URL": target.url, "SYNC_TOKEN": TOKEN}
        full_env.update(env)
        proc = NodeProcess(node.popen(script, env=full_env))
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.close()


@pytest.fixture
def unused_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
