"""The ``pouchsync`` command line."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from .store.local import LocalDatabase

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    """Write on a store, build a conflict, show the winner by CouchDB's rule."""
    with tempfile.TemporaryDirectory() as tmp:
        with LocalDatabase(Path(tmp) / "todos.sqlite") as db:
            first = db.put({"_id": "buy-milk", "title": "Buy milk", "done": False})
            db.put({"_id": "buy-milk", "_rev": first["rev"], "title": "Buy milk", "done": True})
            # the same document edited elsewhere, arriving by replication
            db.bulk_docs([{"_id": "buy-milk", "_rev": "2-ffff", "title": "Buy oat milk",
                           "_revisions": {"start": 2, "ids": ["ffff", first["rev"].split("-", 1)[1]]}}],
                         new_edits=False)
            doc = db.get("buy-milk", conflicts=True)
            print(f"store {db.name}: {db.info()['doc_count']} doc(s), update_seq {db.info()['update_seq']}")
            print(f"winner {doc['_rev']} title={doc['title']!r}; conflicts {doc.get('_conflicts', [])}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pouchsync", description="Sync document databases through WebSockets.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="a short demonstration on the embedded store")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
