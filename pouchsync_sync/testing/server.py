"""A sync server for tests: ``RunningServer`` and the ``running_server`` context manager.

A real ``SyncServer`` on 127.0.0.1 and a free port, its databases in a ``DataDir`` (one
SQLite file per name) or on a CouchDB server (``backend=<url>``, each name prefixed so
tests sharing one CouchDB never meet). By default it grants any valid database name to
a client that sends its ``credentials`` (a token made for this server) and denies every
other client; assign ``on_request`` to try your own grant logic (it takes effect on the
next database request, no restart needed). ``stop()``, ``start()`` and ``restart()``
keep the URL (same port) and the data, for reconnection tests. ``close()`` stops it,
closes its databases and removes what it made. Thread-safe.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import itertools
import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

from ..datadir import CouchDir, DataDir
from ..errors import BadRequest, Denied, PouchSyncError
from ..server import SyncServer, create_server
from ..server.options import ServerOptions
from ..store.base import Database

__all__ = ["RunningServer", "running_server"]

log = logging.getLogger(__name__)

OnRequest = Callable[[Any, str], Any]
_PORT_WAIT = 10.0  # seconds a restart may wait for its old port to be free again
_names = itertools.count(1)


class _CouchNames(CouchDir):
    """The test's databases on one CouchDB server: ``name`` is ``<prefix><name>`` there;
    every database made is deleted at ``close()``."""

    def __init__(self, url: str) -> None:
        super().__init__(url, prefix=f"pouchsync-test-{os.getpid()}-{next(_names)}-"
                                     f"{secrets.token_hex(3)}-")

    def close(self) -> None:
        for name in self.opened():
            try:
                self.couch.delete_database(self.prefix + name)
            except PouchSyncError as exc:  # the test's CouchDB may be gone: log, go on
                log.warning("could not delete test database %r: %s", self.prefix + name, exc)
        super().close()


class RunningServer:
    """A started sync server for one test (see the module docstring).

    ``url`` (``ws://127.0.0.1:<port>/``), ``credentials`` (``{"token": ...}``),
    ``database(name)`` (the server-side store, to seed or inspect), ``on_request``
    (replaceable), ``stop()``, ``start()``, ``restart()``, ``close()``.
    """

    def __init__(self, on_request: OnRequest | None = None,
                 data_dir: str | os.PathLike[str] | None = None, *,
                 backend: str | None = None, **server_options: Any) -> None:
        if on_request is not None and not callable(on_request):
            raise TypeError(f"on_request must be callable, not {type(on_request).__name__}")
        if backend is not None and not (isinstance(backend, str)
                                        and backend.startswith(("http://", "https://"))):
            raise ValueError(f"backend must be None (embedded store) or a CouchDB URL, "
                             f"not {backend!r}")
        ServerOptions.from_kwargs(server_options)  # bad options fail here, before any I/O
        self.server_options = dict(server_options)
        self.credentials: dict[str, str] = {"token": secrets.token_urlsafe(16)}
        self.on_request: OnRequest = on_request or self.grant_token
        self._lock = threading.Lock()        # guards the fields below, held briefly
        self._lifecycle = threading.Lock()   # one start/stop/close at a time
        self._server: SyncServer | None = None
        self._port = 0
        self._closed = False
        self._made_dir: Path | None = None
        self.data_dir: Path | None = None
        if backend is not None:
            self._databases: Any = _CouchNames(backend)
        else:
            if data_dir is None:
                data_dir = self._made_dir = Path(tempfile.mkdtemp(prefix="pouchsync-test-"))
            self.data_dir = Path(data_dir)
            self._databases = DataDir(self.data_dir)
        self.backend = backend

    # -- what a test uses ---------------------------------------------------------------
    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>/``, the same across ``restart()``."""
        if not self._port:
            raise PouchSyncError("the server has not been started")
        return f"ws://127.0.0.1:{self._port}/"

    @property
    def port(self) -> int:
        return self._port

    @property
    def running(self) -> bool:
        with self._lock:
            return self._server is not None

    def database(self, name: str) -> Database:
        """The server-side database ``name`` (created on first use), to seed or inspect."""
        if self._closed:
            raise PouchSyncError("the test server is closed")
        return self._databases.database(name)

    def grant_token(self, credentials: Any, db_name: str) -> Database:
        """The default ``on_request``: grant ``db_name`` to this server's credentials."""
        token = credentials.get("token") if isinstance(credentials, dict) else None
        if not (isinstance(token, str) and hmac.compare_digest(
                token.encode(), self.credentials["token"].encode())):
            raise Denied("a valid test token is required")
        try:
            return self.database(db_name)
        except BadRequest as exc:
            raise Denied(exc.reason) from exc

    def stats(self) -> dict[str, int]:
        """The running server's ``stats()`` (connections, channels, ...)."""
        with self._lock:
            server = self._server
        if server is None:
            raise PouchSyncError("the server is stopped")
        return server.stats()

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> RunningServer:
        """Start serving (on the same port as before, if it ran already)."""
        with self._lifecycle:
            with self._lock:
                if self._closed:
                    raise PouchSyncError("the test server is closed")
                if self._server is not None:
                    raise PouchSyncError("the test server is already running")
            server = self._listen()
            with self._lock:
                self._server = server
                assert server.url is not None  # set by start()
                self._port = int(server.url.rstrip("/").rsplit(":", 1)[1])
        return self

    def _listen(self) -> SyncServer:
        deadline = time.monotonic() + _PORT_WAIT
        pause = threading.Event()  # never set: a bounded pause between tries
        while True:
            server = create_server(self._dispatch, **self.server_options)
            try:
                return server.start("127.0.0.1", self._port)
            except OSError as exc:
                server.stop()
                if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    raise PouchSyncError(f"cannot listen on 127.0.0.1:{self._port}: {exc}") from exc
                pause.wait(0.05)

    def stop(self) -> None:
        """Stop serving (clients see the socket close and start reconnecting); the data
        stays. Idempotent."""
        with self._lifecycle:
            with self._lock:
                server, self._server = self._server, None
            if server is not None:
                server.stop()

    def restart(self) -> RunningServer:
        """``stop()`` then ``start()``: same URL, same data."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop, close the databases, remove what this server made. Idempotent."""
        self.stop()
        with self._lifecycle:
            with self._lock:
                if self._closed:
                    return
                self._closed = True
            self._databases.close()
            if self._made_dir is not None:
                shutil.rmtree(self._made_dir, ignore_errors=True)

    def _dispatch(self, credentials: Any, db_name: str) -> Any:
        return self.on_request(credentials, db_name)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        where = self.backend and "couchdb" or str(self.data_dir)
        return f"<RunningServer 127.0.0.1:{self._port} {state} ({where})>"


@contextlib.contextmanager
def running_server(on_request: OnRequest | None = None,
                   data_dir: str | os.PathLike[str] | None = None,
                   **server_options: Any) -> Iterator[RunningServer]:
    """A started ``RunningServer`` for a ``with`` block (unittest, scripts); closed at
    its end. ``backend=<CouchDB URL>`` serves from CouchDB instead of SQLite files; other
    keywords are ``create_server`` options."""
    server = RunningServer(on_request, data_dir, **server_options)
    try:
        server.start()
        yield server
    finally:
        server.close()
