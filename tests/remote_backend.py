"""Contract backend ``remote``: a ``RemoteDatabase`` over a real websocket.

A real ``SyncServer`` on 127.0.0.1:0 grants a fresh in-memory ``LocalDatabase`` per
name (design documents allowed); a real ``Client`` connects to it and the factory returns
``client.database(name)``. Function-scoped (the thread-leak check runs per test);
everything is closed at teardown.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterator

import pytest

from pouchsync_sync.client import Client
from pouchsync_sync.store.base import Database


def _create_server(on_request: Callable[..., Any], **options: Any) -> Any:
    from pouchsync_sync.server import create_server

    return create_server(on_request, **options)


@pytest.fixture
def backend_remote() -> Iterator[Callable[[str], Database]]:
    from pouchsync_sync.store.local import LocalDatabase

    served: dict[str, Database] = {}
    lock = threading.Lock()

    from pouchsync_sync.server import Grant

    def on_request(credentials: Any, name: str) -> Any:
        with lock:
            db = served.get(name)
            if db is None:
                db = served[name] = LocalDatabase(":memory:", name=name)
        return Grant(db, allow_design=True)  # the contract writes _design/ docs

    server = _create_server(on_request).start()
    client = Client(initial_delay=0.05, max_delay=0.5)
    made: list[Database] = []
    try:
        client.connect(server.url)

        def make(name: str) -> Database:
            db = client.database(name, timeout=10)
            made.append(db)
            return db

        yield make
    finally:
        for db in made:
            db.close()
        client.close()
        server.stop()
        for db in served.values():
            db.close()
