"""Shared fixtures: no test may leave a library thread running."""

from __future__ import annotations

import threading
import time

import pytest

pytest_plugins = ["tests.couchserver"]


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
    for thread in leaked:
        thread.join(max(0.0, deadline - time.monotonic()))
    alive = sorted(t.name for t in leaked if t.is_alive())
    assert not alive, f"test leaked library threads: {alive}"
