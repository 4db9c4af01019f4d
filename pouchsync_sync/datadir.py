"""Databases by name for a server: one SQLite file per database in a directory, or the
databases of one CouchDB server.

A client picks the database name, so the name is checked before it touches the disk or
a URL: CouchDB's rule without ``/`` (``^[a-z][a-z0-9_$()+-]*$``, at most 238
characters). A name that passes cannot hold a path separator, ``..``, a NUL or a leading
dot, so ``DataDir`` never opens a file outside its directory.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

from .errors import BadRequest, PouchSyncError
from .store.base import Database
from .store.local import LocalDatabase

__all__ = ["DB_NAME_RE", "DataDir", "CouchDir", "check_name"]

log = logging.getLogger(__name__)

DB_NAME_RE = re.compile(r"^[a-z][a-z0-9_$()+-]{0,237}\Z")
SUFFIX = ".sqlite"


def check_name(name: Any) -> str:
    """``name`` if it is a valid database name for a server, else ``BadRequest``."""
    if not isinstance(name, str) or not DB_NAME_RE.match(name):
        shown = repr(name)[:60]
        raise BadRequest(f"invalid database name {shown}: use a-z, 0-9 and _$()+- "
                         f"(at most 238 characters), starting with a letter",
                         error="illegal_database_name")
    return name


class DataDir:
    """One ``LocalDatabase`` per name, in ``<root>/<name>.sqlite``. Thread-safe.

    Example::

        import pouchsync_sync as ps

        data = ps.DataDir("server-data")                   # created if missing
        def on_request(credentials, db_name):
            return data.database(db_name)   # server-data/<db_name>.sqlite; BadRequest for "../x"
        server = ps.create_server(on_request)
        print(data.database("todos").name)                  # todos
        data.close()

    Each database is opened once and shared by every channel that asks for it;
    ``close()`` closes them all (idempotent).
    """

    def __init__(self, root: str | os.PathLike[str], *, create: bool = True) -> None:
        self.root = Path(root).resolve()
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        if not self.root.is_dir():
            raise PouchSyncError(f"data directory {str(self.root)!r} does not exist")
        self._lock = threading.Lock()
        self._open: dict[str, LocalDatabase] = {}
        self._closed = False

    def path(self, name: str) -> Path:
        """Where database ``name`` lives (the name is checked)."""
        path = (self.root / (check_name(name) + SUFFIX)).resolve()
        if path.parent != self.root:  # belt and braces: the regex already forbids it
            raise BadRequest(f"invalid database name {name!r}", error="illegal_database_name")
        return path

    def database(self, name: str) -> LocalDatabase:
        """The database ``name``, created on first use."""
        path = self.path(name)
        with self._lock:
            if self._closed:
                raise PouchSyncError("the data directory is closed")
            db = self._open.get(name)
            if db is None:
                db = self._open[name] = LocalDatabase(path, name=name)
                log.info("opened database %r (%s)", name, path)
            return db

    def names(self) -> list[str]:
        """The databases in the directory (opened or not), sorted."""
        found = (p.name[:-len(SUFFIX)] for p in self.root.glob("*" + SUFFIX))
        return sorted(n for n in found if DB_NAME_RE.match(n))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            dbs, self._open = list(self._open.values()), {}
        for db in dbs:
            db.close()

    def __enter__(self) -> DataDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<DataDir {str(self.root)!r}>"


class CouchDir:
    """The databases of one CouchDB server by name, created on first use. Thread-safe;
    ``close()`` closes the connection pool.

    Example::

        import pouchsync_sync as ps
        import os

        couches = ps.CouchDir(os.environ["COUCHDB_URL"])  # for a server's on_request
        db = couches.database("help-couchdir")              # names checked, then created
        print(db.info()["db_name"])                         # help-couchdir
        couches.couch.delete_database("help-couchdir")
        couches.close()
    """

    def __init__(self, url: str, *, timeout: float = 30.0, prefix: str = "") -> None:
        from .store.couch import CouchDB

        self.couch = CouchDB(url, timeout=timeout)
        #: put before every name on the server (``pouchsync_sync.testing`` keeps each
        #: test's databases apart with it)
        self.prefix = prefix
        self._lock = threading.Lock()
        self._open: dict[str, Database] = {}

    def database(self, name: str) -> Database:
        check_name(name)
        with self._lock:
            db = self._open.get(name)
        if db is None:
            db = self.couch.database(self.prefix + name, create=True)  # HTTP outside the lock
            with self._lock:
                db = self._open.setdefault(name, db)
        return db

    def opened(self) -> list[str]:
        """The names (without the prefix) of the databases ``database`` has opened."""
        with self._lock:
            return list(self._open)

    def close(self) -> None:
        self.couch.close()

    def __enter__(self) -> CouchDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<CouchDir {self.couch.url!r}>"
