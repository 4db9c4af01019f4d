"""Shared fixtures: no test may leave a library thread running."""

from __future__ import annotations

import threading
import time

import pytest

from pouchsync_sync import LocalDatabase

# the plugin users get through the pytest11 entry point; listed here too because our
# suite runs from a checkout. The entry point's name is the module's, so when the package
# is installed pytest sees it registered already and does not load it twice.
pytest_plugins = ["pouchsync_sync.testing.plugin", "pytester", "tests.couchserver",
                  "tests.remote_backend"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--full", action="store_true", default=False,
                     help="run the long fault, fuzz and soak versions")


@pytest.fixture
def full_run(request: pytest.FixtureRequest) -> bool:
    """True when the long versions of fault and fuzz tests were asked for (--full)."""
    return bool(request.config.getoption("--full"))


def _library_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("pouchsync")}


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """Fail a test that leaves a ``pouchsync*`` thread alive (after a 5 s grace)."""
    before = _library_threads()
    yield
    deadline = time.monotonic() + 5.0
    leaked = _library_threads() - before
    pause = threading.Event()  # never set: a bounded pause between tries
    for thread in leaked:
        while True:
            try:
                thread.join(max(0.0, deadline - time.monotonic()))
                break
            except RuntimeError:  # started but not running yet ("before it is started")
                if time.monotonic() >= deadline:
                    break
                pause.wait(0.005)
    alive = sorted(t.name for t in leaked if t.is_alive())
    assert not alive, f"test leaked library threads: {alive}"


@pytest.fixture
def backend_local_file(tmp_path):
    """Contract backend: LocalDatabase on a SQLite file per name."""
    made: list[LocalDatabase] = []

    def make(name: str) -> LocalDatabase:
        db = LocalDatabase(tmp_path / f"{name}.sqlite")
        made.append(db)
        return db

    yield make
    for db in made:
        db.close()


@pytest.fixture
def backend_local_memory():
    """Contract backend: LocalDatabase(":memory:")."""
    made: list[LocalDatabase] = []

    def make(name: str) -> LocalDatabase:
        db = LocalDatabase(":memory:", name=name)
        made.append(db)
        return db

    yield make
    for db in made:
        db.close()
