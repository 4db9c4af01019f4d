"""The pytest plugin of pouchsync_sync: fixtures for testing apps that sync.

Registered through the ``pytest11`` entry point (``pip install pouchsync_sync``), or by
hand with ``pytest_plugins = ["pouchsync_sync.testing.plugin"]`` / ``-p
pouchsync_sync.testing.plugin``. It only defines fixtures (and declares its marker):
a run that uses none of them starts nothing and calls nothing.

- ``pouchsync_server``: a ``RunningServer`` on 127.0.0.1, data under the test's
  ``tmp_path``, closed at teardown. ``@pytest.mark.pouchsync_backend("couch")`` serves
  from the ``couchdb_url`` server instead of SQLite files.
- ``pouchsync_client``: a ``Client`` connected to it (short, jitter-free backoff),
  closed at teardown, failing the test if a client thread outlives ``close()``.
- ``couchdb_url`` (session): ``$COUCHDB_URL``, else pouchdb-server from npm, started once;
  the tests that use it are skipped, with the reason, when Node or npm is missing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

log = logging.getLogger(__name__)

BACKENDS = ("local", "couch")
_CLIENT_THREADS = ("pouchsync-client", "pouchsync-sync[", "pouchsync-replicate-reader[")
_JOIN = 5.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "pouchsync_backend(name): the store behind the pouchsync_server fixture: "
                   "'local' (SQLite files, the default) or 'couch' (the couchdb_url server)")


@pytest.fixture(scope="session")
def couchdb_url() -> Iterator[str]:
    """URL of a CouchDB-protocol server for the session: ``$COUCHDB_URL`` when set,
    otherwise pouchdb-server from npm (installed once into ``$COUCH_HOME``), stopped at
    the session's end."""
    external = os.environ.get("COUCHDB_URL")
    if external:
        yield external.rstrip("/")
        return
    from .couchserver import NodeMissing, launch

    try:
        server = launch()
    except NodeMissing as exc:
        pytest.skip(f"no CouchDB-protocol server: {exc} (or set COUCHDB_URL)")
    try:
        yield server.url
    finally:
        messages = server.guard_messages()
        if messages:
            log.warning("the test CouchDB server hit %d guarded bugs:\n%s",
                        len(messages), "\n".join(messages[:20]))
        server.stop()


def _backend(request: pytest.FixtureRequest) -> str | None:
    """The CouchDB URL the marked test asks for, or None for the embedded store."""
    marker = request.node.get_closest_marker("pouchsync_backend")
    if marker is None:
        return None
    name = marker.args[0] if marker.args else marker.kwargs.get("name")
    if name not in BACKENDS or len(marker.args) > 1:
        pytest.fail(f"@pytest.mark.pouchsync_backend takes one of {', '.join(map(repr, BACKENDS))}"
                    f", not {marker.args or marker.kwargs!r}", pytrace=False)
    if name == "couch":
        return str(request.getfixturevalue("couchdb_url"))
    return None


@pytest.fixture
def pouchsync_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A running sync server for this test (a ``pouchsync_sync.testing.RunningServer``):
    ``.url``, ``.credentials``, ``.database(name)``, ``.on_request`` (replaceable),
    ``.stop()``, ``.start()``, ``.restart()`` (same port, same data)."""
    from .server import RunningServer

    backend = _backend(request)
    server = RunningServer(data_dir=None if backend else tmp_path / "pouchsync-server",
                           backend=backend)
    try:
        server.start()
        yield server
    finally:
        server.close()


def _client_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith(_CLIENT_THREADS)}


@pytest.fixture
def pouchsync_client(pouchsync_server: Any) -> Iterator[Any]:
    """A ``Client`` connected to ``pouchsync_server``; closed at teardown, and the test
    fails if one of its threads is still alive 5 s later."""
    from ..client import Client

    before = _client_threads()
    client = Client(initial_delay=0.02, max_delay=0.25, jitter=0.0)
    try:
        client.connect(pouchsync_server.url)
        client.wait_connected(timeout=10.0)
        yield client
    finally:
        client.close()
    deadline = time.monotonic() + _JOIN
    left = _client_threads() - before
    for thread in left:
        thread.join(max(0.0, deadline - time.monotonic()))
    alive = sorted(t.name for t in left if t.is_alive())
    if alive:
        pytest.fail(f"client threads still running 5 s after pouchsync_client.close() (this "
                    f"client's, or another Client the test left open): {alive}", pytrace=False)
