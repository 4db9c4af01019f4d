"""``pouchsync info DB``, ``put DB JSON``, ``get DB ID``: quick looks at a local store
file or a CouchDB database (``http(s)://[user:pass@]host:port/dbname``).

``info`` and ``get`` never create anything: a missing file or database is an error.
Output is JSON on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import Conflict, NotFound
from ..store.base import Database
from . import UsageError

__all__ = ["add_parsers", "open_db"]


def _is_url(spec: str) -> bool:
    return spec.lower().startswith(("http://", "https://"))


@contextlib.contextmanager
def open_db(spec: str, *, create: bool) -> Iterator[Database]:
    """The database ``spec`` names, closed afterwards; ``create=False`` refuses to make one."""
    if _is_url(spec):
        from ..store.couch import CouchDB

        parts = urlsplit(spec)
        server_path, _, encoded = parts.path.rstrip("/").rpartition("/")
        name = unquote(encoded)
        if not name:
            raise UsageError("a CouchDB URL must end with the database name")
        server = CouchDB(parts._replace(path=server_path, query="", fragment="").geturl())
        try:
            db: Database = server.database(name, create=create)
            if not create:
                db.info()  # NotFound when it does not exist
            yield db
        finally:
            server.close()
        return
    if "://" in spec:
        raise UsageError(f"unsupported URL {spec.split('://', 1)[0]!r}: use a file path or http(s)://")
    if not create and spec != ":memory:" and not os.path.exists(spec):
        raise NotFound(f"no such store file: {spec}")
    from ..store.local import LocalDatabase

    db = LocalDatabase(spec)
    try:
        yield db
    finally:
        db.close()


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str), flush=True)


def _info(args: argparse.Namespace) -> int:
    with open_db(args.db, create=False) as db:
        _print(db.info())
    return 0


def _put(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.json == "-" else args.json
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"JSON is not valid: {exc}") from None
    if not isinstance(doc, dict):
        raise UsageError("the document must be a JSON object")
    with open_db(args.db, create=True) as db:
        if "_id" in doc and "_rev" not in doc:
            try:  # an update of an existing document needs its current revision
                doc = {**doc, "_rev": db.get(doc["_id"])["_rev"]} if args.update else doc
            except NotFound:
                pass
        try:
            _print(db.put(doc) if "_id" in doc else db.post(doc))
        except Conflict as exc:
            if "_rev" in doc or args.update:
                raise
            raise Conflict(f"{exc.reason}: {doc['_id']!r} exists; give its current _rev, "
                           f"or --update to write over it") from exc
    return 0


def _get(args: argparse.Namespace) -> int:
    with open_db(args.db, create=False) as db:
        _print(db.get(args.id, rev=args.rev, conflicts=args.conflicts))
    return 0


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("info", help="show a database's info",
                       description="Show the info of a local store file or a CouchDB database URL.")
    p.add_argument("db", metavar="DB", help="store file or http(s)://host:port/dbname")
    p.set_defaults(func=_info)

    p = sub.add_parser("put", help="write one document",
                       description="Write one document (a JSON object; '-' reads stdin). "
                                   "Without _id a new id is generated.")
    p.add_argument("db", metavar="DB", help="store file (created if missing) or CouchDB URL")
    p.add_argument("json", metavar="JSON", help="the document")
    p.add_argument("--update", action="store_true",
                   help="overwrite the current revision when _rev is not given")
    p.set_defaults(func=_put)

    p = sub.add_parser("get", help="read one document",
                       description="Print one document as JSON.")
    p.add_argument("db", metavar="DB", help="store file or CouchDB URL")
    p.add_argument("id", metavar="ID", help="document id")
    p.add_argument("--rev", help="a given revision")
    p.add_argument("--conflicts", action="store_true", help="include _conflicts")
    p.set_defaults(func=_get)
