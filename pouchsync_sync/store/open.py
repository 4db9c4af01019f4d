"""``open_database(spec)``: a database from one string (a path, ``:memory:`` or a URL)."""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

from ..errors import BadRequest
from .base import Database

__all__ = ["open_database"]


def open_database(spec: str | os.PathLike[str], *, timeout: float = 30.0) -> Database:
    """Open the database ``spec`` names.

    - ``":memory:"`` or a file path: a ``LocalDatabase`` (the SQLite file is created
      if missing).
    - ``http(s)://[user:pass@]host[:port][/prefix]/dbname``: a ``CouchDatabase`` on
      that server, **created if it does not exist**; credentials in the URL are used
      as basic auth. The returned database owns its server handle: ``close()`` closes
      the connection pool. ``timeout`` (seconds) bounds its requests.
    """
    text = os.fspath(spec)
    if not isinstance(text, str) or not text:
        raise BadRequest("open_database needs a path, ':memory:' or an http(s) URL")
    scheme = text.split(":", 1)[0].lower() if "://" in text else ""
    if scheme in ("http", "https"):
        return _open_couch(text, timeout)
    if scheme:
        raise BadRequest(f"open_database: unsupported URL scheme {scheme!r}")
    from .local import LocalDatabase
    return LocalDatabase(text)


def _open_couch(url: str, timeout: float) -> Database:
    from .couch import CouchDatabase, CouchDB

    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    server_path, _, encoded_name = path.rpartition("/")
    name = unquote(encoded_name)
    if not name:
        raise BadRequest("open_database: the URL must end with a database name")
    server_url = parts._replace(path=server_path, query="", fragment="").geturl()
    server = CouchDB(server_url, timeout=timeout)
    try:
        server.database(name, create=True)
    except BaseException:
        server.close()
        raise
    return CouchDatabase(server, name, owns_server=True)
