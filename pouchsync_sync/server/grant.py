"""What ``on_request`` grants, and the write policy a grant implies. Pure.

``on_request(credentials, db_name)`` returns a ``Database`` (a read-write grant that
refuses ``_design/`` writes) or a ``Grant`` saying more. ``refusal`` decides, for one
document id a call would write, whether the grant forbids it: ``_local/`` documents
(replication checkpoints) are always writable; a read-only grant refuses every other
write; ``_design/`` documents need ``allow_design``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import Denied
from ..store.base import Database

__all__ = ["Grant", "as_grant", "refusal", "refusals", "database_uuid"]

LOCAL_PREFIX = "_local/"
DESIGN_PREFIX = "_design/"


@dataclass(frozen=True)
class Grant:
    """A database granted to one channel, with what the channel may write.

    Example::

        import pouchsync_sync as ps

        shared = ps.LocalDatabase(":memory:", name="news")
        def on_request(credentials, db_name):         # readers may pull, never push
            return ps.Grant(shared, read_only=True)    # allow_design=True: _design/ writes too
        server = ps.create_server(on_request)
    """

    db: Database
    read_only: bool = False
    allow_design: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.db, Database):
            raise TypeError(f"Grant needs a Database, got {type(self.db).__name__}")


def as_grant(result: Any) -> Grant:
    """``on_request``'s return value as a ``Grant``; ``None`` is a denial."""
    if result is None:
        raise Denied("not allowed")
    if isinstance(result, Grant):
        return result
    if isinstance(result, Database):
        return Grant(result)
    raise TypeError(f"on_request must return a Database, a Grant or None, "
                    f"not {type(result).__name__}")


def refusal(grant: Grant, doc_id: str | None) -> str | None:
    """Why ``grant`` forbids writing ``doc_id`` (``None``: a generated id), or ``None``."""
    if doc_id is not None and doc_id.startswith(LOCAL_PREFIX):
        return None
    if grant.read_only:
        return "this database is granted read-only"
    if doc_id is not None and doc_id.startswith(DESIGN_PREFIX) and not grant.allow_design:
        return "writes to design documents are not allowed"
    return None


def refusals(grant: Grant, doc_ids: Sequence[str | None]) -> list[tuple[int, str]]:
    """``(position, why)`` for each of ``doc_ids`` that ``refusal`` forbids. A read-write
    grant forbids only ``_design/`` ids, so a batch without one passes in a single scan."""
    if not grant.read_only and (grant.allow_design or not _may_hold_design(doc_ids)):
        return []
    out: list[tuple[int, str]] = []
    for position, doc_id in enumerate(doc_ids):
        why = refusal(grant, doc_id)
        if why is not None:
            out.append((position, why))
    return out


def _may_hold_design(doc_ids: Sequence[str | None]) -> bool:
    """Whether an id of ``doc_ids`` may start with ``_design/``: one search of them all
    joined (a ``_design/`` after a NUL inside an id is a false alarm, never a miss)."""
    return "\x00" + DESIGN_PREFIX in "\x00" + "\x00".join(filter(None, doc_ids))


def database_uuid(identity: str) -> str:
    """The id a client sees for a database: a hash of its identity, never the identity
    itself (which may be a URL)."""
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:32]
