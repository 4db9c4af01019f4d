"""One batch of changes, pure: "Calculate Revision Difference" and "Fetch Changed Documents".

https://docs.couchdb.org/en/stable/replication/protocol.html#locate-changed-documents

Turns a changes batch (``style=all_docs``: every leaf of every changed doc) into the
``revs_diff`` request, the diff into ``bulk_get`` requests (``atts_since`` =
``possible_ancestors``, so attachments the target already holds come back as stubs),
and a ``bulk_get`` answer into docs and errors. Byte bounds: ``doc_size`` estimates a
doc's JSON size, ``split_by_bytes`` cuts writes, ``next_fetch_size`` adapts how many
revisions one ``bulk_get`` asks for so a batch of huge docs never sits in memory whole.
No I/O here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Callable

import orjson as _orjson

from ..store.base import failed_writes
from ..store.texts import docs_of_text_rows

__all__ = [
    "LOCAL_PREFIX",
    "apply_filter",
    "bulk_get_requests",
    "collect_bulk_get",
    "doc_size",
    "doc_sizes",
    "failed_writes",
    "is_first_generation",
    "next_fetch_size",
    "prefer_docs_in_changes",
    "revs_diff_request",
    "slices_by_bytes",
    "split_by_bytes",
    "whole_docs_in_changes",
    "texts_in_changes",
    "text_sizes",
    "WrittenDocs",
]

LOCAL_PREFIX = "_local/"


def apply_filter(rows: Sequence[Mapping[str, Any]],
                 filter_fn: Callable[[dict[str, Any]], Any] | None) -> list[Mapping[str, Any]]:
    """The change rows whose doc the Python filter accepts (all rows without a filter).

    Rows without a doc (the caller did not ask for ``include_docs``) are kept.
    """
    if filter_fn is None:
        return list(rows)
    kept = []
    for row in rows:
        doc = row.get("doc")
        if doc is None or filter_fn(doc):
            kept.append(row)
    return kept


def revs_diff_request(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """``{id: [leaf revs]}`` from change rows; ``_local`` docs are never replicated."""
    request: dict[str, list[str]] = {}
    for row in rows:
        doc_id = row.get("id")
        if not isinstance(doc_id, str) or doc_id.startswith(LOCAL_PREFIX):
            continue
        revs = [change["rev"] for change in row.get("changes") or ()
                if change.get("rev") is not None]
        if not revs:
            continue
        known = request.get(doc_id)
        if known is not None:
            revs = known + revs
        request[doc_id] = list(dict.fromkeys(revs)) if len(revs) > 1 else revs
    return request


def bulk_get_requests(diff: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One ``{id, rev, atts_since?}`` per missing revision, in diff order."""
    requests: list[dict[str, Any]] = []
    for doc_id, entry in diff.items():
        if doc_id.startswith(LOCAL_PREFIX):
            continue
        ancestors = list(entry.get("possible_ancestors") or ())
        for rev in entry.get("missing") or ():
            request: dict[str, Any] = {"id": doc_id, "rev": rev}
            if ancestors:
                request["atts_since"] = ancestors
            requests.append(request)
    return requests


def collect_bulk_get(answer: Mapping[str, Any]
                     ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(docs, errors)`` from a ``bulk_get`` answer; docs deduplicated by (id, rev).

    ``latest=True`` may answer two requests with the same newer leaf. Errors come as
    CouchDB 3's ``{"error": {...}}`` or the older ``{"missing": rev}``.
    """
    docs: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    seen: set[tuple[Any, Any]] = set()
    for result in answer.get("results") or ():
        result_id = result.get("id")
        for item in result.get("docs") or ():
            doc = item.get("ok")
            if isinstance(doc, dict):
                key = (doc.get("_id"), doc.get("_rev"))
                if key in seen or not isinstance(key[0], str) or key[0].startswith(LOCAL_PREFIX):
                    continue
                seen.add(key)
                docs.append(doc)
            elif isinstance(item.get("error"), Mapping):
                err = item["error"]
                errors.append({"id": err.get("id", result_id), "rev": err.get("rev"),
                               "error": err.get("error", "unknown_error"),
                               "reason": err.get("reason", "")})
            elif "missing" in item:
                errors.append({"id": result_id, "rev": item["missing"],
                               "error": "not_found", "reason": "missing"})
    return docs, errors


#: CouchDB's special fields a first-generation doc read plainly may not carry
_NOT_FIRST_GENERATION = frozenset({"_attachments", "_deleted", "_conflicts",
                                   "_deleted_conflicts", "_revs_info", "_local_seq"})


def is_first_generation(doc: Mapping[str, Any]) -> bool:
    """A live, attachment-less doc at a ``1-…`` revision: its history is itself alone."""
    rev = doc.get("_rev")
    return (type(rev) is str and rev[:2] == "1-" and len(rev) > 2
            and _NOT_FIRST_GENERATION.isdisjoint(doc))


def whole_docs_in_changes(rows: Sequence[Mapping[str, Any]]
                          ) -> tuple[list[dict[str, Any]], list[Mapping[str, Any]]]:
    """Split change rows into the docs they carry whole and the rows still to diff.

    A row whose doc (``include_docs``) is a first-generation winner (``1-<hash>``, not
    deleted, no attachments) and the doc's only leaf carries the revision's whole
    history: it has no ancestor, so ``bulk_docs(new_edits=False)`` needs no
    ``_revisions`` for it (the revision alone is the path, on CouchDB too). Those docs
    go to the target's ``write_missing`` as they are (it skips what it has), with no
    ``revs_diff`` and no fetch. Returns ``(those docs, the other rows)``; nothing is
    copied or modified.
    """
    docs: list[dict[str, Any]] = []
    rest: list[Mapping[str, Any]] = []
    for row in rows:
        doc = row.get("doc")
        if (doc.__class__ is dict and is_first_generation(doc) and "_revisions" not in doc
                and row.get("changes") == [{"rev": doc["_rev"]}]):
            doc_id = doc.get("_id")
            if doc_id == row.get("id") and doc_id.__class__ is str \
                    and not doc_id.startswith(LOCAL_PREFIX):
                docs.append(doc)
                continue
        rest.append(row)
    return docs, rest


def texts_in_changes(rows: Sequence[Sequence[Any]]
                     ) -> tuple[list[tuple[str, str, str]], list[dict[str, Any]]]:
    """``changes_texts`` rows split into the text rows ``[id, rev, text]`` the target's
    ``write_missing_texts`` takes (first-generation docs carried whole: no diff, no
    fetch), and ordinary change rows (``{"seq", "id", "changes", "deleted"?}``) for the
    others, which are diffed and fetched."""
    texts: list[tuple[str, str, str]] = []
    rest: list[dict[str, Any]] = []
    for seq, doc_id, leaves, deleted, text in rows:
        if text is not None and len(leaves) == 1 and not doc_id.startswith(LOCAL_PREFIX):
            texts.append((doc_id, leaves[0], text))
            continue
        row: dict[str, Any] = {"seq": seq, "id": doc_id, "changes": [{"rev": r} for r in leaves]}
        if deleted:
            row["deleted"] = True
        rest.append(row)
    return texts, rest


def text_sizes(rows: Sequence[tuple[str, str, str]]) -> list[int]:
    """The approximate wire size of each text row, for ``split_by_bytes``."""
    return [len(doc_id) + len(rev) + len(text) + 12 for doc_id, rev, text in rows]


class WrittenDocs(Sequence[dict[str, Any]]):
    """The docs a batch wrote, for ``on_batch``: whole docs as they are, text rows made
    docs only when looked at (most runs never do: nobody listens)."""

    def __init__(self, items: Sequence[Any]) -> None:
        self._items = items
        self._docs: list[dict[str, Any]] | None = None

    def _all(self) -> list[dict[str, Any]]:
        if self._docs is None:
            self._docs = [item if item.__class__ is not tuple else next(docs_of_text_rows((item,)))
                          for item in self._items]
        return self._docs

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: Any) -> Any:
        return self._all()[index]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._all())

    def __repr__(self) -> str:
        return f"WrittenDocs({len(self._items)} docs)"


def prefer_docs_in_changes(first_generation: int, rows: int, fetched_bytes: int,
                           fetched_count: int, batch_size: int, max_bytes: int,
                           lacked: float = 1.0) -> bool:
    """Whether the next changes read should ask for docs (``include_docs``).

    Pays when most changed docs are new, small docs the target lacks (an initial
    replication); costs when the target already has them (echoes in a two-way sync:
    ``lacked``, the share of the docs last offered whole that the target did not
    have, is below a half) or when a batch of whole docs would pass ``max_bytes``.
    """
    if rows <= 0 or fetched_count <= 0 or first_generation * 2 < rows or lacked * 2 < 1:
        return False
    return (fetched_bytes // fetched_count) * batch_size <= max_bytes


def doc_size(doc: Any) -> int:
    """Length of the doc's compact JSON (an estimate of its size on the wire)."""
    try:
        return len(_orjson.dumps(doc))
    except TypeError:  # a big integer: the stdlib writes it
        return len(json.dumps(doc, separators=(",", ":"), default=str))


def doc_sizes(docs: Sequence[Mapping[str, Any]], max_bytes: int) -> list[int]:
    """``doc_size`` of each doc for ``split_by_bytes``, measured in one piece when the
    docs together fit in ``max_bytes`` (then each gets the average: no split needed)."""
    if not docs:
        return []
    total = doc_size(list(docs)) - len(docs) - 1  # brackets and commas
    if total <= max_bytes:
        average = max(total // len(docs), 1)
        return [average] * len(docs)
    return [doc_size(doc) for doc in docs]


def slices_by_bytes(rows: Sequence[Any], sizes: Sequence[int],
                    max_bytes: int) -> Iterator[Sequence[Any]]:
    """``split_by_bytes`` by slicing ``rows`` (which keeps their type): ``rows`` itself
    when it fits whole."""
    if not rows:
        return
    if sum(sizes) <= max_bytes:
        yield rows
        return
    start = total = 0
    for end, size in enumerate(sizes):
        if end > start and total + size > max_bytes:
            yield rows[start:end]
            start, total = end, 0
        total += size
    if start < len(rows):
        yield rows[start:]


def split_by_bytes(docs: Sequence[dict[str, Any]], sizes: Sequence[int],
                   max_bytes: int) -> Iterator[list[dict[str, Any]]]:
    """Consecutive chunks of ``docs`` of at most ``max_bytes`` (a single bigger doc alone)."""
    chunk: list[dict[str, Any]] = []
    total = 0
    for doc, size in zip(docs, sizes):
        if chunk and total + size > max_bytes:
            yield chunk
            chunk, total = [], 0
        chunk.append(doc)
        total += size
    if chunk:
        yield chunk


def next_fetch_size(current: int, fetched_count: int, fetched_bytes: int,
                    max_bytes: int, cap: int) -> int:
    """How many revisions the next ``bulk_get`` asks for, so one answer stays near ``max_bytes``.

    Shrinks at once to what fits; grows back by doubling (never above ``cap``).
    """
    if fetched_count <= 0:
        return max(1, min(current, cap))
    average = max(1, fetched_bytes // fetched_count)
    fits = max(1, max_bytes // average)
    if fits < current:
        return max(1, min(fits, cap))
    return max(1, min(current * 2, fits, cap))
