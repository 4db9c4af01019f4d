"""Documents carried as their stored JSON text, pure: the replication fast lane.

An initial replication moves mostly first-generation docs (one revision, ``1-…``, no
attachments). For those the revision alone is the whole history, so the doc travels as
``[id, rev, text]``: ``text`` is the compact JSON of its body (the doc without ``_id``
and ``_rev``), exactly as the embedded store keeps it. The source's store sends the text
it holds, the wire carries one string, the target's store checks it and writes it: no
dict of the doc is built or walked on the way, and no ``_revisions`` is needed.

``Database.changes_texts`` reads in this form and ``Database.write_missing_texts``
writes it; this module holds what every backend shares: the row shapes, the check of
incoming rows (``check_text_rows``: a bad row refuses the batch before anything is
written) and the conversions to and from ordinary docs for the backends that have no
faster way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import orjson as _orjson

from ..errors import BadRequest
from ..jsoncodec import may_hold_big_int
from .validate import check_doc_id, dump_json, exact_json_text, is_local_id

__all__ = [
    "CheckedTexts",
    "TextRow",
    "check_text_rows",
    "docs_of_text_rows",
    "text_length",
    "text_of_doc",
    "texts_answer",
]

#: ``[id, rev, text]``: a first-generation revision and its body's JSON text
TextRow = Sequence[Any]


class CheckedTexts(tuple):
    """Text rows ``check_text_rows`` has checked: immutable ``(id, rev, text)`` tuples
    a store writes without checking them again (``Database.check_texts``). A slice
    stays checked."""

    __slots__ = ()

    def __getitem__(self, index: Any) -> Any:
        item = tuple.__getitem__(self, index)
        return CheckedTexts(item) if isinstance(index, slice) else item


def text_length(text: str) -> int:
    """The UTF-8 length of ``text`` (its length when ASCII, without encoding it)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def is_first_rev(rev: Any) -> bool:
    """``rev`` is a valid first-generation revision ``1-<hash>`` (``revtree.parse_rev``
    takes any non-empty hash)."""
    return rev.__class__ is str and rev[:2] == "1-" and len(rev) > 2


def text_of_doc(doc: Mapping[str, Any], leaves: Sequence[str]) -> str | None:
    """The body text of ``doc`` when it can travel as a text row, else None.

    It can when its only leaf is its revision, a first generation, it is not deleted
    and has no special field but ``_id``/``_rev`` (no attachments, conflicts,
    ``_revisions``), and its body is plain JSON.
    """
    rev = doc.get("_rev")
    if len(leaves) != 1 or leaves[0] != rev or not is_first_rev(rev):
        return None
    body = {}
    for key, value in doc.items():
        if key.__class__ is not str:
            return None
        if key[:1] == "_":
            if key not in ("_id", "_rev"):
                return None
        else:
            body[key] = value
    text = exact_json_text(body)
    if text is None:  # orjson refuses the body (a big integer...): the stdlib decides
        try:
            text = dump_json(body)
            text.encode("utf-8")  # a lone surrogate cannot travel
        except (BadRequest, UnicodeEncodeError):
            return None
    return text


def texts_answer(changes: Mapping[str, Any], max_bytes: int | None,
                 text_of: Callable[[Mapping[str, Any], list[Any]], str | None] = text_of_doc
                 ) -> dict[str, Any]:
    """``changes_texts``' answer made from a ``changes(include_docs, style=all_docs)``
    answer (the default for backends with no faster read). ``text_of(doc, leaves)``
    makes a live doc's text (a backend may pass a faster one giving the same text)."""
    rows: list[list[Any]] = []
    total = 0
    for row in changes.get("results") or ():
        leaves = [c.get("rev") for c in row.get("changes") or ()]
        doc = row.get("doc")
        text = (text_of(doc, leaves) if isinstance(doc, Mapping) and not row.get("deleted")
                else None)
        if text is not None:
            size = text_length(text)
            if max_bytes is not None and total + size > max_bytes:
                text = None
            else:
                total += size
        rows.append([row.get("seq"), row.get("id"), leaves, bool(row.get("deleted")), text])
    answer: dict[str, Any] = {"results": rows, "last_seq": changes.get("last_seq")}
    if "pending" in changes:
        answer["pending"] = changes["pending"]
    return answer


def _read_fast(text: str) -> tuple[Any, str | None] | None:
    """``(value, its exact text)`` as orjson reads ``text`` and writes it back (None for
    the text when it cannot write it exactly); None when the stdlib must read ``text``:
    orjson refuses it (big integers, lone surrogates, NaN...) or may have read an integer
    beyond 64 bits as a float, which it does silently (then the text it writes back
    differs from ``text``, and ``text`` holds a number of 19 digits or more)."""
    try:
        value = _orjson.loads(text)
    except ValueError:
        return None
    out = exact_json_text(value)
    if out != text and may_hold_big_int(text):
        return None
    return value, out


def _body_of(text: Any, where: str) -> tuple[dict[str, Any], str]:
    """``(body, canonical text)`` of one row's text; ``BadRequest`` when it is not a JSON
    object of plain fields. The canonical text is what a ``write_missing`` of the same
    doc would store."""
    if text.__class__ is not str:
        raise BadRequest(f"{where}: the text must be a string")
    read = _read_fast(text)
    if read is None:
        try:
            body = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise BadRequest(f"{where}: the text is not JSON: {str(exc)[:200]}") from exc
    else:
        body = read[0]
    if body.__class__ is not dict:
        raise BadRequest(f"{where}: the text must be a JSON object")
    canonical = read[1] if read is not None else exact_json_text(body)
    if canonical is None:
        canonical = dump_json(body)  # BadRequest for what is not JSON (NaN...)
        try:
            canonical.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate (a "\ud800" escape)
            raise BadRequest(f"{where}: the text is not valid UTF-8 text") from exc
    if '"_' in canonical:  # also matches nested keys and values, which are fine
        _refuse_special_fields(body, where)
    return body, canonical


def _may_name_special(text: str) -> bool:
    """Whether a key in JSON ``text`` may start with ``_`` (``"_``, or any escape
    ``\\u``, which may write one). A single character is looked for first: that is
    memchr, where a two-character search walks every character."""
    return ("_" in text and '"_' in text) or ("\\" in text and "\\u" in text)


def _refuse_special_fields(body: dict[str, Any], where: str) -> None:
    """``BadRequest`` when a top-level key of ``body`` starts with ``_``."""
    for key in body:
        if key[:1] == "_":
            raise BadRequest(f"{where}: special field {key[:40]!r} is not allowed in a text",
                             error="doc_validation")


def check_text_rows(rows: Any) -> CheckedTexts:
    """``[(id, rev, text to store)]`` for ``write_missing_texts``, or ``BadRequest``
    naming the first bad row: each row is ``[id, rev, text]`` with a replicable doc id
    (not ``_local/``), a first-generation ``rev`` and the text of a JSON object with no
    field starting with ``_``.

    A text orjson reads as an object is stored as it came (the source store's own
    text: compact JSON from any of our stores; integers beyond 64 bits keep their
    digits); any other text is read by the stdlib and stored as ``write_missing``
    would store the doc, or refused.
    """
    if rows.__class__ is CheckedTexts:
        return rows
    if not isinstance(rows, (list, tuple)):
        raise BadRequest("rows must be a list")
    plain = _plain_rows(rows)
    if plain is not None:
        return plain
    return _check_rows_one_by_one(rows)


#: joins ids and revisions in ``_plain_rows``: a character an id may hold, so a match
#: across it is only ever a false alarm, never a missed row
_SEP = "\x00"


def _plain_rows(rows: Sequence[Any]) -> CheckedTexts | None:
    """``rows`` checked when every one is plain (the case of a replication's batch):
    ``[id, rev, text]`` with an ASCII id not starting with ``_``, a ``1-<hash>``
    revision and the text of a JSON object with no ``"_`` and no escape ``\\u`` in it,
    which ``_check_rows_one_by_one`` stores as it came. None when any row may not be
    (then that exact check decides, row by row): each test here is made on the whole
    batch at once, by the C code of ``str`` and ``orjson``, and a row that is not plain
    always fails one, while a plain batch may only be sent the slow way by a false alarm
    (an id or a revision holding ``_SEP``), never pass with a row that is not."""
    if not rows:
        return CheckedTexts(())
    if not set(map(type, rows)) <= _ROW_TYPES or set(map(len, rows)) != _THREE:
        return None
    ids, revs, texts = zip(*rows)
    if set(map(type, ids)) != _STR or set(map(type, revs)) != _STR \
            or set(map(type, texts)) != _STR:
        return None
    # ids: each non-empty, ASCII, not starting with "_"
    joined = _SEP + _SEP.join(ids)
    if not joined.isascii() or _SEP + "_" in joined or _SEP + _SEP in joined \
            or joined.endswith(_SEP):
        return None
    # revisions: with no _SEP inside them, each one is "1-" and more exactly when every
    # _SEP before one is followed by "1-" and none by "1-" and the next _SEP
    joined = _SEP.join(revs)
    if joined.count(_SEP) != len(revs) - 1:
        return None
    joined = _SEP + joined + _SEP
    if joined.count(_SEP + "1-") != len(revs) or _SEP + "1-" + _SEP in joined:
        return None
    if _may_name_special("".join(texts)):
        return None
    try:
        if set(map(type, map(_orjson.loads, texts))) != _DICT:
            return None
    except ValueError:
        return None
    return CheckedTexts(zip(ids, revs, texts))


_ROW_TYPES = frozenset((list, tuple))
_THREE = {3}
_STR = {str}
_DICT = {dict}


def _check_rows_one_by_one(rows: Sequence[Any]) -> CheckedTexts:
    """``check_text_rows`` for any rows: each row looked at in turn, the first bad one
    named."""
    checked: list[tuple[str, str, str]] = []
    append = checked.append
    loads = _orjson.loads
    for index, row in enumerate(rows):
        if row.__class__ not in (list, tuple) or len(row) != 3:
            raise BadRequest(f"row {index}: must be [id, rev, text]")
        doc_id, rev, text = row
        if doc_id.__class__ is not str or doc_id[:1] in ("", "_") or not doc_id.isascii():
            check_doc_id(doc_id)  # BadRequest for what is not a doc id
            if is_local_id(doc_id):
                raise BadRequest(f"row {index}: _local docs are not replicated")
        if not is_first_rev(rev):
            raise BadRequest(f"row {index}: rev must be a first-generation revision 1-<hash>",
                             error="bad_request")
        if text.__class__ is str:
            # the common case: a JSON object orjson reads (it refuses NaN, infinities,
            # lone surrogates) is stored as it came, unless a key of it may start with
            # "_" (also escaped, \u005f): then its keys are looked at
            try:
                body = loads(text)
            except ValueError:
                body = None
            if body.__class__ is dict:
                if _may_name_special(text):
                    _refuse_special_fields(body, f"row {index}")
                append((doc_id, rev, text))
                continue
        append((doc_id, rev, _body_of(text, f"row {index}")[1]))
    return CheckedTexts(checked)


def docs_of_text_rows(rows: Sequence[tuple[str, str, str]]) -> Iterator[dict[str, Any]]:
    """Ordinary docs (``_id``, ``_rev`` and the body) of checked text rows."""
    for doc_id, rev, text in rows:
        doc: dict[str, Any] = {"_id": doc_id, "_rev": rev}
        read = _read_fast(text)
        doc.update(json.loads(text) if read is None else read[0])
        yield doc
