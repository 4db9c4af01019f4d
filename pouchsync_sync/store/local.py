"""``LocalDatabase``: the embedded store, one SQLite file with CouchDB semantics.

This module is the public face; the work is done by small modules it composes:

* ``local_file``: the schema, the one connection and its lock, transactions, the
  ``Notifier`` a write wakes (theory of operation: the tables and their invariants);
* ``local_tables``: the SQL of each table operation, on an open connection;
* ``incoming``: every incoming doc checked and prepared before anything is written;
* ``local_writes``: edits and replicated merges, in the caller's write transaction;
* ``local_reads``: documents rendered as CouchDB answers them, ``all_docs``,
  ``revs_diff``, ``bulk_get``;
* ``local_changes``: the changes feed and its longpoll wait;
* ``local_texts``: the text lane of replication (``changes_texts``, ``write_missing_texts``);
* ``groupcommit``: concurrent ``_local`` writes (checkpoints) sharing one transaction.

Every write runs in one ``BEGIN IMMEDIATE`` transaction, so a process killed
mid-write leaves the file consistent, and bad input is refused before anything is
written.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable

from .. import gcpause, revtree
from ..errors import BadRequest, Conflict, NotFound, PouchSyncError, error_from_json
from . import local_changes, local_reads, local_texts
from . import local_tables as tables
from .base import Database
from .groupcommit import GroupCommit
from .incoming import Prepared, prepare_doc, prepare_replicated
from .local_file import LocalFile, is_memory_path
from .local_writes import Writer
from .notify import Notifier
from .texts import check_text_rows
from .validate import (
    check_all_docs_args,
    check_bulk_docs_args,
    check_changes_args,
    check_count,
    check_doc_id,
    is_local_id,
)

__all__ = ["LocalDatabase"]

_prepare_replicated_doc = functools.partial(prepare_doc, require_id=True, replicated=True)


class LocalDatabase(Database):
    """The embedded store. Thread-safe: any number of threads may share one object.

    Example::

        import pouchsync_sync as ps

        db = ps.LocalDatabase("todos.sqlite")              # ":memory:" for in-memory
        todo = db.post({"title": "Buy milk"})               # {"ok": True, "id": …, "rev": "1-…"}
        db.put({"_id": todo["id"], "_rev": todo["rev"], "title": "Buy oat milk"})
        print(db.name, db.get(todo["id"])["title"])         # todos Buy oat milk
        db.close()
    """

    def __init__(self, path: str | os.PathLike[str] = ":memory:", *, name: str | None = None,
                 revs_limit: int = revtree.DEFAULT_REVS_LIMIT,
                 max_leaves: int = revtree.DEFAULT_MAX_LEAVES) -> None:
        self.path = str(path)
        self.name = name or ("memory" if is_memory_path(self.path) else Path(self.path).stem)
        if revs_limit < 1:
            raise BadRequest("revs_limit must be at least 1")
        if type(max_leaves) is not int or max_leaves < 1:
            raise BadRequest("max_leaves must be a positive integer")
        self._writer = Writer(revs_limit=revs_limit, max_leaves=max_leaves)
        self._file = LocalFile(self.path, name=self.name)
        self._local_writes: GroupCommit[Prepared] = GroupCommit(self._file.lock, self._write_locals)

    @property
    def revs_limit(self) -> int:
        """Revisions kept a path of a document's tree (older ones are stemmed)."""
        return self._writer.revs_limit

    @revs_limit.setter
    def revs_limit(self, value: int) -> None:
        self._writer.revs_limit = value

    @property
    def max_leaves(self) -> int:
        """Most leaf revisions (open conflicts) one document may have; a replicated
        revision that would add one more is refused (413) instead of merged."""
        return self._writer.max_leaves

    @max_leaves.setter
    def max_leaves(self, value: int) -> None:
        self._writer.max_leaves = value

    @property
    def notifier(self) -> Notifier:
        """What every write to this file in this process rings (``store.notify``): a
        listener learns of writes without a thread waiting in ``changes``."""
        return self._file.notifier

    @property
    def _closed(self) -> bool:
        return self._file.closed

    # -- identity ------------------------------------------------------------------------
    def identity(self) -> str:
        return f"local:{self._file.uuid}"

    def info(self) -> dict[str, Any]:
        with self._file.reading() as conn:
            live, dead = conn.execute(
                "SELECT coalesce(sum(deleted = 0), 0), coalesce(sum(deleted = 1), 0) FROM docs"
            ).fetchone()
            return {"db_name": self.name, "doc_count": live, "doc_del_count": dead,
                    "update_seq": tables.update_seq(conn), "purge_seq": 0,
                    "instance_start_time": "0", "uuid": self._file.uuid, "adapter": "sqlite"}

    # -- writes --------------------------------------------------------------------------
    def put(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        prepared = prepare_doc(doc, require_id=True)
        if is_local_id(prepared.doc_id):  # checkpoints: concurrent ones share a commit
            result = self._local_writes.write(prepared)
        else:
            result = self._bulk_new_edits([prepared])[0]
        if "error" in result:
            raise _error_from_result(result)
        return result

    def post(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(doc, Mapping):
            raise BadRequest("Document must be a JSON object")
        if "_id" not in doc:
            doc = {"_id": uuid.uuid4().hex, **doc}
        return self.put(doc)

    def delete(self, doc_id: str, rev: str) -> dict[str, Any]:
        check_doc_id(doc_id)
        if not isinstance(rev, str) or not rev:
            raise Conflict("Document update conflict")
        return self.put({"_id": doc_id, "_rev": rev, "_deleted": True})

    def bulk_docs(self, docs: Sequence[Mapping[str, Any]], *,
                  new_edits: bool = True) -> list[dict[str, Any]]:
        check_bulk_docs_args(docs, new_edits)
        if new_edits:
            return self._bulk_new_edits([prepare_doc(doc, require_id=False) for doc in docs])
        with gcpause.paused():
            return self._bulk_replicated(prepare_replicated(docs, _prepare_replicated_doc))[1]

    def write_missing(self, docs: Sequence[Mapping[str, Any]]
                      ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """``Database.write_missing`` in one transaction: the rev trees say what is new."""
        if not isinstance(docs, (list, tuple)):
            raise BadRequest("docs must be a list")
        with gcpause.paused():  # a batch: thousands of objects alive until it is written
            written, failures = self._bulk_replicated(
                prepare_replicated(docs, _prepare_replicated_doc))
            return [item.doc for item in written], failures

    def write_missing_texts(self, rows: Sequence[Sequence[Any]]
                            ) -> tuple[list[int], list[dict[str, Any]]]:
        """``Database.write_missing_texts``: the checked texts stored as they are."""
        checked = check_text_rows(rows)  # given CheckedTexts: as they are
        with gcpause.paused():
            with self._file.writing() as conn:
                return local_texts.write(conn, checked, self._writer.merge_replicated)

    def check_texts(self, rows: Sequence[Sequence[Any]]) -> Sequence[Sequence[Any]]:
        """``Database.check_texts``: ``texts.CheckedTexts`` (written without a second check)."""
        return check_text_rows(rows)

    def _bulk_new_edits(self, prepared: list[Prepared]) -> list[dict[str, Any]]:
        with self._file.writing() as conn:
            return self._writer.new_edits(conn, prepared)

    def _bulk_replicated(self, prepared: list[Prepared]
                         ) -> tuple[list[Prepared], list[dict[str, Any]]]:
        """Merge replicated revisions; ``(the items whose revision was new, failures)``."""
        with self._file.writing() as conn:
            return self._writer.merge_replicated(conn, prepared)

    def _write_locals(self, prepared: Sequence[Prepared]) -> list[dict[str, Any]]:
        """``_local`` docs written in one transaction (``GroupCommit``'s batch), in order."""
        with self._file.writing(notify=False) as conn:
            return [tables.write_local(conn, item.doc_id, item.doc) for item in prepared]

    # -- reads ---------------------------------------------------------------------------
    def get(self, doc_id: str, *, rev: str | None = None, revs: bool = False,
            revs_info: bool = False, conflicts: bool = False,
            open_revs: Sequence[str] | str | None = None, latest: bool = False,
            attachments: bool = False) -> Any:
        check_doc_id(doc_id)
        if is_local_id(doc_id):
            with self._file.reading() as conn:
                return tables.read_local(conn, doc_id)
        if rev is not None:
            revtree.parse_rev(rev)
        opts = {"revs": revs, "revs_info": revs_info, "conflicts": conflicts,
                "attachments": attachments}
        with self._file.reading() as conn:
            return local_reads.get(conn, doc_id, rev, open_revs, latest, opts)

    def all_docs(self, *, include_docs: bool = False, keys: Sequence[str] | None = None,
                 startkey: str | None = None, endkey: str | None = None,
                 limit: int | None = None, skip: int = 0,
                 descending: bool = False, conflicts: bool = False) -> dict[str, Any]:
        check_all_docs_args(limit=limit, skip=skip)
        # SQLite integers are 64-bit: a larger limit or skip means "all" / "past the end"
        limit = None if limit is None else min(limit, tables.SQLITE_MAX_INT)
        skip = min(skip, tables.SQLITE_MAX_INT)
        with self._file.reading() as conn:
            return local_reads.all_docs(conn, include_docs=include_docs, keys=keys,
                                        startkey=startkey, endkey=endkey, limit=limit,
                                        skip=skip, descending=descending, conflicts=conflicts)

    # -- changes -------------------------------------------------------------------------
    def changes(self, *, since: Any = 0, limit: int | None = None,
                include_docs: bool = False, conflicts: bool = False,
                style: str = "main_only", doc_ids: Sequence[str] | None = None,
                selector: Mapping[str, Any] | None = None, descending: bool = False,
                feed: str = "normal", timeout: float | None = None,
                attachments: bool = False) -> dict[str, Any]:
        check_changes_args(style=style, feed=feed, limit=limit, timeout=timeout, doc_ids=doc_ids)
        if limit is not None:
            limit = min(limit, tables.SQLITE_MAX_INT)  # 64-bit SQLite; larger means "all"
        match: Callable[[dict[str, Any]], bool] | None = None
        if selector is not None:
            from ..selector import compile_selector
            match = compile_selector(selector)
        position = local_changes.parse_since(self._file, since)
        return local_changes.changes(
            self._file, position, limit=limit, include_docs=include_docs, conflicts=conflicts,
            style=style, doc_ids=doc_ids, match=match, descending=descending, feed=feed,
            timeout=timeout, attachments=attachments)

    def changes_texts(self, *, since: Any = 0, limit: int | None = None,
                      max_bytes: int | None = None) -> dict[str, Any]:
        """``Database.changes_texts``: the stored texts, never parsed."""
        check_changes_args(style="all_docs", feed="normal", limit=limit, timeout=None,
                           doc_ids=None)
        check_count("max_bytes", max_bytes)
        position = local_changes.parse_since(self._file, since)
        want = None if limit is None else max(min(limit, tables.SQLITE_MAX_INT), 1)  # as changes
        with self._file.reading() as conn:
            return local_texts.read(conn, position, want, max_bytes)

    # -- replication helpers ---------------------------------------------------------------
    def revs_diff(self, revs: Mapping[str, Sequence[str]]) -> dict[str, Any]:
        local_reads.check_revs_diff(revs)
        with self._file.reading() as conn:
            trees = tables.load_trees(conn, list(revs))
        return local_reads.revs_diff(trees, revs)

    def bulk_get(self, docs: Sequence[Mapping[str, Any]], *, revs: bool = False,
                 latest: bool = False, attachments: bool = False) -> dict[str, Any]:
        local_reads.check_bulk_get(docs)
        with self._file.reading() as conn:
            return local_reads.bulk_get(conn, docs, revs=revs, latest=latest,
                                        attachments=attachments)

    def get_attachment(self, doc_id: str, name: str, rev: str | None = None) -> bytes:
        doc = self.get(doc_id, rev=rev)
        stub = (doc.get("_attachments") or {}).get(name)
        if stub is None:
            raise NotFound("Document is missing attachment")
        with self._file.reading() as conn:
            data = tables.attachment_data(conn, stub["digest"])
        if data is None:
            raise NotFound("Document is missing attachment")
        return data

    # -- maintenance -----------------------------------------------------------------------
    def compact(self) -> None:
        """Drop the bodies of non-leaf revisions and attachments no revision uses."""
        with self._file.writing() as conn:
            tables.compact(conn)

    def close(self) -> None:
        self._file.close()

    def __repr__(self) -> str:
        return f"<LocalDatabase {self.name!r} at {self.path!r}>"

    def _repr_html_(self) -> str:
        """An info table in Jupyter (see ``pouchsync_sync.display``)."""
        from ..display import database_html
        return database_html(self)


def _error_from_result(result: Mapping[str, Any]) -> PouchSyncError:
    status = {"conflict": 409, "not_found": 404, "missing_stub": 412,
              "forbidden": 403}.get(result["error"], 400)
    return error_from_json({"status": status, "error": result["error"],
                            "reason": result.get("reason")})
