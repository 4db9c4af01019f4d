"""Incoming documents, checked and ready to write, pure.

Every write to the embedded store first turns each incoming doc into a ``Prepared``
(``prepare_doc``):
its id, its decoded inline attachments, for a replicated write its revision path, and
the JSON text of its body when that is final. Everything is checked here, so a batch
with one bad doc is refused before anything is written.

``prepare_replicated`` is the hot path of every pull and push into the embedded store:
plain docs (no attachments, no special id) are checked and encoded in bulk, the body
texts by orjson with one exactness check for the whole batch
(``validate.exact_json_texts``). Anything unusual goes to the general path the caller
gives, one doc at a time, which also gives the error.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Callable

from .. import revtree
from ..errors import BadRequest
from .validate import (
    ALLOWED_SPECIAL,
    check_doc,
    decode_attachment,
    dump_json,
    exact_json_texts,
    is_local_id,
    split_body,
)

__all__ = ["Prepared", "prepare_doc", "prepare_replicated"]


class Prepared:
    """A validated incoming doc with its attachments decoded (before any write)."""

    __slots__ = ("doc", "doc_id", "atts", "path", "body_text")

    def __init__(self, doc: dict[str, Any], doc_id: str, atts: dict[str, tuple[bytes, str]],
                 path: list[str] | None, body_text: str | None):
        self.doc = doc
        self.doc_id = doc_id
        self.atts = atts
        self.path = path  # replicated writes: the revision path from _revisions
        self.body_text = body_text  # the stored JSON, when attachments do not change it


def prepare_doc(doc: Any, *, require_id: bool, replicated: bool = False) -> Prepared:
    """Check one incoming doc (``BadRequest`` naming what is wrong) and prepare it: an id
    (a new uuid if none and not ``require_id``), its inline attachments decoded, for a
    ``replicated`` write its revision path, and its body text unless attachments change it."""
    doc = check_doc(doc, require_id=require_id)
    doc_id = doc.get("_id") or uuid.uuid4().hex
    path = None
    if replicated and not is_local_id(doc_id):
        path = revtree.path_from_revisions(doc.get("_rev"), doc.get("_revisions"))
    elif doc.get("_rev") is not None and not is_local_id(doc_id):
        revtree.parse_rev(doc["_rev"])
    atts: dict[str, tuple[bytes, str]] = {}
    for name, att in (doc.get("_attachments") or {}).items():
        if not att.get("stub"):
            atts[name] = decode_attachment(name, att)
        elif replicated and att.get("digest") is None:
            raise BadRequest(f"Attachment stub {name!r} needs its digest")
    body_text = dump_json(split_body(doc))  # refuse non-JSON values before writing anything
    return Prepared(doc, doc_id, atts, path, None if "_attachments" in doc else body_text)


def prepare_replicated(docs: Sequence[Any], general: Callable[[Any], Prepared]) -> list[Prepared]:
    """``[general(doc) for doc in docs]``, faster: plain docs are checked here in bulk.

    A plain doc is a ``dict`` with a normal string ``_id``, a boolean ``_deleted`` if
    any, only the special fields a doc may carry, no ``_attachments`` and no other
    top-level key starting with ``_``; its path comes from ``_rev``/``_revisions``.
    """
    out: list[Prepared | None] = []
    plain: list[tuple[int, dict[str, Any], dict[str, Any], str, list[str]]] = []
    for doc in docs:
        if doc.__class__ is not dict or "_attachments" in doc:
            out.append(general(doc))
            continue
        doc_id = doc.get("_id")
        if doc_id.__class__ is not str or doc_id[:1] in ("", "_") \
                or doc.get("_deleted", False).__class__ is not bool:
            out.append(general(doc))
            continue
        path = revtree.path_from_revisions(doc.get("_rev"), doc.get("_revisions"))
        body = doc.copy()
        for key in ALLOWED_SPECIAL.intersection(doc):
            del body[key]
        plain.append((len(out), doc, body, doc_id, path))
        out.append(None)
    if plain:
        texts = exact_json_texts([entry[2] for entry in plain])
        for (index, doc, _body, doc_id, path), text in zip(plain, texts):
            # None: not plain JSON (a non-string key, NaN...); a key left that starts with
            # "_" is not allowed at the top ('"_' also matches nested keys and values,
            # which are fine): the general path decides, and gives the error
            if text is None or '"_' in text:
                out[index] = general(doc)
            else:
                out[index] = Prepared(doc, doc_id, {}, path, text)
    return out  # type: ignore[return-value]
