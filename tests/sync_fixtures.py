"""Fixtures shared by the sync and fault tests: server-side stores granted to a token,
clients with short jitter-free backoffs, local stores, and signal recorders.

Modules import what they use (``from tests.sync_fixtures import clients, local``);
everything made is closed at teardown.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from pouchsync_sync import Client, Denied, LocalDatabase


class Hub:
    """Server-side databases, one SQLite file per name under ``root``, granted to
    credentials carrying ``token["token"]``."""

    def __init__(self, root: Path, token: dict[str, Any]) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.token = token
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
        if not isinstance(credentials, dict) or credentials.get("token") != self.token["token"]:
            raise Denied("bad or missing token")
        return self.db(name)

    def close(self) -> None:
        for db in self.dbs.values():
            db.close()


@pytest.fixture
def clients() -> Iterator[Callable[..., Client]]:
    """A factory of clients with short, jitter-free backoffs; all closed at teardown."""
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
    """A factory of local stores (SQLite files in the test's tmp dir)."""
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
    """A factory of signal ``Recorder`` objects, disconnected at teardown."""
    made: list[Recorder] = []

    def make(signal: Any, sender: Any) -> Recorder:
        rec = Recorder(signal, sender)
        made.append(rec)
        return rec

    yield make
    for rec in made:
        rec.close()
