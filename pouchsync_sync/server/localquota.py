"""Caps on the ``_local/`` documents a read-only grant may write.

A read-only grant still writes ``_local/`` documents (the replicator's checkpoints on
the source), so without a cap an anonymous reader could store any amount of data
there. For read-only grants only: each ``_local/`` document is at most
``max_local_doc_size`` bytes of JSON (413), and at most ``max_local_docs`` new
``_local/`` ids are created per database and server process (403); rewriting one that
exists is always allowed. Read-write grants are not capped (they may write anything).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

from ..errors import Forbidden, NotFound, PayloadTooLarge
from ..protocol import ops
from .grant import LOCAL_PREFIX, Grant

__all__ = ["LocalQuota"]


class LocalQuota:
    """The ``_local/`` caps of read-only grants, for one server. Thread-safe."""

    def __init__(self, max_size: int, max_docs: int) -> None:
        self.max_size = max_size
        self.max_docs = max_docs
        self._lock = threading.Lock()
        self._created: dict[str, set[str]] = {}  # database identity -> new ids written

    def check(self, grant: Grant, op: str, kwargs: Mapping[str, Any]) -> None:
        """Raise ``PayloadTooLarge`` or ``Forbidden`` when a read-only grant's write
        of a ``_local/`` document is over a cap; nothing for other grants and ops."""
        if not grant.read_only or op not in ops.WRITE_OPS:
            return
        docs = _local_docs(op, kwargs)
        if not docs:
            return
        for doc_id, doc in docs:
            size = _size(doc)
            if size > self.max_size:
                raise PayloadTooLarge(f"{doc_id[:100]!r}: a _local document is at most "
                                      f"{self.max_size} bytes on a read-only grant, not {size} "
                                      f"(max_local_doc_size)")
        identity = grant.db.identity()
        for doc_id, _doc in docs:
            with self._lock:
                created = self._created.setdefault(identity, set())
                if doc_id in created:
                    continue
                if len(created) < self.max_docs:
                    created.add(doc_id)
                    continue
            if not _exists(grant, doc_id):
                raise Forbidden(f"at most {self.max_docs} _local documents may be created on "
                                f"this database by read-only grants (max_local_docs)")


def _local_docs(op: str, kwargs: Mapping[str, Any]) -> list[tuple[str, Any]]:
    if op in ("put", "post"):
        docs = [kwargs["doc"]]
    elif op in ("bulk_docs", "write_missing"):
        docs = list(kwargs["docs"])
    else:  # delete (frees room) and write_missing_texts (never _local rows)
        return []
    out = []
    for doc in docs:
        doc_id = doc.get("_id") if isinstance(doc, Mapping) else None
        if isinstance(doc_id, str) and doc_id.startswith(LOCAL_PREFIX):
            out.append((doc_id, doc))
    return out


def _size(doc: Any) -> int:
    try:
        return len(json.dumps(doc, separators=(",", ":"), ensure_ascii=False, default=str))
    except (TypeError, ValueError, RecursionError):
        return 1 << 62  # unencodable: the store refuses it anyway; never under a cap


def _exists(grant: Grant, doc_id: str) -> bool:
    try:
        grant.db.get(doc_id)
    except NotFound:
        return False
    return True
