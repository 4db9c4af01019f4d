"""Fixtures of the fault tests: server-side stores, in-process servers, clients, local
stores and signal recorders. ``--full`` (root conftest) switches to the long counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from pouchsync_sync import create_server
from tests.sync_fixtures import Hub, Recorder, clients, local, recorders  # noqa: F401 - fixtures

from .helpers import TOKEN


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    h = Hub(tmp_path / "hub", TOKEN)
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
