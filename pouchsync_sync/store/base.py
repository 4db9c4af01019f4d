"""The ``Database`` interface every backend implements.

``LocalDatabase`` (embedded SQLite), ``CouchDatabase`` (CouchDB over HTTP) and the
client's ``RemoteDatabase`` (the same calls over the websocket) all pass one
contract suite (``tests/contract``), so the replicator runs unchanged between any
two of them. Shapes and errors are CouchDB's (https://docs.couchdb.org/en/stable/api/),
with Python names: seconds for timeouts, keyword-only flags, ``None`` for "not given".

Sequences (``since``, ``seq``, ``last_seq``, ``update_seq``) are opaque JSON values:
integers on the embedded store, strings on CouchDB 3. Never compare or compute on
them; pass back what you received.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import BadRequest
from .texts import check_text_rows, docs_of_text_rows, texts_answer
from .validate import check_count

Doc = dict[str, Any]

__all__ = ["Database", "Doc", "failed_writes", "accepted_docs"]


def failed_writes(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The ``{"id","rev","error","reason"}`` entries of a ``bulk_docs(new_edits=False)`` answer.

    CouchDB answers only the failures; other backends answer one row per doc.
    """
    failures = []
    for row in results:
        if row.get("error"):
            failures.append({"id": row.get("id"), "rev": row.get("rev"),
                             "error": row.get("error"), "reason": row.get("reason", "")})
    return failures


def accepted_docs(docs: Sequence[Mapping[str, Any]],
                  failures: Sequence[Mapping[str, Any]]) -> list[Any]:
    """``docs`` less those ``failures`` name (by id and rev, or by id alone without rev)."""
    if not failures:
        return list(docs)
    refused = {(f.get("id"), f.get("rev")) for f in failures}
    refused_ids = {f.get("id") for f in failures if f.get("rev") is None}
    return [d for d in docs
            if (d.get("_id"), d.get("_rev")) not in refused and d.get("_id") not in refused_ids]


class Database(abc.ABC):
    """A CouchDB-style document database. Implementations are thread-safe.

    Example::

        import pouchsync_sync as ps

        def titles(db: ps.Database) -> list:          # any backend: local, CouchDB, remote
            return [row["doc"]["title"] for row in db.all_docs(include_docs=True)["rows"]]

        db = ps.LocalDatabase(":memory:")
        db.put({"_id": "milk", "title": "Buy milk"})
        print(isinstance(db, ps.Database), titles(db))     # True ['Buy milk']
    """

    #: short name (the SQLite file's stem, the CouchDB database name)
    name: str

    #: a write waits on a round trip to another process (a server): a replicator keeps
    #: two big writes in flight to it so it always has the next one
    write_round_trip: bool = False

    # -- identity -----------------------------------------------------------------
    @abc.abstractmethod
    def identity(self) -> str:
        """A stable string naming this database for replication ids.

        Two objects on the same data give the same identity; different databases
        give different ones (a uuid stored in the file, the CouchDB URL without
        credentials, the remote server URL + database name).
        """

    @abc.abstractmethod
    def info(self) -> dict[str, Any]:
        """``{"db_name", "doc_count", "doc_del_count", "update_seq", ...}``."""

    # -- documents ----------------------------------------------------------------
    @abc.abstractmethod
    def put(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        """Create or update one doc (``_id`` required). ``{"ok": True, "id", "rev"}``.

        Raises ``Conflict`` when ``_rev`` is not the current leaf, ``BadRequest`` on
        invalid input. ``_local/`` ids store a local doc with rev ``0-N``.
        """

    @abc.abstractmethod
    def post(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        """Create a doc with a generated ``_id`` (or the given one)."""

    @abc.abstractmethod
    def get(self, doc_id: str, *, rev: str | None = None, revs: bool = False,
            revs_info: bool = False, conflicts: bool = False,
            open_revs: Sequence[str] | str | None = None, latest: bool = False,
            attachments: bool = False) -> Any:
        """One doc (a dict), or for ``open_revs`` a list of ``{"ok": doc}`` / ``{"missing": rev}``.

        Raises ``NotFound`` (reason "missing" or "deleted").
        """

    @abc.abstractmethod
    def delete(self, doc_id: str, rev: str) -> dict[str, Any]:
        """Write a tombstone on top of ``rev``. ``{"ok": True, "id", "rev"}``."""

    @abc.abstractmethod
    def bulk_docs(self, docs: Sequence[Mapping[str, Any]], *,
                  new_edits: bool = True) -> list[dict[str, Any]]:
        """Write many docs; one result per doc (``{"ok","id","rev"}`` or
        ``{"id","error","reason"}``). With ``new_edits=False`` each doc carries its
        ``_rev`` and ``_revisions`` and is merged into the revision tree as given;
        CouchDB then returns only the failures (an empty list when all succeeded).
        """

    def write_missing(self, docs: Sequence[Mapping[str, Any]]
                      ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Replicate whole docs in: write (``new_edits=False``) the revisions this
        database lacks, skip the ones it has.

        Each doc carries its ``_rev`` and ``_revisions``, as for ``bulk_docs(docs,
        new_edits=False)``. Returns ``(written, failures)``: the doc objects given whose
        revision was new here (the same objects), and one ``{"id", "rev", "error",
        "reason"}`` per doc refused. This
        default asks ``revs_diff`` then writes what is missing (two calls); the embedded
        store does both in one transaction and the websocket client in one call.
        """
        wanted: dict[str, list[str]] = {}
        for doc in docs:
            if not isinstance(doc, Mapping):
                raise BadRequest("Document must be a JSON object")
            doc_id, rev = doc.get("_id"), doc.get("_rev")
            if not isinstance(doc_id, str) or not isinstance(rev, str):
                raise BadRequest("write_missing needs docs with an _id and a _rev")
            wanted.setdefault(doc_id, []).append(rev)
        diff = self.revs_diff(wanted) if wanted else {}
        missing: list[Mapping[str, Any]] = []
        seen: set[tuple[str, str]] = set()
        for doc in docs:
            key = (doc["_id"], doc["_rev"])
            if key not in seen and key[1] in ((diff.get(key[0]) or {}).get("missing") or ()):
                seen.add(key)  # a revision sent twice is written (and counted) once
                missing.append(doc)
        failures = failed_writes(self.bulk_docs(missing, new_edits=False) if missing else ())
        return accepted_docs(missing, failures), failures

    def write_missing_texts(self, rows: Sequence[Sequence[Any]]
                            ) -> tuple[list[int], list[dict[str, Any]]]:
        """``write_missing`` for first-generation docs given as text rows.

        Each row is ``[id, rev, text]`` as ``changes_texts`` reads it: ``rev`` is
        ``1-<hash>`` and ``text`` the JSON object of the doc's body (no field starting
        with ``_``). A bad row raises ``BadRequest`` before anything is written.
        Returns ``(indexes, failures)``: the positions of the rows whose revision was
        new here (a revision given twice is written and counted once, at its first
        position), and one ``{"id", "rev", "error", "reason"}`` per row refused. This
        default writes the rows as docs through ``write_missing``; the embedded store
        stores the texts as they are.
        """
        checked = check_text_rows(rows)
        docs = list(docs_of_text_rows(checked))
        written, failures = self.write_missing(docs)
        position = {id(doc): index for index, doc in enumerate(docs)}
        return sorted(position[id(doc)] for doc in written), failures

    def check_texts(self, rows: Sequence[Sequence[Any]]) -> Sequence[Sequence[Any]]:
        """Check text rows ahead of ``write_missing_texts`` (a replicator does it on its
        read-ahead thread): returns what to give ``write_missing_texts`` instead of
        ``rows``; ``BadRequest`` for a bad row. This default returns ``rows`` (the write
        checks them); the embedded store checks them here once
        (``texts.CheckedTexts``)."""
        return rows

    @abc.abstractmethod
    def all_docs(self, *, include_docs: bool = False, keys: Sequence[str] | None = None,
                 startkey: str | None = None, endkey: str | None = None,
                 limit: int | None = None, skip: int = 0,
                 descending: bool = False, conflicts: bool = False) -> dict[str, Any]:
        """``{"total_rows", "offset", "rows": [{"id", "key", "value": {"rev"}, "doc"?}]}``."""

    @abc.abstractmethod
    def changes(self, *, since: Any = 0, limit: int | None = None,
                include_docs: bool = False, conflicts: bool = False,
                style: str = "main_only", doc_ids: Sequence[str] | None = None,
                selector: Mapping[str, Any] | None = None, descending: bool = False,
                feed: str = "normal", timeout: float | None = None,
                attachments: bool = False) -> dict[str, Any]:
        """``{"results": [{"seq", "id", "changes": [{"rev"}], "deleted"?, "doc"?}],
        "last_seq", "pending"?}``; one row per doc at its latest seq.

        ``feed="longpoll"`` returns as soon as a change after ``since`` exists, or
        with no results after ``timeout`` seconds. ``since="now"`` starts at the end.
        """

    def changes_texts(self, *, since: Any = 0, limit: int | None = None,
                      max_bytes: int | None = None) -> dict[str, Any]:
        """A one-shot ``changes(since=, limit=, style="all_docs")`` for replication, with
        the first-generation docs as their JSON text (``write_missing_texts``' rows).

        ``{"results": [[seq, id, leaves, deleted, text], ...], "last_seq", "pending"?}``:
        the same rows in the same order as that ``changes`` call, each with the list of
        the doc's leaf revisions, whether its winner is deleted, and ``text``: the
        JSON text of the doc's body as stored (the doc less ``_id`` and ``_rev``;
        compact JSON unless a text row came in otherwise written) when its
        only revision is its first (``1-…``), not deleted, with no attachments, and the
        texts given so far with it total at most ``max_bytes`` (UTF-8) when given; None
        for any other doc. This default reads ``changes(include_docs=True)``; the
        embedded store gives the texts it holds without reading them.
        """
        check_count("max_bytes", max_bytes)
        return texts_answer(self.changes(since=since, limit=limit, include_docs=True,
                                         style="all_docs"), max_bytes)

    @abc.abstractmethod
    def revs_diff(self, revs: Mapping[str, Sequence[str]]) -> dict[str, Any]:
        """``{id: {"missing": [...], "possible_ancestors": [...]}}`` for the revs this
        database lacks; ids with nothing missing are left out."""

    @abc.abstractmethod
    def bulk_get(self, docs: Sequence[Mapping[str, Any]], *, revs: bool = False,
                 latest: bool = False, attachments: bool = False) -> dict[str, Any]:
        """CouchDB 3's ``_bulk_get``: ``{"results": [{"id", "docs": [{"ok": doc} |
        {"error": {"id", "rev", "error", "reason"}}]}]}`` in request order. Each request
        is ``{"id", "rev"?, "atts_since"?}``; ``atts_since`` lists revs whose
        attachments the caller already has, so those come back as stubs."""

    @abc.abstractmethod
    def get_attachment(self, doc_id: str, name: str, rev: str | None = None) -> bytes:
        """The raw bytes of one attachment. Raises ``NotFound``."""

    # -- lifecycle ----------------------------------------------------------------
    def compact(self) -> None:  # noqa: B027 - optional: the default has nothing to drop
        """Drop what is no longer needed (bodies of non-leaf revisions). Optional."""

    def close(self) -> None:  # noqa: B027 - optional: the default holds nothing
        """Release resources. Idempotent."""

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

