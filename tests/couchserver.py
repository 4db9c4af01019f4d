"""The CouchDB-protocol test server of our own suite: a thin re-export.

The code lives in ``pouchsync_sync.testing.couchserver`` (users get it through the pytest
plugin's ``couchdb_url`` fixture); this module keeps the names the suite, ``bench/`` and
``.ci/run`` import from here working, and adds the suite's own fixtures on top of the
plugin's ``couchdb_url``: ``couch_url`` (its old name), ``couch`` and ``backend_couch``.

``python3 -m tests.couchserver`` starts one, prints its URL and serves until Ctrl-C or
SIGTERM (``--install`` only installs).
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Callable, Iterator

import pytest

from pouchsync_sync.testing.couchserver import (  # noqa: F401 - re-exported
    GUARD,
    PACKAGE,
    VERSION,
    CouchServer,
    CouchServerError,
    NodeMissing,
    couch_home,
    ensure_installed,
    launch,
    main,
    start,
)

_DB_NAME_RE = re.compile(r"[^a-z0-9_$()+-]")


def couch_db_name(name: str) -> str:
    """A valid, unique CouchDB database name made from a test's name."""
    base = _DB_NAME_RE.sub("-", name.lower())[:80]
    return f"t{base}-{os.getpid()}-{next(_COUNTER)}"


_COUNTER = iter(range(1, 1 << 62))


@pytest.fixture(scope="session")
def couch_url(couchdb_url: str) -> str:
    """URL of the CouchDB-protocol server for this test session (the plugin's
    ``couchdb_url``: ``COUCHDB_URL`` when set, else pouchdb-server from npm)."""
    return couchdb_url


@pytest.fixture
def couch(couch_url: str) -> Iterator[object]:
    """A ``CouchDB`` handle on the session's server, closed after the test."""
    from pouchsync_sync import CouchDB

    handle = CouchDB(couch_url)
    try:
        yield handle
    finally:
        handle.close()


@pytest.fixture
def backend_couch(couch: object) -> Iterator[Callable[[str], object]]:
    """Factory ``make(name) -> CouchDatabase``: a fresh database per call, deleted at teardown."""
    made: list[str] = []

    def make(name: str = "db") -> object:
        db_name = couch_db_name(name)
        made.append(db_name)
        return couch.database(db_name, create=True)  # type: ignore[attr-defined]

    yield make
    for db_name in made:
        with contextlib.suppress(Exception):
            couch.delete_database(db_name)  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
