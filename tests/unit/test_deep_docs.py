"""A document nested close to the interpreter's recursion limit is refused with
``BadRequest`` (400) wherever the write path meets the limit, never a bare
``RecursionError`` (which the server answers as a 500): the window of depths where the
store's own encoding passed and the revision hash's failed, found by the fuzz test."""

from __future__ import annotations

import sys

from pouchsync_sync import LocalDatabase
from pouchsync_sync.errors import BadRequest


def _nested(depth: int) -> list:
    x: list = []
    for _ in range(depth):
        x = [x]
    return x


def _put_at_stack_depth(db: LocalDatabase, doc: dict, frames: int) -> str:
    """``db.put(doc)`` called ``frames`` Python frames deeper than here."""
    if frames > 0:
        return _put_at_stack_depth(db, doc, frames - 1)
    try:
        db.put(doc)
    except BadRequest:
        return "400"
    return "ok"


def test_deep_documents_are_written_or_refused_never_a_recursion_error() -> None:
    limit = sys.getrecursionlimit()
    outcomes: dict[str, int] = {}
    with LocalDatabase(":memory:", name="deep") as db:
        for frames in (0, 7, 23, 41):  # the window moves with the caller's stack
            for depth in range(limit - 80, limit + 5):
                outcome = _put_at_stack_depth(db, {"_id": f"d{frames}-{depth}", "x": _nested(depth)},
                                              frames)
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert set(outcomes) == {"ok", "400"}, outcomes
