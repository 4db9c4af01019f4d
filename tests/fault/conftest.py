"""Fixtures of the fault tests: server-side stores, in-process servers, clients, local
stores and signal recorders. ``--full`` (root conftest) switches to the long counts."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from pouchsync_sync import Client, Denied, LocalDatabase, create_server

from .helpers import TOKEN


class Hub:
    """Server-side databases, one SQLite file per name under ``root``, granted to TOKEN."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.dbs: dict[str, LocalDatabase] = {}
        self.lock = threading.Lock()
        self.requests: list[tuple[Any, str]] = []

    def db(self, name: str) -> LocalDatabase:
        with self.lock:
            if name not in self.dbs:
                self.dbs[name] = LocalDatabase(self.root / f"{name}.sqlite", name=name)
            return self.dbs[name]

    def on_request(self, credentials: Any, name: str) -> LocalDatabase:
        with self.lock:
            self.requests.append((credentials, name))
        if credentials != TOKEN:
            raise Denied("bad or missing token")
        return self.db(name)

    def close(self) -> None:
        for db in self.dbs.values():
            db.close()


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    h = Hub(tmp_path / "hub")
    yield h
    h.close()


@pytest.fixture
def servers() -> Iterator[Callable[..., Any]]:
    """``make(on_request, **options)`` -> a started in-process SyncServer; all stopped."""
    made: list[Any] = []

    def make(on_request: Callable[..., Any], **options: Any) -> Any:
        server = create_server(on_request, **options).start()
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


@pytest.fixture
def clients() -> Iterator[Callable[..., Client]]:
    """Clients with short, jitter-free backoffs; all closed at teardown."""
    made: list[Client] = []

    def make(**options: Any) -> Client:
        options.setdefault("initial_delay", 0.02)
        options.setdefault("max_delay", 0.25)
        options.setdefault("jitter", 0.0)
        client = Client(**options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Callable[[str], LocalDatabase]]:
    made: list[LocalDatabase] = []
    counter = iter(range(10**6))

    def make(name: str) -> LocalDatabase:
        db = LocalDatabase(tmp_path / f"local-{next(counter)}-{name}.sqlite", name=name)
        made.append(db)
        return db

    yield make
    for db in made:
        db.close()


class Recorder:
    """Records a signal's calls for one sender; ``wait_for(pred)`` blocks until true."""

    def __init__(self, signal: Any, sender: Any) -> None:
        self.signal = signal
        self.sender = sender
        self.events: list[dict[str, Any]] = []
        self.cond = threading.Condition()
        signal.connect(self._receive, sender=sender, weak=False)

    def _receive(self, sender: Any, **kwargs: Any) -> None:
        with self.cond:
            self.events.append(kwargs)
            self.cond.notify_all()

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool],
                 timeout: float = 10.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self.events), timeout)

    def close(self) -> None:
        self.signal.disconnect(self._receive, sender=self.sender)


@pytest.fixture
def recorders() -> Iterator[Callable[[Any, Any], Recorder]]:
    made: list[Recorder] = []

    def make(signal: Any, sender: Any) -> Recorder:
        rec = Recorder(signal, sender)
        made.append(rec)
        return rec

    yield make
    for rec in made:
        rec.close()
