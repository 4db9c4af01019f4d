"""The ``Database`` interface over CouchDB's HTTP API (``requests``).

``CouchDB`` is a server handle (one pooled HTTP session, credentials, timeouts);
``CouchDatabase`` maps every store operation onto CouchDB's endpoints
(https://docs.couchdb.org/en/stable/api/database/index.html) and brings the answers
of CouchDB-protocol servers that deviate (pouchdb-server in the tests, see
``pouchsync_sync.testing.couchserver`` and ``couch_shapes``) to CouchDB 3's shapes:

- ``changes`` (in ``couch_changes``): selectors matched on the client, a client-side
  longpoll deadline.
- ``bulk_get`` answers in request order with ``{"error": {...}}`` entries, falling
  back to ``open_revs`` GETs where the server has no ``_bulk_get``.

Sequences are passed through as received, never compared.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .. import revtree
from ..errors import BadRequest, CouchError, NotFound, PreconditionFailed
from .base import Database
from .couch_changes import CouchChanges
from .couch_http import NO_DB_REASON, CouchHTTP
from .couch_names import attachment_path, check_db_name, db_path, doc_path, query_string
from .couch_readahead import ReadAhead
from .couch_shapes import bulk_get_results, missing_entry, open_revs_entries, strip_null_docs
from .validate import check_all_docs_args, check_bulk_docs_args, check_doc, decode_attachment

__all__ = ["CouchDB", "CouchDatabase"]

log = logging.getLogger(__name__)


class CouchDB:
    """A CouchDB server. Thread-safe; its databases share one HTTP connection pool.

    Example::

        import pouchsync_sync as ps
        import os

        couch = ps.CouchDB(os.environ["COUCHDB_URL"])     # "http://admin:secret@127.0.0.1:5984"
        db = couch.database("help-couchdb", create=True)   # a CouchDatabase
        print(db.info()["db_name"])                         # help-couchdb
        couch.delete_database("help-couchdb")
        couch.close()

    ``url`` may carry credentials (``http://user:pass@host:5984``); ``auth=(user,
    password)`` overrides them. They are sent as basic auth, or with
    ``cookie_auth=True`` exchanged for a ``_session`` cookie that is renewed once
    whenever the server answers 401. ``timeout`` bounds every request, in seconds.
    ``compression``: ask for compressed answers; by default only when the server is not
    on this machine (see ``CouchHTTP``).
    """

    def __init__(self, url: str, *, auth: tuple[str, str] | None = None,
                 timeout: float = 30.0, cookie_auth: bool = False, pool_size: int = 32,
                 compression: bool | None = None) -> None:
        self.http = CouchHTTP(url, auth=auth, timeout=timeout, cookie_auth=cookie_auth,
                              pool_size=pool_size, compression=compression)
        self.url = self.http.base_url
        self._bulk_get_supported = True
        self._is_couchdb: bool | None = None

    def is_couchdb(self) -> bool:
        """Is this Apache CouchDB (its welcome says ``"couchdb"``), not a look-alike such
        as pouchdb-server? Look-alikes get extra requests where their answers fall short."""
        if self._is_couchdb is None:
            self._is_couchdb = "couchdb" in self.info()
        return self._is_couchdb

    def database(self, name: str, *, create: bool = False) -> CouchDatabase:
        """A handle on database ``name``; with ``create=True`` it is created if missing."""
        check_db_name(name)
        if create:
            try:
                self.http.request("PUT", db_path(name))
            except PreconditionFailed:
                pass  # it exists already
        return CouchDatabase(self, name)

    def create_database(self, name: str) -> CouchDatabase:
        """Create ``name``; ``PreconditionFailed`` if it exists."""
        self.http.request("PUT", db_path(name))
        return CouchDatabase(self, name)

    def delete_database(self, name: str) -> None:
        """Delete ``name``; ``NotFound`` if it does not exist (pouchdb-server says ok)."""
        self.http.request("DELETE", db_path(name))

    def all_dbs(self) -> list[str]:
        return list(self.http.request("GET", "/_all_dbs"))

    def info(self) -> dict[str, Any]:
        """The server's welcome document (``GET /``)."""
        return dict(self.http.request("GET", "/"))

    def close(self) -> None:
        """Close the connection pool. Idempotent."""
        self.http.close()

    def __enter__(self) -> CouchDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<CouchDB {self.url!r}>"


class CouchDatabase(Database):
    """One CouchDB database; thread-safe. ``close()`` closes the server handle only when
    this database owns it (``owns_server=True``, as ``open_database`` makes it).

    Example::

        import pouchsync_sync as ps
        import os

        db = ps.open_database(os.environ["COUCHDB_URL"] + "/help-couchdatabase")  # created
        todo = db.post({"title": "Buy milk"})               # the same calls as LocalDatabase
        print(db.get(todo["id"])["title"])                  # Buy milk
        db.close()
        with ps.CouchDB(os.environ["COUCHDB_URL"]) as couch:
            couch.delete_database("help-couchdatabase")

    ``readahead`` reads the next ``_changes`` page of a caller paging through the feed
    while it handles the current one (``couch_readahead``; its ``stats()`` count it).
    """

    write_round_trip = True

    def __init__(self, server: CouchDB, name: str, *, owns_server: bool = False) -> None:
        self.server = server
        self.name = check_db_name(name)
        self._http = server.http
        self._path = db_path(name)
        self._owns_server = owns_server
        self._closed = threading.Event()
        self.readahead = ReadAhead(wait_timeout=self._http.timeout + 5.0)
        self._feed = CouchChanges(self._call, self.readahead)

    # -- helpers -------------------------------------------------------------------------
    def _call(self, method: str, sub: str = "", params: Mapping[str, Any] | None = None,
              body: Any = None, **kw: Any) -> Any:
        path = self._path + ("/" + sub if sub else "") + query_string(params or {})
        if body is None:
            return self._http.request(method, path, **kw)
        return self._http.request(method, path, body=body, **kw)

    @contextlib.contextmanager
    def _writing(self, doc_id: str | None) -> Iterator[None]:
        """Around a write: changes pages read ahead before it are not served after it
        (``_local`` docs are not in the changes feed)."""
        try:
            yield
        finally:
            if doc_id is None or not doc_id.startswith("_local/"):
                self.readahead.invalidate()

    # -- identity ------------------------------------------------------------------------
    def identity(self) -> str:
        return self.server.url + self._path

    def info(self) -> dict[str, Any]:
        return dict(self._call("GET"))

    # -- documents -----------------------------------------------------------------------
    def put(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        body = _check_doc(doc, require_id=True)
        with self._writing(body["_id"]):
            return _ok(self._call("PUT", doc_path(body["_id"]), body=body))

    def post(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        body = _check_doc(doc, require_id=False)
        if "_id" in body:
            return self.put(body)
        with self._writing(None):
            return _ok(self._call("POST", body=body))

    def get(self, doc_id: str, *, rev: str | None = None, revs: bool = False,
            revs_info: bool = False, conflicts: bool = False,
            open_revs: Sequence[str] | str | None = None, latest: bool = False,
            attachments: bool = False) -> Any:
        path = doc_path(doc_id)
        _check_rev(rev)
        params: dict[str, Any] = {"rev": rev, "revs": revs or None,
                                  "revs_info": revs_info or None, "conflicts": conflicts or None,
                                  "latest": latest or None, "attachments": attachments or None}
        if open_revs is not None:
            if open_revs == "all":
                params["open_revs"] = "all"
            elif isinstance(open_revs, (list, tuple)):
                for r in open_revs:
                    _check_rev(r)
                params["open_revs"] = list(open_revs)
            else:
                raise BadRequest('open_revs must be a list of revs or "all"')
        try:
            return self._call("GET", path, params)
        except NotFound as exc:
            if rev is None and open_revs is None:
                raise self._winner_not_found(doc_id, exc) from None
            raise

    def _winner_not_found(self, doc_id: str, exc: NotFound) -> NotFound:
        """CouchDB's reason for a rev-less GET that failed: "deleted" or "missing"
        (pouchdb-server says "missing" for both; ask ``_all_docs`` which it is)."""
        if exc.reason != "missing" or self.server.is_couchdb():
            return exc
        rows = self._call("POST", "_all_docs", body={"keys": [doc_id]}).get("rows") or []
        if any(isinstance(r.get("value"), dict) and r["value"].get("deleted") for r in rows):
            return NotFound("deleted")
        return exc

    def delete(self, doc_id: str, rev: str) -> dict[str, Any]:
        path = doc_path(doc_id)
        if not isinstance(rev, str) or not rev:
            raise BadRequest("delete needs the rev of the doc")
        _check_rev(rev)
        with self._writing(doc_id):
            return _ok(self._call("DELETE", path, {"rev": rev}))

    def bulk_docs(self, docs: Sequence[Mapping[str, Any]], *,
                  new_edits: bool = True) -> list[dict[str, Any]]:
        check_bulk_docs_args(docs, new_edits)
        checked = [_check_doc(doc, require_id=not new_edits) for doc in docs]
        if not new_edits:
            for doc in checked:  # CouchDB's checks, so a bad doc refuses the whole batch
                revtree.path_from_revisions(doc.get("_rev"), doc.get("_revisions"))
        if not checked:
            return []
        body: dict[str, Any] = {"docs": checked}
        if not new_edits:
            body["new_edits"] = False
        with self._writing(None):
            return list(self._call("POST", "_bulk_docs", body=body))

    def all_docs(self, *, include_docs: bool = False, keys: Sequence[str] | None = None,
                 startkey: str | None = None, endkey: str | None = None,
                 limit: int | None = None, skip: int = 0,
                 descending: bool = False, conflicts: bool = False) -> dict[str, Any]:
        check_all_docs_args(limit=limit, skip=skip)
        params: dict[str, Any] = {
            "include_docs": include_docs or None, "conflicts": conflicts or None,
            "limit": limit, "skip": skip or None, "descending": descending or None,
            "startkey": None if startkey is None else _json_param(startkey),
            "endkey": None if endkey is None else _json_param(endkey)}
        if keys is not None:
            if not isinstance(keys, (list, tuple)):
                raise BadRequest("keys must be a list")
            answer = self._call("POST", "_all_docs", params, body={"keys": list(keys)})
        else:
            answer = self._call("GET", "_all_docs", params)
        return strip_null_docs(answer) if not include_docs else answer

    # -- the changes feed (couch_changes.CouchChanges) ------------------------------------
    def changes(self, **options: Any) -> dict[str, Any]:
        """``Database.changes`` (with its arguments): a longpoll deadline, selectors."""
        return self._feed.changes(**options)

    def changes_texts(self, **options: Any) -> dict[str, Any]:
        """``Database.changes_texts`` (with its arguments), from the parsed feed."""
        return self._feed.changes_texts(**options)

    # -- replication helpers -------------------------------------------------------------
    def revs_diff(self, revs: Mapping[str, Sequence[str]]) -> dict[str, Any]:
        if not isinstance(revs, Mapping):
            raise BadRequest("revs_diff takes an object of id: [revs]")
        if not revs:
            return {}
        return dict(self._call("POST", "_revs_diff", body={k: list(v) for k, v in revs.items()}))

    def bulk_get(self, docs: Sequence[Mapping[str, Any]], *, revs: bool = False,
                 latest: bool = False, attachments: bool = False) -> dict[str, Any]:
        if not isinstance(docs, (list, tuple)):
            raise BadRequest("bulk_get takes a list of {id, rev?}")
        reqs = []
        for req in docs:
            if not isinstance(req, Mapping) or not isinstance(req.get("id"), str):
                raise BadRequest("each bulk_get request needs an id")
            doc_path(req["id"])
            _check_rev(req.get("rev"))
            since = req.get("atts_since")
            if since is not None and not isinstance(since, (list, tuple)):
                raise BadRequest("atts_since must be a list of revs")
            reqs.append({k: (list(v) if k == "atts_since" else v)
                         for k, v in req.items() if v is not None})
        if not reqs:
            return {"results": []}
        flags = {"revs": revs, "latest": latest, "attachments": attachments}
        results: list[dict[str, Any] | None] = [None] * len(reqs)
        if self.server._bulk_get_supported:
            params = {k: (True if v else None) for k, v in flags.items()}
            try:
                answer = self._call("POST", "_bulk_get", params, body={"docs": reqs})
                results = bulk_get_results(reqs, answer)
            except CouchError as exc:
                if not _no_bulk_get(exc):
                    raise
                log.info("%s has no _bulk_get (%s); using open_revs GETs", self.server.url, exc)
                self.server._bulk_get_supported = False
        for i, req in enumerate(reqs):
            if results[i] is None:
                results[i] = self._get_one(req, **flags)
        return {"results": results}

    def _get_one(self, req: Mapping[str, Any], *, revs: bool, latest: bool,
                 attachments: bool) -> dict[str, Any]:
        """One ``_bulk_get`` result fetched with a plain GET (``open_revs`` if a rev)."""
        doc_id, rev = req["id"], req.get("rev")
        params: dict[str, Any] = {"revs": revs or None, "latest": latest or None,
                                  "attachments": attachments or None,
                                  "atts_since": req.get("atts_since") or None}
        try:
            if rev is not None:
                answer = self._call("GET", doc_path(doc_id), dict(params, open_revs=[rev]))
                entries = open_revs_entries(doc_id, answer)
                if entries is None:
                    entries = [missing_entry(doc_id, rev)]
                return {"id": doc_id, "docs": entries}
            try:
                doc = self._call("GET", doc_path(doc_id), params)
            except NotFound as exc:
                raise self._winner_not_found(doc_id, exc) from None
            return {"id": doc_id, "docs": [{"ok": doc}]}
        except NotFound as exc:
            if exc.reason == NO_DB_REASON:
                raise
            return {"id": doc_id, "docs": [missing_entry(doc_id, rev, exc.reason)]}

    def get_attachment(self, doc_id: str, name: str, rev: str | None = None) -> bytes:
        _check_rev(rev)
        return self._call("GET", attachment_path(doc_id, name), {"rev": rev}, raw=True,
                          accept="application/json, */*;q=0.5")

    # -- lifecycle -----------------------------------------------------------------------
    def compact(self) -> None:
        self._call("POST", "_compact", body={})

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self.readahead.close()
            if self._owns_server:
                self.server.close()

    def __repr__(self) -> str:
        return f"<CouchDatabase {self.identity()!r}>"


def _ok(answer: Any) -> dict[str, Any]:
    return {"ok": True, "id": answer["id"], "rev": answer["rev"]}


def _check_doc(doc: Any, *, require_id: bool) -> dict[str, Any]:
    """The store's input checks, so every backend refuses the same input as a whole."""
    body = check_doc(doc, require_id=require_id)
    _check_rev(body.get("_rev"))
    for name, att in (body.get("_attachments") or {}).items():
        if "data" in att:
            decode_attachment(name, att)
    return body


def _check_rev(rev: Any) -> None:
    """Refuse a malformed rev before it reaches a URL or the server (``N-hex``)."""
    if rev is None:
        return
    if isinstance(rev, str):
        num, sep, rest = rev.partition("-")
        if sep and num.isdigit() and num.isascii() and rest:
            return
    raise BadRequest("Invalid rev format")


def _json_param(value: Any) -> Any:
    """Keys are JSON in CouchDB's query string; strings too (``"a"`` with quotes)."""
    return json.dumps(value, separators=(",", ":"))


def _no_bulk_get(exc: CouchError) -> bool:
    """Does this error say the server has no ``_bulk_get`` endpoint (old CouchDB)?"""
    if exc.status in (405, 501):
        return True
    if exc.status == 404 and exc.reason != NO_DB_REASON:
        return True
    return exc.status == 400 and "underscore" in exc.reason
