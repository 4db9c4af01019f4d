from __future__ import annotations

import itertools
from typing import Callable

import pytest

from pouchsync_sync import Database
from tests.backends import CONTRACT_BACKENDS

_names = itertools.count()


@pytest.fixture(params=CONTRACT_BACKENDS)
def make_db(request: pytest.FixtureRequest) -> Callable[..., Database]:
    """A factory of fresh databases on the backend under test."""
    factory = request.getfixturevalue(f"backend_{request.param}")

    def make(prefix: str = "contract") -> Database:
        return factory(f"{prefix}-{next(_names)}")

    return make


@pytest.fixture
def db(make_db: Callable[..., Database]) -> Database:
    return make_db()
