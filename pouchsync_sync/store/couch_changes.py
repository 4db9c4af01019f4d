"""``_changes`` for the CouchDB backend: feeds, the longpoll deadline, selectors.

- ``feed="longpoll"`` has a client-side deadline (pouchdb-server ignores ``timeout``):
  the request's body deadline is the longpoll timeout, and a body cut by it is
  CouchDB's answer at its timeout, ``{"results": [], "last_seq": since}``.
- ``selector`` is matched on the client (``include_docs`` + the project's Mango
  matcher), page by page, which is correct on any server; pouchdb-server's
  ``_selector`` filter is broken. ``limit`` counts matching rows, as in CouchDB.
- ``doc_ids`` uses CouchDB's ``_doc_ids`` filter.
- ``changes_texts`` (replication's read) is ``Database.changes_texts`` made cheaper for
  answers parsed from JSON (``texts_of_changes``): a first-generation doc's body text is
  orjson's text of the doc less ``_id`` and ``_rev``, written once.

Sequences are passed through as received, never compared
(https://docs.couchdb.org/en/stable/api/database/changes.html).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Callable

from ..selector import compile_selector
from .couch_http import DeadlinePassed
from .couch_readahead import ReadAhead
from .texts import is_first_rev, text_of_doc, texts_answer
from .validate import check_changes_args, check_count, exact_json_text

__all__ = ["CouchChanges", "texts_of_changes"]

_DEFAULT_LONGPOLL = 60.0  # CouchDB's default longpoll timeout, seconds
_SELECTOR_PAGE = 500


class CouchChanges:
    """The ``changes`` feed of one CouchDB database; ``CouchDatabase`` owns one and
    answers its ``changes``/``changes_texts`` with it. ``call(method, sub, params,
    body=..., **http options)`` is the database's HTTP call (errors already ours);
    ``readahead`` reads the next page of a caller paging through the feed. Thread-safe
    as they are."""

    def __init__(self, call: Callable[..., Any], readahead: ReadAhead) -> None:
        self._call = call
        self.readahead = readahead

    def changes(self, *, since: Any = 0, limit: int | None = None,
                include_docs: bool = False, conflicts: bool = False,
                style: str = "main_only", doc_ids: Sequence[str] | None = None,
                selector: Mapping[str, Any] | None = None, descending: bool = False,
                feed: str = "normal", timeout: float | None = None,
                attachments: bool = False) -> dict[str, Any]:
        check_changes_args(style=style, feed=feed, limit=limit, timeout=timeout, doc_ids=doc_ids)
        if since is None:
            since = 0
        wait = _DEFAULT_LONGPOLL if timeout is None else float(timeout)
        if feed == "longpoll" and since == "now":
            since = self._now()
        opts: dict[str, Any] = dict(include_docs=include_docs, conflicts=conflicts, style=style,
                    doc_ids=doc_ids, descending=descending, attachments=attachments)
        if selector is not None:
            return self._changes_selector(selector, since, limit, feed, wait, opts)
        return self._changes_once(since, limit, feed, wait, **opts)

    def changes_texts(self, *, since: Any = 0, limit: int | None = None,
                      max_bytes: int | None = None) -> dict[str, Any]:
        """``Database.changes_texts``: the same answer, made by ``texts_of_changes``."""
        check_count("max_bytes", max_bytes)
        return texts_of_changes(self.changes(since=since, limit=limit, include_docs=True,
                                             style="all_docs"), max_bytes)

    def _now(self) -> Any:
        return self._changes_once("now", None, "normal", 0.0, include_docs=False,
                                  conflicts=False, style="main_only", doc_ids=None,
                                  descending=False, attachments=False)["last_seq"]

    def _changes_once(self, since: Any, limit: int | None, feed: str, wait: float, *,
                      include_docs: bool, conflicts: bool, style: str,
                      doc_ids: Sequence[str] | None, descending: bool,
                      attachments: bool) -> dict[str, Any]:
        if doc_ids is not None and not doc_ids:
            return {"results": [], "last_seq": since}
        if feed == "longpoll" and wait <= 0:
            feed = "normal"
        params: dict[str, Any] = {
            "since": since, "limit": limit, "include_docs": include_docs or None,
            "conflicts": conflicts or None, "attachments": attachments or None,
            "style": None if style == "main_only" else style,
            "descending": descending or None}
        kw: dict[str, Any] = {}
        if feed == "longpoll":
            params["feed"] = "longpoll"
            params["timeout"] = max(1, int(wait * 1000))
            # CouchDB answers at `timeout` itself: a little grace keeps that answer (and the
            # keep-alive connection); pouchdb-server ignores it and is cut at the deadline.
            kw["timeout"] = wait + min(1.0, 0.1 * wait + 0.05)
            kw["wait_prefix"] = len('{"results":[')
        if doc_ids is not None:
            params["filter"] = "_doc_ids"
            call = lambda: self._call("POST", "_changes", params,  # noqa: E731
                                      body={"doc_ids": list(doc_ids)}, **kw)
        else:
            call = lambda: self._call("GET", "_changes", params, **kw)  # noqa: E731
        if feed != "longpoll":
            if limit is None or doc_ids is not None or descending:
                return call()
            options = (include_docs, conflicts, style, attachments)
            return self.readahead.read(
                since, options, limit,
                lambda at, rows: self._call("GET", "_changes", dict(params, since=at, limit=rows)))
        try:
            return call()
        except DeadlinePassed:
            # the server is alive but had nothing: CouchDB's answer at its timeout
            return {"results": [], "last_seq": since}

    def _changes_selector(self, selector: Mapping[str, Any], since: Any, limit: int | None,
                          feed: str, wait: float, opts: dict[str, Any]) -> dict[str, Any]:
        match = compile_selector(selector)
        include_docs = opts["include_docs"]
        fetch = dict(opts, include_docs=True)
        want = None if limit is None else max(limit, 1)
        deadline = time.monotonic() + wait
        found: list[dict[str, Any]] = []
        position = since
        while True:
            page = None if opts["descending"] else _SELECTOR_PAGE
            left = deadline - time.monotonic()
            answer = self._changes_once(position, page, "longpoll" if feed == "longpoll"
                                        and left > 0 else "normal", left, **fetch)
            rows = answer.get("results") or []
            for row in rows:
                doc = row.get("doc")
                if not match(doc if isinstance(doc, dict) else {}):
                    continue
                if not include_docs:
                    row.pop("doc", None)
                found.append(row)
                if want is not None and len(found) >= want:
                    return {"results": found, "last_seq": row["seq"]}
            position = answer.get("last_seq", position)
            exhausted = page is None or len(rows) < page
            if exhausted and (found or feed != "longpoll" or time.monotonic() >= deadline):
                return {"results": found, "last_seq": position}


def texts_of_changes(changes: Mapping[str, Any], max_bytes: int | None) -> dict[str, Any]:
    """``texts.texts_answer(changes, max_bytes)``, cheaper for an answer parsed from JSON
    (plain dicts, lists, str, int, float, bool, None): a row whose doc may travel as text
    gets orjson's text of the doc without ``_id`` and ``_rev`` (what ``text_of_doc``
    writes for such a doc) in one call; any other doc takes ``text_of_doc``'s way."""
    return texts_answer(changes, max_bytes, _text_of_row_doc)


def _text_of_row_doc(doc: Mapping[str, Any], leaves: list[Any]) -> str | None:
    """A plain dict's text in one orjson call; any other mapping's the default way."""
    return _text_of_parsed(doc, leaves) if doc.__class__ is dict else text_of_doc(doc, leaves)


def _text_of_parsed(doc: dict[str, Any], leaves: list[Any]) -> str | None:
    """``text_of_doc(doc, leaves)`` for a plain dict, with one orjson call on a copy of
    it less ``_id`` and ``_rev`` (no loop over its fields); what orjson cannot write
    exactly (``exact_json_text`` says None) goes to ``text_of_doc``, which decides."""
    if len(leaves) != 1:
        return None
    rev = leaves[0]
    if doc.get("_rev") != rev or not is_first_rev(rev):
        return None
    body = doc.copy()
    del body["_rev"]
    body.pop("_id", None)
    text = exact_json_text(body)
    if text is None:
        return text_of_doc(doc, leaves)
    if '"_' in text and any(key[:1] == "_" for key in body):
        return None  # _attachments, _conflicts, _deleted...: not a text row
    return text
